#pragma once
// The IRC bot's connection, on a thread of its own so the engine's loop
// never waits for the network: connects (plain TCP or TLS through
// OpenSSL), registers (PASS, NICK, USER; another nick when the first is
// taken), answers PINGs, and reconnects after Buildbot's delays -
// `lost_delay` when an established connection drops, `failed_delay` when a
// connection cannot be made or registration does not complete. Everything
// else the server says goes to the handler, on the connection's thread.
// send() may be called from any thread.

#include "irc_message.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace kiln::irc {

struct IrcSettings {
  std::string host;
  uint16_t port = 6667;
  bool tls = false;
  bool tls_verify = true;
  std::string tls_ca_file;       // trust these certificates instead of the system's
  std::string nick;
  std::string server_password;   // PASS, when not empty
  std::string realname = "Kiln IRC bot";
  double lost_delay_s = 3;
  double failed_delay_s = 50;
  double timeout_s = 30;         // to connect, and to be welcomed after that
};

struct IrcHandler {
  // Registration completed under `nick`: join channels, identify.
  std::function<void(const std::string& nick)> registered;
  std::function<void(const IrcMessage&)> message;
  // The connection is gone or could not be made; the next attempt is in
  // `retry_in_s`.
  std::function<void(const std::string& why, double retry_in_s)> disconnected;
};

class IrcConnection {
 public:
  IrcConnection(IrcSettings settings, IrcHandler handler);
  // Says QUIT when connected, then stops the thread.
  ~IrcConnection();
  IrcConnection(const IrcConnection&) = delete;
  IrcConnection& operator=(const IrcConnection&) = delete;

  // One protocol line without its CRLF; dropped when not registered (the
  // bot joins its channels again on each registration).
  void send(std::string line);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace kiln::irc
