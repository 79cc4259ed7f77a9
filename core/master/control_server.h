#pragma once
// The master's control socket: `DIR/kiln.sock`, a Unix-domain stream socket
// only its owner may use, through which `kiln data`, `kiln force`,
// `kiln status`, ... talk to a running master. Newline-delimited JSON: one
// request object per line, one response object per line, in order, several
// per connection. What a request does is the Master's business (the
// handler); this file owns the socket, the framing and the limits.

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace kiln::master {

// Answers one request by calling `reply` exactly once, from any thread, now
// or later. Errors are answered as {"error": "message"}. A reply holds its
// connection open, so none may outlive the io_context.
using ControlReply = std::function<void(nlohmann::json response)>;
using ControlHandler = std::function<void(const nlohmann::json& request, ControlReply reply)>;

class ControlServer {
 public:
  // A longer request line is answered with an error and its connection
  // closed: nothing a CLI sends comes near it.
  static constexpr size_t kMaxLineBytes = size_t{1} << 20;

  ControlServer(boost::asio::io_context& io, ControlHandler handler);
  // Stops, as stop() does. Destroy on the loop thread, or once the loop no
  // longer runs.
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Where a master folder's control socket lives.
  static std::filesystem::path socket_path_of(const std::filesystem::path& master_dir);

  // Listens on socket_path_of(master_dir), replacing a stale socket file a
  // crashed master left behind. Refuses when another process still listens
  // there or the path is too long for a Unix socket. Returns an error
  // message, empty on success. Call before the loop runs or on its thread.
  std::string start(const std::filesystem::path& master_dir);

  // Closes the listener and every connection and removes the socket file.
  // Replies still to come are dropped. Loop thread (or loop not running).
  void stop();

  const std::filesystem::path& socket_path() const;

 private:
  struct State;
  struct Connection;
  std::shared_ptr<State> state_;
};

}  // namespace kiln::master
