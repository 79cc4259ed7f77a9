#pragma once
// The mail plugin's SMTP client: one blocking send() per message on the
// plugin's delivery thread, over Boost.Asio with a time limit on every
// exchange, STARTTLS or SMTPS's implicit TLS (OpenSSL through asio::ssl)
// and AUTH PLAIN or LOGIN.
// abort() (any thread) makes a send in progress return at once.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kiln::mail {

struct SmtpSettings {
  std::string host = "localhost";
  uint16_t port = 25;
  bool starttls = false;      // required: a server without STARTTLS is an error
  bool implicit_tls = false;  // SMTPS: TLS from the first byte (port 465)
  bool tls_verify = true;     // the server's certificate and name
  std::string tls_ca_file;    // trust these certificates instead of the system's
  std::string user;           // AUTH when not empty
  std::string password;
  double timeout_s = 30;      // per exchange (connect, each reply, the data)
  std::string helo_name;      // EHLO argument; empty: this host's name
};

struct Envelope {
  std::string from;                     // bare address
  std::vector<std::string> recipients;  // bare addresses
  std::string data;                     // the message, CRLF line ends
};

// What a send came to. `permanent` failures (5xx replies, refused
// authentication, bad TLS) are not worth retrying.
struct SendOutcome {
  bool ok = false;
  bool permanent = false;
  std::string error;
  std::vector<std::string> refused;  // recipients the server refused (the rest got it)
};

class SmtpClient {
 public:
  explicit SmtpClient(SmtpSettings settings);
  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // Blocking; one at a time.
  SendOutcome send(const Envelope& envelope);
  void abort();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::mail
