#pragma once
// What the IRC tests share: a real IRC server (Debian's ngIRCd, run in the
// foreground with a generated configuration on loopback ports, killed when
// the test ends) and a small IRC client that registers, joins, speaks, and
// keeps every line the server sends it for the test to look through.

#include "store/temp_dir.h"
#include "util/child_process.h"
#include "util/free_port.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace kiln::irc::test {

namespace fs = std::filesystem;
using kiln::testing::free_port;
using kiln::testing::TempDir;

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A TCP connection to 127.0.0.1:port, or -1.
inline int connect_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

struct ServerOptions {
  // Channels the server makes at start, with their keys (+k).
  std::vector<std::pair<std::string, std::string>> keyed_channels;
  fs::path cert, key;  // a TLS port too, when set
};

class IrcServer {
 public:
  // On `port`, or on a free one.
  explicit IrcServer(ServerOptions options = {}, uint16_t port = 0) : options_(std::move(options)) {
    if (port != 0) port_ = port;
    if (!options_.cert.empty()) tls_port_ = free_port();
    start();
  }
  ~IrcServer() { stop(); }
  IrcServer(const IrcServer&) = delete;
  IrcServer& operator=(const IrcServer&) = delete;

  uint16_t port() const { return port_; }
  uint16_t tls_port() const { return tls_port_; }

  void start() {
    std::string conf =
        "[Global]\nName = irc.kiln.test\nInfo = Kiln test server\nListen = 127.0.0.1\nPorts = " +
        std::to_string(port_) +
        "\nAdminInfo1 = Kiln tests\nAdminInfo2 = loopback\nAdminEMail = tests@kiln.invalid\nMotdPhrase = test server\n"
        "[Limits]\nMaxNickLength = 30\nMaxJoins = 0\nPingTimeout = 120\nPongTimeout = 20\n"
        "[Options]\nPAM = no\nIdent = no\nDNS = no\n";
    if (!options_.cert.empty()) {
      conf += "[SSL]\nCertFile = " + options_.cert.string() + "\nKeyFile = " + options_.key.string() +
              "\nPorts = " + std::to_string(tls_port_) + "\n";
    }
    for (const auto& [name, key] : options_.keyed_channels) {
      conf += "[Channel]\nName = " + name + "\nModes = +k " + key + "\n";
    }
    kiln::testing::write_file(dir_ / "ngircd.conf", conf);
    process_.start({"/usr/sbin/ngircd", "--nodaemon", "--config", (dir_ / "ngircd.conf").string()},
                   dir_ / "ngircd.out");
    for (uint16_t p : {port_, tls_port_}) {
      if (p == 0) continue;
      process_.wait_until(
          [p] {
            const int fd = connect_loopback(p);
            if (fd >= 0) ::close(fd);
            return fd >= 0;
          },
          [this] { return log(); });
    }
  }

  // Ends the server: every client is dropped at once.
  void stop() { process_.stop(); }

  std::string log() const { return kiln::testing::read_file(dir_ / "ngircd.out"); }

 private:
  ServerOptions options_;
  TempDir dir_{"kiln-ircd"};
  uint16_t port_ = free_port();
  uint16_t tls_port_ = 0;
  kiln::testing::ChildProcess process_;
};

// One line from the server: ":prefix COMMAND a b :trailing".
struct Line {
  std::string raw, from, command;
  std::vector<std::string> params;

  static Line parse(const std::string& raw) {
    Line l;
    l.raw = raw;
    std::string rest = raw;
    if (!rest.empty() && rest[0] == ':') {
      const size_t space = rest.find(' ');
      l.from = rest.substr(1, space - 1);
      l.from = l.from.substr(0, l.from.find('!'));
      rest = space == std::string::npos ? "" : rest.substr(space + 1);
    }
    while (!rest.empty()) {
      if (rest[0] == ':' && !l.command.empty()) {
        l.params.push_back(rest.substr(1));
        break;
      }
      const size_t space = rest.find(' ');
      (l.command.empty() ? l.command : l.params.emplace_back()) = rest.substr(0, space);
      rest = space == std::string::npos ? "" : rest.substr(space + 1);
    }
    return l;
  }
  const std::string& text() const {
    static const std::string kNone;
    return params.empty() ? kNone : params.back();
  }
};

class IrcClient {
 public:
  // Connects and registers as `nick`; waits for the welcome.
  IrcClient(uint16_t port, std::string nick) : nick_(std::move(nick)) {
    fd_ = connect_loopback(port);
    REQUIRE(fd_ >= 0);
    reader_ = std::thread([this] { read_lines(); });
    send("NICK " + nick_);
    send("USER " + nick_ + " 0 * :Kiln test client");
    REQUIRE(wait_for([](const Line& l) { return l.command == "001"; }));
  }
  ~IrcClient() {
    ::shutdown(fd_, SHUT_RDWR);
    reader_.join();
    ::close(fd_);
  }
  IrcClient(const IrcClient&) = delete;
  IrcClient& operator=(const IrcClient&) = delete;

  const std::string& nick() const { return nick_; }

  void send(const std::string& line) {
    const std::string data = line + "\r\n";
    REQUIRE(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
  }
  void say(const std::string& target, const std::string& text) { send("PRIVMSG " + target + " :" + text); }

  void join(const std::string& channel, const std::string& key = "") {
    send("JOIN " + channel + (key.empty() ? "" : " " + key));
    REQUIRE(wait_for([&](const Line& l) { return l.command == "366" && l.params.size() > 1 && l.params[1] == channel; }));
  }

  // How many lines have come so far: a mark to look after.
  size_t mark() const {
    std::lock_guard lock(mutex_);
    return lines_.size();
  }

  std::vector<Line> lines(size_t from = 0) const {
    std::lock_guard lock(mutex_);
    return {lines_.begin() + static_cast<std::ptrdiff_t>(std::min(from, lines_.size())), lines_.end()};
  }

  std::optional<Line> find(const std::function<bool(const Line&)>& pred, size_t from = 0) const {
    for (auto& l : lines(from)) {
      if (pred(l)) return l;
    }
    return std::nullopt;
  }

  // What `who` said (PRIVMSG or NOTICE) to `to` since `from`, in order.
  std::vector<std::string> said(const std::string& who, const std::string& to, size_t from = 0,
                                const std::string& verb = "PRIVMSG") const {
    std::vector<std::string> out;
    for (auto& l : lines(from)) {
      if (l.command == verb && l.from == who && !l.params.empty() && l.params[0] == to) out.push_back(l.text());
    }
    return out;
  }

  // The first thing `who` said to `to` since `from` that contains `part`.
  std::optional<std::string> heard(const std::string& who, const std::string& to, const std::string& part,
                                   size_t from = 0, const std::string& verb = "PRIVMSG") const {
    for (auto& s : said(who, to, from, verb)) {
      if (contains(s, part)) return s;
    }
    return std::nullopt;
  }

  // Waits in real time (for the client's own exchanges with the server,
  // when no master loop needs pumping).
  bool wait_for(const std::function<bool(const Line&)>& pred) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (find(pred)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::string transcript(size_t from = 0) const {
    std::string out;
    for (auto& l : lines(from)) out += l.raw + "\n";
    return out;
  }

 private:
  void read_lines() {
    std::string buffer;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) return;
      buffer.append(chunk, static_cast<size_t>(n));
      for (size_t nl; (nl = buffer.find('\n')) != std::string::npos;) {
        std::string raw = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        if (!raw.empty() && raw.back() == '\r') raw.pop_back();
        Line line = Line::parse(raw);
        if (line.command == "PING") {
          const std::string pong = "PONG :" + line.text() + "\r\n";
          ::send(fd_, pong.data(), pong.size(), MSG_NOSIGNAL);
        }
        std::lock_guard lock(mutex_);
        lines_.push_back(std::move(line));
      }
    }
  }

  std::string nick_;
  int fd_ = -1;
  mutable std::mutex mutex_;
  std::vector<Line> lines_;
  std::thread reader_;
};

}  // namespace kiln::irc::test
