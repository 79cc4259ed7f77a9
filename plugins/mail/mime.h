#pragma once
// The mail plugin's message text: RFC 5322 headers (RFC 2047 encoded when
// not ASCII, line breaks removed so no value can add a header) and a MIME
// body: the text (plain or HTML, quoted-printable) alone, or with the
// attached logs and patches (base64) in multipart/mixed.

#include <cstdint>
#include <string>

#include <kiln/sdk/base64.hpp>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::mail {

struct MimeAttachment {
  std::string filename;
  std::string content_type;  // "text/plain", "text/x-diff", ...
  std::string content;
};

struct MimeMessage {
  std::string from;                                          // as written: "CI <ci@example.org>"
  std::vector<std::string> to;
  std::string subject;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones, in order
  std::string body;
  bool html = false;
  std::vector<MimeAttachment> attachments;
  int64_t date_ms = 0;        // the Date header (master clock)
  std::string message_id;     // without the angle brackets
};

// The whole message with CRLF line ends, ready for DATA.
std::string compose(const MimeMessage& message);

// Header field names are letters, digits and '-' (RFC 5322 allows more;
// nobody needs it).
bool valid_header_name(const std::string& name);

}  // namespace kiln::mail
