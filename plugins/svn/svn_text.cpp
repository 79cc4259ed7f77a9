// Parsing svn's XML output and Buildbot's split_file functions (see
// svn_text.h).

#include "svn_text.h"

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace kiln::svn {

using nlohmann::json;

const XmlElement* XmlElement::child(std::string_view child_name) const {
  for (const auto& c : children) {
    if (c.name == child_name) return &c;
  }
  return nullptr;
}

std::string XmlElement::attribute(const std::string& key) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? std::string() : it->second;
}

namespace {

void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Character data with its entity and character references resolved.
std::string decode(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '&') {
      out += raw[i];
      continue;
    }
    const size_t semi = raw.find(';', i);
    if (semi == std::string_view::npos) {
      out += raw[i];
      continue;
    }
    const std::string_view entity = raw.substr(i + 1, semi - i - 1);
    if (entity == "amp") {
      out += '&';
    } else if (entity == "lt") {
      out += '<';
    } else if (entity == "gt") {
      out += '>';
    } else if (entity == "quot") {
      out += '"';
    } else if (entity == "apos") {
      out += '\'';
    } else if (!entity.empty() && entity[0] == '#') {
      const std::string digits(entity.substr(1));
      const bool hex = !digits.empty() && (digits[0] == 'x' || digits[0] == 'X');
      append_utf8(out, std::strtoul(digits.c_str() + (hex ? 1 : 0), nullptr, hex ? 16 : 10));
    } else {
      out.append(raw.substr(i, semi - i + 1));
    }
    i = semi;
  }
  return out;
}

class XmlReader {
 public:
  explicit XmlReader(std::string_view text) : s_(text) {}

  std::optional<XmlElement> document(std::string* error) {
    skip_prolog();
    XmlElement root;
    if (!element(root)) {
      if (error != nullptr) *error = error_.empty() ? "no root element" : error_;
      return std::nullopt;
    }
    return root;
  }

 private:
  bool fail(const std::string& why) {
    if (error_.empty()) error_ = why + " at offset " + std::to_string(pos_);
    return false;
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
  }
  // Declarations, comments and whitespace before the root.
  void skip_prolog() {
    for (;;) {
      skip_space();
      if (s_.compare(pos_, 2, "<?") == 0) {
        size_t end = s_.find("?>", pos_);
        pos_ = end == std::string_view::npos ? s_.size() : end + 2;
      } else if (s_.compare(pos_, 4, "<!--") == 0) {
        size_t end = s_.find("-->", pos_);
        pos_ = end == std::string_view::npos ? s_.size() : end + 3;
      } else {
        return;
      }
    }
  }
  std::string name() {
    const size_t start = pos_;
    while (pos_ < s_.size() && s_[pos_] != ' ' && s_[pos_] != '>' && s_[pos_] != '/' && s_[pos_] != '=' &&
           s_[pos_] != '\n' && s_[pos_] != '\r' && s_[pos_] != '\t') {
      ++pos_;
    }
    return std::string(s_.substr(start, pos_ - start));
  }

  bool element(XmlElement& out) {
    if (pos_ >= s_.size() || s_[pos_] != '<') return fail("expected an element");
    ++pos_;
    out.name = name();
    if (out.name.empty()) return fail("an element without a name");
    for (;;) {
      skip_space();
      if (pos_ >= s_.size()) return fail("unterminated tag <" + out.name + ">");
      if (s_.compare(pos_, 2, "/>") == 0) {
        pos_ += 2;
        return true;
      }
      if (s_[pos_] == '>') {
        ++pos_;
        break;
      }
      std::string key = name();
      skip_space();
      if (key.empty() || pos_ >= s_.size() || s_[pos_] != '=') return fail("a malformed attribute in <" + out.name + ">");
      ++pos_;
      skip_space();
      if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\'')) return fail("an unquoted attribute value");
      const char quote = s_[pos_++];
      const size_t end = s_.find(quote, pos_);
      if (end == std::string_view::npos) return fail("an unterminated attribute value");
      out.attributes[key] = decode(s_.substr(pos_, end - pos_));
      pos_ = end + 1;
    }
    // Content: text, children, comments, CDATA, until the end tag.
    for (;;) {
      const size_t lt = s_.find('<', pos_);
      if (lt == std::string_view::npos) return fail("no end tag for <" + out.name + ">");
      out.text += decode(s_.substr(pos_, lt - pos_));
      pos_ = lt;
      if (s_.compare(pos_, 2, "</") == 0) {
        pos_ += 2;
        const std::string closing = name();
        skip_space();
        if (closing != out.name || pos_ >= s_.size() || s_[pos_] != '>') {
          return fail("</" + closing + "> closes <" + out.name + ">");
        }
        ++pos_;
        return true;
      }
      if (s_.compare(pos_, 4, "<!--") == 0) {
        const size_t end = s_.find("-->", pos_);
        if (end == std::string_view::npos) return fail("an unterminated comment");
        pos_ = end + 3;
        continue;
      }
      if (s_.compare(pos_, 9, "<![CDATA[") == 0) {
        const size_t end = s_.find("]]>", pos_);
        if (end == std::string_view::npos) return fail("an unterminated CDATA section");
        out.text.append(s_.substr(pos_ + 9, end - pos_ - 9));
        pos_ = end + 3;
        continue;
      }
      XmlElement child;
      if (!element(child)) return false;
      out.children.push_back(std::move(child));
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

std::optional<int64_t> number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (end == nullptr || *end != '\0' || value < 0) return std::nullopt;
  return value;
}

}  // namespace

std::optional<XmlElement> parse_xml(std::string_view text, std::string* error) {
  return XmlReader(text).document(error);
}

std::optional<RepositoryInfo> parse_info(std::string_view xml) {
  auto root = parse_xml(xml);
  if (!root || root->name != "info") return std::nullopt;
  const XmlElement* entry = root->child("entry");
  if (entry == nullptr) return std::nullopt;
  RepositoryInfo info;
  auto revision = number(entry->attribute("revision"));
  if (!revision) return std::nullopt;
  info.revision = *revision;
  if (const XmlElement* repository = entry->child("repository")) {
    if (const XmlElement* root_url = repository->child("root")) info.root = root_url->text;
  }
  return info;
}

std::optional<int64_t> parse_svn_date(std::string_view text) {
  std::tm tm{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (std::sscanf(std::string(text).c_str(), "%4d-%2d-%2dT%2d:%2d:%2d", &year, &month, &day, &hour, &minute,
                  &second) != 6) {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<int64_t>(::timegm(&tm));
}

std::optional<std::vector<LogEntry>> parse_log(std::string_view xml, std::string* error) {
  auto root = parse_xml(xml, error);
  if (!root) return std::nullopt;
  if (root->name != "log") {
    if (error != nullptr) *error = "the root element is <" + root->name + ">, not <log>";
    return std::nullopt;
  }
  std::vector<LogEntry> entries;
  for (const auto& e : root->children) {
    if (e.name != "logentry") continue;
    LogEntry entry;
    auto revision = number(e.attribute("revision"));
    if (!revision) {
      if (error != nullptr) *error = "a log entry without a revision number";
      return std::nullopt;
    }
    entry.revision = *revision;
    // Buildbot's "unknown" for a commit without an author (svnsync, hooks).
    entry.author = e.child("author") != nullptr ? e.child("author")->text : "unknown";
    if (const XmlElement* msg = e.child("msg")) entry.message = msg->text;
    if (const XmlElement* date = e.child("date")) entry.when = parse_svn_date(date->text).value_or(0);
    if (const XmlElement* paths = e.child("paths")) {
      for (const auto& p : paths->children) {
        if (p.name != "path") continue;
        LoggedPath lp;
        lp.path = p.text;
        if (!lp.path.empty() && lp.path[0] == '/') lp.path.erase(0, 1);
        if (p.attribute("kind") == "dir" && (lp.path.empty() || lp.path.back() != '/')) lp.path += '/';
        lp.action = p.attribute("action");
        entry.paths.push_back(std::move(lp));
      }
    }
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::optional<std::string> url_prefix(std::string_view root, std::string_view repourl) {
  while (!root.empty() && root.back() == '/') root.remove_suffix(1);
  while (!repourl.empty() && repourl.back() == '/') repourl.remove_suffix(1);
  if (repourl.substr(0, root.size()) != root) return std::nullopt;
  std::string_view rest = repourl.substr(root.size());
  if (!rest.empty() && rest[0] != '/') return std::nullopt;  // "repo2" is not below "repo"
  while (!rest.empty() && rest[0] == '/') rest.remove_prefix(1);
  return std::string(rest);
}

namespace {

std::vector<std::string> pieces_of(const std::string& path) {
  std::vector<std::string> pieces;
  size_t start = 0;
  for (;;) {
    const size_t slash = path.find('/', start);
    pieces.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) return pieces;
    start = slash + 1;
  }
}

std::string joined(const std::vector<std::string>& pieces, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to && i < pieces.size(); ++i) {
    if (i > from) out += '/';
    out += pieces[i];
  }
  return out;
}

}  // namespace

json split_file_alwaystrunk(const std::string& path) { return json{{"path", path}}; }

json split_file_branches(const std::string& path) {
  const auto pieces = pieces_of(path);
  if (pieces.size() > 1 && pieces[0] == "trunk") {
    return json{{"branch", nullptr}, {"path", joined(pieces, 1, pieces.size())}};
  }
  if (pieces.size() > 2 && pieces[0] == "branches") {
    return json{{"branch", joined(pieces, 0, 2)}, {"path", joined(pieces, 2, pieces.size())}};
  }
  return nullptr;
}

json split_file_projects_branches(const std::string& path) {
  const size_t slash = path.find('/');
  if (slash == std::string::npos) return nullptr;
  json within = split_file_branches(path.substr(slash + 1));
  if (within.is_null()) return nullptr;
  json info = {{"project", path.substr(0, slash)}, {"path", within["path"]}};
  if (!within["branch"].is_null()) info["branch"] = within["branch"];
  return info;
}

}  // namespace kiln::svn
