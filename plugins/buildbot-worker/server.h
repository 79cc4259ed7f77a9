#pragma once
// The WebSocket side of the buildbot-worker plugin: one Server per listen
// address, shared (reference-counted) by every worker instance configured
// with that address, each running its own io_context on its own thread.
// The server authenticates the upgrade request (HTTP Basic, as Buildbot's
// worker sends it), completes the handshake and hands each accepted
// connection, as a Link, to the endpoint registered under the worker's name.
//
// Threads: everything in Connection runs on the server's thread. A Link is
// the thread-safe face of one connection: the instance sends and closes
// through it from the loop thread, and receives events through a sink that
// the server thread calls (the sink only posts to the loop). Links hold the
// server weakly, so a Link outliving its server is harmless.

#include "tls_server.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace kiln::buildbot_worker {

class Server;

// One accepted connection, plain or TLS (server.cpp): what a Link needs.
class Connection {
 public:
  virtual ~Connection() = default;
  virtual void start_reading() = 0;
  virtual void read() = 0;
  virtual void send(std::string payload) = 0;
  virtual void abort(const std::string& reason) = 0;
};

using TlsFiles = kiln::tls::TlsFiles;

struct LinkEvent {
  enum class Kind { kMessage, kClosed };
  Kind kind = Kind::kMessage;
  std::string data;  // kMessage: the msgpack payload; kClosed: why
};

class Link {
 public:
  using Sink = std::function<void(LinkEvent)>;

  Link(std::weak_ptr<Server> server, std::string peer) : server_(std::move(server)), peer_(std::move(peer)) {}

  const std::string& peer() const { return peer_; }

  // Any thread. The sink is called on the server thread, never after
  // set_sink() / detach() returned for a later sink.
  void set_sink(Sink sink);
  void detach() { set_sink(nullptr); }

  // Any thread: queue a binary message; start reading; drop the TCP
  // connection (no closing handshake, as Buildbot does).
  void send(std::string payload);
  void start_reading();
  void close(std::string reason);
  // The loop handled `bytes` of delivered messages: reading resumes when
  // the backlog falls under the limit.
  void consumed(size_t bytes);

  // --- server thread ---
  void bind(std::weak_ptr<Connection> connection) { connection_ = std::move(connection); }
  bool deliver(LinkEvent event);
  // True when reading may go on; otherwise reading is paused until
  // consumed() resumes it.
  bool may_read();

 private:
  template <class Fn>
  void on_server(Fn fn);

  std::weak_ptr<Server> server_;
  std::weak_ptr<Connection> connection_;  // touched on the server thread only
  std::string peer_;
  std::mutex sink_mutex_;
  Sink sink_;
  std::atomic<size_t> backlog_{0};
  std::atomic<bool> paused_{false};
};

class Server : public std::enable_shared_from_this<Server> {
 public:
  // Called on the server thread with the server's endpoint lock held: it
  // must only hand the link on (post it to the loop).
  using OnConnect = std::function<void(std::shared_ptr<Link>)>;

  // The server for `listen` ("host:port"), started on first use, with TLS
  // when `tls` is given. Shares by the normalised address; workers sharing
  // one must agree on TLS.
  static std::shared_ptr<Server> acquire(const std::string& listen, const std::optional<TlsFiles>& tls,
                                         std::string& error);
  // "127.0.0.1:9989", "[::1]:9989", "0.0.0.0:9989"; nullopt with `error`.
  static std::optional<boost::asio::ip::tcp::endpoint> parse_listen(const std::string& listen,
                                                                      std::string& error);

  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // One endpoint per worker name and server.
  bool add_endpoint(const std::string& name, std::string password, OnConnect on_connect,
                    std::string& error);
  // After this returns the endpoint's on_connect is not called again.
  void remove_endpoint(const std::string& name);

  uint16_t port() const { return port_; }
  bool tls() const { return tls_.has_value(); }
  const std::string& address() const { return key_; }

  // --- server thread (Connection) ---
  enum class Auth { kOk, kUnknown };
  Auth check(const std::string& name, const std::string& password);
  // Hands an accepted link to its endpoint; false when it went away.
  bool dispatch(const std::string& name, std::shared_ptr<Link> link);
  void track(const std::shared_ptr<Connection>& c);
  void untrack(const Connection* c);
  boost::asio::any_io_executor executor();

 private:
  struct Impl;
  Server(std::string key, std::optional<TlsFiles> tls);
  bool listen(const boost::asio::ip::tcp::endpoint& endpoint, std::string& error);
  void accept_next();

  std::string key_;
  std::optional<TlsFiles> tls_;
  uint16_t port_ = 0;
  std::unique_ptr<Impl> impl_;
  std::mutex endpoints_mutex_;
  struct Endpoint {
    std::string password;
    OnConnect on_connect;
  };
  std::map<std::string, Endpoint> endpoints_;
};

}  // namespace kiln::buildbot_worker
