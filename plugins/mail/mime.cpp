// compose(): headers, then the text part, then each attachment. Encoded
// words and quoted-printable keep every line within RFC 5322's 78
// characters, so relays never have to rewrap what they pass on.

#include "mime.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <random>
#include <string_view>

namespace kiln::mail {

namespace {

// Base64 in lines of 76 characters.
std::string base64_lines(std::string_view in) {
  const std::string flat = sdk::base64_encode(in);
  std::string out;
  for (size_t i = 0; i < flat.size(); i += 76) out += flat.substr(i, 76) + "\r\n";
  return out;
}

bool ascii_printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= 0x20 && c < 0x7f; });
}

// CR, LF and other controls become spaces: a value never starts a header.
std::string one_line(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return out;
}

// RFC 2047 encoded words of at most ~75 characters, split only between
// UTF-8 sequences.
std::string encoded_words(std::string_view text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = std::min(text.size(), pos + 45);
    while (end < text.size() && end > pos && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    if (!out.empty()) out += "\r\n ";
    out += "=?utf-8?b?" + sdk::base64_encode(text.substr(pos, end - pos)) + "?=";
    pos = end;
  }
  return out;
}

std::string header_value(std::string_view value) {
  std::string line = one_line(value);
  return ascii_printable(line) ? line : encoded_words(line);
}

// Quoted-printable (RFC 2045): lines end in CRLF, at most 76 characters,
// with soft breaks; '=' and bytes outside printable ASCII encoded, and
// spaces or tabs at a line end too.
std::string quoted_printable(std::string_view text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  size_t column = 0;
  auto put = [&](const std::string& piece) {
    if (column + piece.size() > 75) {
      out += "=\r\n";
      column = 0;
    }
    out += piece;
    column += piece.size();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = text[i];
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;
    if (c == '\n') {
      out += "\r\n";
      column = 0;
      continue;
    }
    const bool at_line_end = i + 1 == text.size() || text[i + 1] == '\n' || text[i + 1] == '\r';
    const bool plain = (c >= 0x21 && c <= 0x7e && c != '=') || ((c == ' ' || c == '\t') && !at_line_end);
    if (plain) {
      put(std::string(1, static_cast<char>(c)));
    } else {
      put(std::string{'=', kHex[c >> 4], kHex[c & 15]});
    }
  }
  if (column > 0) out += "\r\n";
  return out;
}

std::string rfc5322_date(int64_t ms) {
  static const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string boundary() {
  static const char* kChars = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::random_device device;
  std::mt19937_64 random(device());
  std::string out = "=_kiln_";
  for (int i = 0; i < 24; ++i) out += kChars[random() % 36];
  return out;
}

// A filename parameter: quoted, with what would break the quoting removed.
std::string filename_parameter(std::string_view name) {
  std::string out;
  for (char c : one_line(name)) {
    if (c != '"' && c != '\\') out += c;
  }
  return "\"" + (ascii_printable(out) ? out : encoded_words(out)) + "\"";
}

}  // namespace

bool valid_header_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-';
  });
}

std::string compose(const MimeMessage& m) {
  std::string out;
  auto header = [&](const std::string& name, const std::string& value) { out += name + ": " + value + "\r\n"; };
  header("From", header_value(m.from));
  std::string to;
  for (const auto& r : m.to) to += (to.empty() ? "" : ",\r\n ") + one_line(r);
  if (!to.empty()) header("To", to);
  header("Subject", header_value(m.subject));
  header("Date", rfc5322_date(m.date_ms));
  if (!m.message_id.empty()) header("Message-ID", "<" + one_line(m.message_id) + ">");
  header("MIME-Version", "1.0");
  for (const auto& [name, value] : m.headers) header(name, header_value(value));

  const std::string text_type = std::string("text/") + (m.html ? "html" : "plain") + "; charset=utf-8";
  if (m.attachments.empty()) {
    header("Content-Type", text_type);
    header("Content-Transfer-Encoding", "quoted-printable");
    out += "\r\n" + quoted_printable(m.body);
    return out;
  }
  const std::string b = boundary();
  header("Content-Type", "multipart/mixed; boundary=\"" + b + "\"");
  out += "\r\nThis is a multi-part message in MIME format.\r\n";
  out += "--" + b + "\r\n";
  out += "Content-Type: " + text_type + "\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n";
  out += quoted_printable(m.body);
  for (const auto& a : m.attachments) {
    out += "--" + b + "\r\n";
    const std::string type = a.content_type.empty() ? "application/octet-stream" : a.content_type;
    const bool text = type.rfind("text/", 0) == 0;
    out += "Content-Type: " + type + (text ? "; charset=utf-8" : "") + "; name=" + filename_parameter(a.filename) +
           "\r\n";
    out += "Content-Disposition: attachment; filename=" + filename_parameter(a.filename) + "\r\n";
    out += "Content-Transfer-Encoding: base64\r\n\r\n";
    out += base64_lines(a.content);
  }
  out += "--" + b + "--\r\n";
  return out;
}

}  // namespace kiln::mail
