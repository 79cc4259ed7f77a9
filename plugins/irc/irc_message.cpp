// IrcMessage parsing and the text helpers of irc_message.h.

#include "irc_message.h"

#include <algorithm>

namespace kiln::irc {

IrcMessage IrcMessage::parse(std::string_view line) {
  IrcMessage m;
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.remove_suffix(1);
  if (!line.empty() && line.front() == '@') {  // IRCv3 tags: not used
    const size_t space = line.find(' ');
    line = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  }
  if (!line.empty() && line.front() == ':') {
    const size_t space = line.find(' ');
    m.prefix = std::string(line.substr(1, space == std::string_view::npos ? line.npos : space - 1));
    line = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
  }
  bool first = true;
  while (!line.empty()) {
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (line.empty()) break;
    if (!first && line.front() == ':') {
      m.params.emplace_back(line.substr(1));
      break;
    }
    const size_t space = line.find(' ');
    std::string word(line.substr(0, space));
    line = space == std::string_view::npos ? std::string_view() : line.substr(space);
    if (first) {
      std::transform(word.begin(), word.end(), word.begin(), [](unsigned char c) { return std::toupper(c); });
      m.command = std::move(word);
      first = false;
    } else {
      m.params.push_back(std::move(word));
    }
  }
  return m;
}

std::string IrcMessage::nick() const { return prefix.substr(0, prefix.find('!')); }

const std::string& IrcMessage::param(size_t i) const {
  static const std::string kNone;
  return i < params.size() ? params[i] : kNone;
}

std::string irc_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool irc_equal(std::string_view a, std::string_view b) { return irc_lower(a) == irc_lower(b); }

std::vector<std::string> irc_lines(std::string_view text, size_t limit) {
  std::vector<std::string> out;
  limit = std::max<size_t>(limit, 8);
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    while (line.size() > limit) {
      size_t cut = line.rfind(' ', limit);
      if (cut == std::string_view::npos || cut == 0) {
        cut = limit;
        // Back off to the start of a UTF-8 sequence.
        while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
        if (cut == 0) cut = limit;
      }
      out.emplace_back(line.substr(0, cut));
      line.remove_prefix(cut);
      while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    }
    if (!line.empty()) out.emplace_back(line);
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  return out;
}

bool is_channel_name(std::string_view name) {
  if (name.size() < 2 || name.size() > 200) return false;
  if (name[0] != '#' && name[0] != '&' && name[0] != '+' && name[0] != '!') return false;
  return name.find_first_of(std::string_view(" ,\a\r\n\0", 6)) == std::string_view::npos;
}

}  // namespace kiln::irc
