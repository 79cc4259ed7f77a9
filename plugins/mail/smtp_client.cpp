// SmtpClient: RFC 5321 submission as Buildbot's MailNotifier does it
// (twisted's ESMTPSender): EHLO, STARTTLS and EHLO again when asked for,
// AUTH PLAIN (or LOGIN when that is all the server offers), MAIL, RCPT per
// recipient, DATA with dot-stuffing, QUIT. Each exchange runs the
// client's own io_context for at most the timeout, so a silent server
// costs one timeout, and abort() ends it at once.

#include "smtp_client.h"

#include "mime.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/host_name.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <openssl/ssl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <functional>
#include <istream>
#include <mutex>
#include <stdexcept>
#include <string_view>

namespace kiln::mail {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// A reply longer than this is not SMTP.
constexpr size_t kMaxReplyBytes = 64 * 1024;

struct Failure : std::runtime_error {
  Failure(const std::string& what, bool permanent_failure)
      : std::runtime_error(what), permanent(permanent_failure) {}
  bool permanent;
};

struct Reply {
  int code = 0;
  std::vector<std::string> lines;  // text after the code

  std::string text() const {
    std::string out = std::to_string(code);
    for (const auto& l : lines) out += " " + l;
    return out;
  }
};

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

// Lines starting with '.' get another one; line ends become CRLF; the
// terminating "." line is appended.
std::string dot_stuffed(std::string_view data) {
  std::string out;
  out.reserve(data.size() + data.size() / 50 + 8);
  bool line_start = true;
  for (size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (line_start && c == '.') out += '.';
    if (c == '\n' && (i == 0 || data[i - 1] != '\r')) {
      out += "\r\n";
    } else {
      out += c;
    }
    line_start = c == '\n';
  }
  if (!out.empty() && !line_start) out += "\r\n";
  out += ".\r\n";
  return out;
}

}  // namespace

struct SmtpClient::Impl {
  explicit Impl(SmtpSettings settings) : s(std::move(settings)) {}

  SmtpSettings s;
  asio::io_context io;
  std::atomic<bool> aborted{false};
  std::unique_ptr<tcp::socket> socket;
  std::unique_ptr<ssl::context> tls_context;
  std::unique_ptr<ssl::stream<tcp::socket&>> tls;
  asio::streambuf input;

  using Done = std::function<void(const error_code&)>;

  // Runs one asynchronous exchange to its end, the timeout, or abort().
  void wait(const std::function<void(Done)>& start, const std::string& what) {
    if (aborted) throw Failure("stopped", false);
    bool done = false;
    error_code result;
    start([&](const error_code& ec) {
      result = ec;
      done = true;
    });
    io.restart();
    // An abort() between the check above and restart() would be undone by it.
    if (!aborted) io.run_for(std::chrono::milliseconds(static_cast<int64_t>(s.timeout_s * 1000)));
    if (!done) {
      // Closing completes the pending operation (as aborted), so nothing
      // is left in the io_context that refers to this frame.
      close();
      io.restart();
      io.run();
      if (aborted) throw Failure("stopped", false);
      throw Failure("no answer from " + s.host + ":" + std::to_string(s.port) + " within " +
                        std::to_string(static_cast<int>(s.timeout_s)) + " s (" + what + ")",
                    false);
    }
    if (result) throw Failure(what + ": " + result.message(), false);
  }

  void close() {
    error_code ignored;
    if (socket) {
      socket->shutdown(tcp::socket::shutdown_both, ignored);
      socket->close(ignored);
    }
  }

  void connect() {
    tls.reset();
    socket = std::make_unique<tcp::socket>(io);
    input.consume(input.size());
    tcp::resolver resolver(io);
    tcp::resolver::results_type endpoints;
    wait(
        [&](Done done) {
          resolver.async_resolve(s.host, std::to_string(s.port),
                                 [&, done](const error_code& ec, tcp::resolver::results_type r) {
                                   endpoints = std::move(r);
                                   done(ec);
                                 });
        },
        "resolving " + s.host);
    wait(
        [&](Done done) {
          asio::async_connect(*socket, endpoints,
                              [done](const error_code& ec, const tcp::endpoint&) { done(ec); });
        },
        "connecting to " + s.host + ":" + std::to_string(s.port));
  }

  void write(const std::string& text, const std::string& what) {
    auto handler = [](Done done) { return [done](const error_code& ec, size_t) { done(ec); }; };
    wait(
        [&](Done done) {
          if (tls) {
            asio::async_write(*tls, asio::buffer(text), handler(done));
          } else {
            asio::async_write(*socket, asio::buffer(text), handler(done));
          }
        },
        "sending " + what);
  }

  std::string read_line(const std::string& what) {
    auto handler = [](Done done) { return [done](const error_code& ec, size_t) { done(ec); }; };
    wait(
        [&](Done done) {
          if (tls) {
            asio::async_read_until(*tls, input, "\r\n", handler(done));
          } else {
            asio::async_read_until(*socket, input, "\r\n", handler(done));
          }
        },
        "waiting for the reply to " + what);
    std::istream stream(&input);
    std::string line;
    std::getline(stream, line);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }

  Reply reply(const std::string& what) {
    Reply r;
    size_t total = 0;
    for (;;) {
      std::string line = read_line(what);
      total += line.size();
      if (line.size() < 3 || total > kMaxReplyBytes ||
          !std::all_of(line.begin(), line.begin() + 3, [](unsigned char c) { return std::isdigit(c); })) {
        throw Failure("the server's reply to " + what + " is not SMTP: '" + line.substr(0, 80) + "'", false);
      }
      r.code = std::stoi(line.substr(0, 3));
      r.lines.push_back(line.size() > 4 ? line.substr(4) : std::string());
      if (line.size() == 3 || line[3] != '-') return r;
    }
  }

  // Sends a command and checks the reply's class (2 for 2xx, 3 for 3xx).
  Reply command(const std::string& line, int expected_class, const std::string& what) {
    write(line + "\r\n", what);
    Reply r = reply(what);
    expect(r, expected_class, what);
    return r;
  }

  static void expect(const Reply& r, int expected_class, const std::string& what) {
    if (r.code / 100 == expected_class) return;
    throw Failure("the server answered " + what + " with '" + r.text() + "'", r.code / 100 == 5);
  }

  std::vector<std::string> ehlo() {
    const std::string name = s.helo_name.empty() ? asio::ip::host_name() : s.helo_name;
    write("EHLO " + name + "\r\n", "EHLO");
    Reply r = reply("EHLO");
    if (r.code / 100 != 2) {
      if (s.starttls || !s.user.empty()) expect(r, 2, "EHLO");
      command("HELO " + name, 2, "HELO");
      return {};
    }
    std::vector<std::string> capabilities;
    for (size_t i = 1; i < r.lines.size(); ++i) capabilities.push_back(upper(r.lines[i]));
    return capabilities;
  }

  static bool offers(const std::vector<std::string>& capabilities, const std::string& keyword) {
    return std::any_of(capabilities.begin(), capabilities.end(), [&](const std::string& c) {
      return c == keyword || c.rfind(keyword + " ", 0) == 0 || c.rfind(keyword + "=", 0) == 0;
    });
  }

  static std::vector<std::string> auth_mechanisms(const std::vector<std::string>& capabilities) {
    std::vector<std::string> out;
    for (const auto& c : capabilities) {
      if (c.rfind("AUTH ", 0) != 0 && c.rfind("AUTH=", 0) != 0) continue;
      size_t pos = 5;
      while (pos < c.size()) {
        size_t space = c.find(' ', pos);
        if (space == std::string::npos) space = c.size();
        if (space > pos) out.push_back(c.substr(pos, space - pos));
        pos = space + 1;
      }
    }
    return out;
  }

  void start_tls() {
    command("STARTTLS", 2, "STARTTLS");
    handshake();
  }

  // TLS over the connected socket: after STARTTLS, or at once for SMTPS.
  void handshake() {
    tls_context = std::make_unique<ssl::context>(ssl::context::tls_client);
    tls_context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                             ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    error_code ec;
    if (!s.tls_ca_file.empty()) {
      tls_context->load_verify_file(s.tls_ca_file, ec);
      if (ec) throw Failure("tls_ca_file '" + s.tls_ca_file + "': " + ec.message(), true);
    } else {
      tls_context->set_default_verify_paths(ec);
    }
    tls = std::make_unique<ssl::stream<tcp::socket&>>(*socket, *tls_context);
    if (s.tls_verify) {
      tls->set_verify_mode(ssl::verify_peer);
      tls->set_verify_callback(ssl::host_name_verification(s.host));
    } else {
      tls->set_verify_mode(ssl::verify_none);
    }
    SSL_set_tlsext_host_name(tls->native_handle(), s.host.c_str());
    try {
      wait([&](Done done) { tls->async_handshake(ssl::stream_base::client, done); }, "the TLS handshake");
    } catch (const Failure& f) {
      // A certificate that does not verify stays so until someone acts.
      throw Failure(std::string(f.what()) + (s.tls_verify ? " (is the server's certificate trusted? see tls_ca_file)" : ""),
                    true);
    }
    // What was read before the handshake belongs to the plain session.
    input.consume(input.size());
  }

  void authenticate(const std::vector<std::string>& capabilities) {
    const auto mechanisms = auth_mechanisms(capabilities);
    auto has = [&](const char* m) { return std::find(mechanisms.begin(), mechanisms.end(), m) != mechanisms.end(); };
    if (has("PLAIN")) {
      command("AUTH PLAIN " + sdk::base64_encode(std::string(1, '\0') + s.user + '\0' + s.password), 2, "AUTH PLAIN");
    } else if (has("LOGIN")) {
      command("AUTH LOGIN", 3, "AUTH LOGIN");
      command(sdk::base64_encode(s.user), 3, "the AUTH LOGIN user name");
      command(sdk::base64_encode(s.password), 2, "the AUTH LOGIN password");
    } else if (mechanisms.empty()) {
      throw Failure("smtp_user is set but " + s.host + " offers no authentication" +
                        (tls ? "" : " (some servers offer it only after STARTTLS: set use_tls)"),
                    true);
    } else {
      std::string list;
      for (const auto& m : mechanisms) list += (list.empty() ? "" : " ") + m;
      throw Failure(s.host + " offers authentication only by " + list + "; Kiln speaks PLAIN and LOGIN", true);
    }
  }

  SendOutcome send(const Envelope& e) {
    SendOutcome out;
    try {
      connect();
      if (s.implicit_tls) handshake();
      expect(reply("the greeting"), 2, "the connection (greeting)");
      auto capabilities = ehlo();
      if (s.starttls) {
        if (!offers(capabilities, "STARTTLS")) {
          throw Failure("use_tls is set but " + s.host + " does not offer STARTTLS", true);
        }
        start_tls();
        capabilities = ehlo();
      }
      if (!s.user.empty()) authenticate(capabilities);
      command("MAIL FROM:<" + e.from + ">", 2, "MAIL FROM");
      size_t accepted = 0;
      std::string last_refusal;
      for (const auto& r : e.recipients) {
        write("RCPT TO:<" + r + ">\r\n", "RCPT TO");
        Reply reply_to = reply("RCPT TO <" + r + ">");
        if (reply_to.code / 100 == 2) {
          ++accepted;
        } else {
          out.refused.push_back(r);
          last_refusal = reply_to.text();
          if (reply_to.code / 100 == 4) throw Failure("the server deferred <" + r + ">: " + last_refusal, false);
        }
      }
      if (accepted == 0) throw Failure("the server refused every recipient: " + last_refusal, true);
      command("DATA", 3, "DATA");
      write(dot_stuffed(e.data), "the message");
      expect(reply("the message"), 2, "the message");
      try {
        command("QUIT", 2, "QUIT");
      } catch (const Failure&) {
        // Delivered already; a server that hangs up early changes nothing.
      }
      out.ok = true;
    } catch (const Failure& f) {
      out.error = f.what();
      out.permanent = f.permanent;
    } catch (const std::exception& ex) {
      out.error = ex.what();
    }
    close();
    tls.reset();
    socket.reset();
    return out;
  }
};

SmtpClient::SmtpClient(SmtpSettings settings) : impl_(std::make_unique<Impl>(std::move(settings))) {}
SmtpClient::~SmtpClient() = default;

SendOutcome SmtpClient::send(const Envelope& envelope) { return impl_->send(envelope); }

void SmtpClient::abort() {
  impl_->aborted = true;
  impl_->io.stop();
}

}  // namespace kiln::mail
