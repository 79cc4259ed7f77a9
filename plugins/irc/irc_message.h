#pragma once
// One IRC protocol line (RFC 2812 section 2.3.1) parsed into prefix,
// command and parameters, and the text helpers the bot needs: nick of a
// prefix, case-insensitive names, splitting long text into lines that fit.

#include <string>
#include <string_view>
#include <vector>

namespace kiln::irc {

struct IrcMessage {
  std::string prefix;               // "nick!user@host" or a server name; may be empty
  std::string command;              // upper case: "PRIVMSG", "001", ...
  std::vector<std::string> params;  // the trailing parameter last, without its ':'

  static IrcMessage parse(std::string_view line);
  std::string nick() const;  // the prefix up to '!'
  const std::string& param(size_t i) const;
};

// IRC's case mapping (ascii, as ngIRCd and most servers announce).
std::string irc_lower(std::string_view text);
bool irc_equal(std::string_view a, std::string_view b);

// `text` as lines of at most `limit` bytes each, broken at spaces where
// possible and at line breaks always; never splits a UTF-8 sequence.
std::vector<std::string> irc_lines(std::string_view text, size_t limit);

// Whether `name` can be a channel (#, &, + or ! then no space, comma, bell).
bool is_channel_name(std::string_view name);

}  // namespace kiln::irc
