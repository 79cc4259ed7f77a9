// The page framework: the route table that page files fill in, the
// "gather several reads, then render" helper, query arguments, the page
// settings of the config, and the static public_html folder.

#include "pages.h"

#include "html.h"
#include "rest.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <memory>
#include <system_error>

namespace kiln::web {
namespace {

using nlohmann::json;

std::vector<PageRoute>& route_table() {
  static std::vector<PageRoute> routes;
  return routes;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > pos) out.emplace_back(path.substr(pos, slash - pos));
    pos = slash + 1;
  }
  return out;
}

// The route for `segs` (decoded path segments) and its "{}" values; a
// non-fallback route wins over a fallback of the same pattern.
const PageRoute* match(const std::vector<std::string>& segs, std::vector<std::string>& args) {
  const PageRoute* found = nullptr;
  for (const PageRoute& route : route_table()) {
    const auto pattern = split_path(route.pattern);
    if (pattern.size() != segs.size()) continue;
    std::vector<std::string> values;
    bool ok = true;
    for (size_t i = 0; i < segs.size() && ok; ++i) {
      if (pattern[i] == "{}") {
        ok = !segs[i].empty();
        values.push_back(segs[i]);
      } else {
        ok = pattern[i] == segs[i];
      }
    }
    if (!ok) continue;
    if (!found || (found->fallback && !route.fallback)) {
      found = &route;
      args = std::move(values);
    }
  }
  return found;
}

std::string_view mime_type(const std::filesystem::path& file) {
  static const std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".svg", "image/svg+xml"},
      {".ico", "image/x-icon"},
      {".xml", "application/xml"},
      {".woff2", "font/woff2"},
  };
  const std::string ext = file.extension().string();
  for (const auto& [e, type] : kTypes) {
    if (ext == e) return type;
  }
  return "application/octet-stream";
}

// A file under `root` named by the decoded segments, or nothing. Any
// "..", ".", empty, backslash or NUL segment is refused before the file
// system is asked, and the resolved file must still lie under root (a
// symbolic link out of the folder is refused too).
std::optional<std::filesystem::path> static_file(const std::filesystem::path& root,
                                                 const std::vector<std::string>& segs) {
  if (root.empty() || segs.empty()) return std::nullopt;
  std::filesystem::path file = root;
  for (const std::string& s : segs) {
    if (s == "." || s == ".." || s.find_first_of(std::string_view("\\\0", 2)) != std::string::npos ||
        s.find('/') != std::string::npos) {
      return std::nullopt;
    }
    file /= s;
  }
  std::error_code ec;
  const auto real_root = std::filesystem::canonical(root, ec);
  if (ec) return std::nullopt;
  const auto real_file = std::filesystem::canonical(file, ec);
  if (ec || !std::filesystem::is_regular_file(real_file, ec)) return std::nullopt;
  const auto rel = real_file.lexically_relative(real_root);
  if (rel.empty() || *rel.begin() == "..") return std::nullopt;
  return real_file;
}

Response file_response(const std::filesystem::path& file) {
  auto in = std::make_shared<std::ifstream>(file, std::ios::binary);
  Response r;
  r.content_type = std::string(mime_type(file));
  // Streamed in pieces, so a large file is never in memory whole.
  constexpr size_t kPiece = 256 * 1024;
  r.next_piece = [in](Piece deliver) {
    std::string piece(kPiece, '\0');
    in->read(piece.data(), static_cast<std::streamsize>(piece.size()));
    piece.resize(static_cast<size_t>(in->gcount()));
    deliver(std::move(piece), static_cast<bool>(*in));
  };
  return r;
}

Response html_error(unsigned status, const std::string& message) {
  Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + std::to_string(status) +
           "</title></head><body><p class=\"error\">" + html::escape(message) + "</p></body></html>\n";
  return r;
}

// Python's \1 and \g<1> (Buildbot's changecommentlink) as std::regex's $1.
std::string regex_format(std::string text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
      out += text[i + 1] == '0' ? "$&" : std::string("$") + text[i + 1];
      ++i;
    } else if (text.compare(i, 3, "\\g<") == 0) {
      const size_t close = text.find('>', i);
      if (close == std::string::npos) {
        out += text[i];
        continue;
      }
      const std::string group = text.substr(i + 3, close - i - 3);
      out += group == "0" ? "$&" : "$" + group;
      i = close;
    } else if (text[i] == '$') {
      out += "$$";
    } else {
      out += text[i];
    }
  }
  return out;
}

sdk::Result<std::map<std::string, std::string>> string_map(const json& config, const char* key) {
  std::map<std::string, std::string> out;
  if (!config.contains(key)) return out;
  const json& value = config[key];
  if (!value.is_object()) return sdk::invalid_config(std::string(key) + ": must be a map of names to URLs");
  for (const auto& [name, url] : value.items()) {
    if (!url.is_string())
      return sdk::invalid_config(std::string(key) + "." + name + ": must be a URL string");
    out[name] = url.get<std::string>();
  }
  return out;
}

}  // namespace

Page error_page(unsigned status, std::string message) {
  Page page;
  page.status = status;
  page.title = status == 404 ? "Not found" : status == 400 ? "Bad request" : "Error";
  page.content = "<p class=\"error\">" + html::escape(message) + "</p>";
  return page;
}

std::optional<Page> first_error(const Answers& answers) {
  for (const Answer& a : answers) {
    if (!a.ok()) return error_page(http_status_of(a.status), a.error);
  }
  return std::nullopt;
}

void gather(Backend& backend, std::vector<Get> gets, std::function<void(Answers)> done) {
  struct Gathering {
    Answers answers;
    size_t missing;
    std::function<void(Answers)> done;
  };
  if (gets.empty()) return done({});
  auto g = std::make_shared<Gathering>(Gathering{Answers(gets.size()), gets.size(), std::move(done)});
  for (size_t i = 0; i < gets.size(); ++i) {
    auto answered = [g, i](Answer a) {
      g->answers[i] = std::move(a);
      if (--g->missing == 0) g->done(std::move(g->answers));
    };
    if (!gets[i].action.empty()) {
      backend.control(std::move(gets[i].path), std::move(gets[i].action), std::move(gets[i].args),
                      std::move(answered));
      continue;
    }
    json query = gets[i].query.empty() ? json() : json{{"query_string", gets[i].query}};
    backend.get(std::move(gets[i].path), std::move(query), std::move(answered));
  }
}

std::optional<std::string> PageRequest::arg(std::string_view name) const {
  for (auto& [n, v] : form_fields(request.query)) {
    if (n == name) return v;
  }
  return std::nullopt;
}

std::vector<std::string> PageRequest::arg_all(std::string_view name) const {
  std::vector<std::string> out;
  for (auto& [n, v] : form_fields(request.query)) {
    if (n == name) out.push_back(v);
  }
  return out;
}

std::optional<int64_t> PageRequest::int_arg(std::string_view name, int64_t fallback, int64_t max) const {
  const auto text = arg(name);
  if (!text) return fallback;
  int64_t value = -1;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (text->empty() || ec != std::errc() || end != text->data() + text->size() || value < 0 || value > max) {
    bad_argument(std::string(name) + "=" + *text + ": must be a whole number from 0 to " +
                 std::to_string(max));
    return std::nullopt;
  }
  return value;
}

bool register_pages(std::vector<PageRoute> routes) {
  for (PageRoute& r : routes) route_table().push_back(std::move(r));
  return true;
}

std::vector<std::pair<std::string, std::string>> nav_entries() {
  std::vector<const PageRoute*> listed;
  for (const PageRoute& r : route_table()) {
    if (r.nav_label.empty()) continue;
    // A fallback replaced by a fuller page is not listed twice.
    auto same = std::find_if(listed.begin(), listed.end(),
                             [&](const PageRoute* l) { return l->pattern == r.pattern; });
    if (same == listed.end()) {
      listed.push_back(&r);
    } else if ((*same)->fallback && !r.fallback) {
      *same = &r;
    }
  }
  std::stable_sort(listed.begin(), listed.end(),
                   [](const PageRoute* a, const PageRoute* b) { return a->nav_order < b->nav_order; });
  std::vector<std::pair<std::string, std::string>> out;
  for (const PageRoute* r : listed) out.emplace_back(r->nav_label, r->pattern);
  return out;
}

sdk::Result<PageSettings> parse_page_settings(const json& config, const std::filesystem::path& master_dir) {
  PageSettings s;
  auto str = [&](const char* key, std::string& into) -> sdk::Status {
    if (!config.contains(key)) return {};
    if (!config[key].is_string()) return sdk::invalid_config(std::string(key) + ": must be a string");
    into = config[key].get<std::string>();
    return {};
  };
  if (auto st = str("title", s.title); !st) return st;
  if (auto st = str("title_url", s.title_url); !st) return st;
  // A folder named in the config, or the conventional one beside the
  // master when it exists.
  auto folder = [&](const char* key, const char* conventional, std::filesystem::path& into) -> sdk::Status {
    std::string named;
    if (auto st = str(key, named); !st) return st;
    if (named.empty()) {
      std::error_code ec;
      if (!master_dir.empty() && std::filesystem::is_directory(master_dir / conventional, ec)) {
        into = master_dir / conventional;
      }
      return {};
    }
    into = std::filesystem::path(named).is_absolute() ? std::filesystem::path(named) : master_dir / named;
    std::error_code ec;
    if (!master_dir.empty() && !std::filesystem::is_directory(into, ec)) {
      return sdk::invalid_config(std::string(key) + ": '" + into.string() + "' is not a folder");
    }
    return {};
  };
  if (auto st = folder("templates", "templates", s.templates); !st) return st;
  if (auto st = folder("public_html", "public_html", s.public_html); !st) return st;

  if (config.contains("revlink")) {
    const json& r = config["revlink"];
    if (r.is_string()) {
      s.revlink = r.get<std::string>();
    } else if (r.is_object()) {
      auto m = string_map(config, "revlink");
      if (!m) return m.status();
      s.revlinks = std::move(*m);
    } else {
      return sdk::invalid_config(
          "revlink: must be a format string with %s, or a map of repository to format");
    }
  }
  if (config.contains("changecommentlink")) {
    json links = config["changecommentlink"];
    if (links.is_object()) links = json::array({links});
    if (!links.is_array())
      return sdk::invalid_config("changecommentlink: must be {regex, url, title} or a list of them");
    for (size_t i = 0; i < links.size(); ++i) {
      const json& l = links[i];
      const std::string where = "changecommentlink[" + std::to_string(i) + "]";
      if (!l.is_object() || !l.contains("regex") || !l["regex"].is_string() || !l.contains("url") ||
          !l["url"].is_string()) {
        return sdk::invalid_config(where + ": needs regex and url strings (title optional)");
      }
      CommentLink cl;
      try {
        cl.regex = std::regex(l["regex"].get<std::string>(), std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        return sdk::invalid_config(where + ".regex: " + e.what());
      }
      cl.url = regex_format(l["url"].get<std::string>());
      cl.title = regex_format(l.value("title", std::string("$&")));
      s.comment_links.push_back(std::move(cl));
    }
  }
  auto projects = string_map(config, "projects");
  if (!projects) return projects.status();
  s.projects = std::move(*projects);
  auto repositories = string_map(config, "repositories");
  if (!repositories) return repositories.status();
  s.repositories = std::move(*repositories);
  return s;
}

void Pages::serve(const Request& request, const Identity& who, Respond respond) {
  if (request.method != "GET") {
    Response r = html_error(405, "pages are read with GET");
    r.headers.emplace_back("Allow", "GET");
    return respond(std::move(r));
  }
  std::vector<std::string> segs;
  for (const std::string& s : split_path(request.path)) segs.push_back(url_decode(s));
  std::vector<std::string> args;
  const PageRoute* route = match(segs, args);
  if (!route) {
    if (auto file = static_file(settings_.public_html, segs)) return respond(file_response(*file));
    return respond(html_error(404, "no page at '" + request.path + "'; the REST API is under /api/v2"));
  }
  auto call = std::make_shared<PageRequest>(request, who, backend_, auth_, settings_, nullptr);
  call->args = std::move(args);
  const bool fragment = call->arg("fragment").value_or("") == "1";
  PageRequest* self = call.get();  // whoever calls done holds the call
  call->done = [self, fragment, respond = std::move(respond)](Page page) {
    if (page.raw) return respond(std::move(*page.raw));
    Response r;
    r.status = page.status;
    r.content_type = "text/html; charset=utf-8";
    // A page of a session carries its CSRF token: no cache may keep it.
    r.headers.emplace_back("Cache-Control", self->who.by_session ? "no-store" : "no-cache");
    r.body = fragment ? std::move(page.content) : html::document(*self, page);
    respond(std::move(r));
  };
  route->render(call);
}

}  // namespace kiln::web
