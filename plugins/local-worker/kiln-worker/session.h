#pragma once
// One connection of kiln-worker to its master, after the WebSocket
// handshake: answers the master's requests (print, keepalive,
// get_worker_info, set_worker_settings, start_command, interrupt_command,
// shutdown) and runs its commands with kiln_worker_commands, the local
// worker's own command set, turning their progress into `update`,
// `complete` and file-transfer requests (reference
// worker-protocol-msgpack.md §3, §4).
//
// Threads: a Session lives on the network thread (`net`); the commands run
// on the command thread (`commands`), whose sinks post to the network
// thread and, for transfers, wait for the master's answer there. Output is
// back-pressured: a command's sink waits while more than a few MiB are
// queued for the socket, so a worker printing faster than the master reads
// keeps its memory flat.

#include <kiln/worker/command_runner.h>
#include <kiln/worker_wire/wire.h>

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace kiln::kiln_worker {

using PlainWebSocket = boost::beast::websocket::stream<boost::beast::tcp_stream>;
using TlsWebSocket = boost::beast::websocket::stream<boost::beast::ssl_stream<boost::beast::tcp_stream>>;
// ws:// or wss://, chosen by --master.
using WebSocket = std::variant<PlainWebSocket, TlsWebSocket>;
using Value = worker_wire::Value;

class Outbox;
class CommandBridge;

// Commands started and not yet complete, across sessions (a closed
// session's interrupted commands are still winding down).
size_t live_commands();

class Session : public std::enable_shared_from_this<Session> {
 public:
  // Called once, on the network thread, when the connection is over;
  // `shutdown` when the master asked the worker to shut down.
  using Closed = std::function<void(const std::string& reason, bool shutdown)>;
  using Log = std::function<void(const std::string&)>;

  Session(boost::asio::io_context& net, WebSocket ws, boost::asio::io_context& commands, const worker::WorkerSettings& settings, Value info,
          Log log, Closed closed);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  // Drops the connection (no closing handshake, as Buildbot does) and
  // interrupts every running command: the master has already given up on
  // them (their build ends RETRY), so their results go nowhere.
  void close(const std::string& reason);
  size_t running_commands() const { return commands_.size(); }

  // --- from the command thread, through CommandBridge (network thread) ---
  void add_output(const std::string& command_id, const std::string& key, std::string text, size_t accounted);
  void add_pair(const std::string& command_id, Value pair, size_t accounted);
  void set_utime(const std::string& command_id, double atime, double mtime);
  void complete(const std::string& command_id, const worker::CommandResult& result);
  using Answer = std::function<void(bool ok, const Value& result)>;
  void transfer(const std::string& command_id, const char* op, Value fields, Answer answer);

 private:
  struct Pending {
    std::string key;   // stdout, stderr, header, or another update key
    std::string text;  // output keys: the bytes so far
    Value value;       // other keys: the whole value
  };
  struct Command {
    std::string name;  // canonical: upload_file, ...
    std::shared_ptr<worker::CommandRunner> runner;
    std::vector<Pending> pending;
    size_t pending_text = 0;
    size_t accounted = 0;
    bool flush_posted = false;
    std::optional<std::pair<double, double>> utime;
  };
  using Reply = std::variant<Value, std::string>;  // a result, or an is_exception text

  void read();
  void on_read(boost::beast::error_code ec);
  void on_message(const std::string& payload);
  Reply dispatch(const std::string& op, const Value& message);
  Reply start_command(const Value& message);
  Reply interrupt_command(const Value& message);
  void flush(const std::string& command_id);
  void call(std::string_view op, Value fields, Answer answer);
  void send(const Value& message, size_t accounted = 0);
  void send_bytes(std::string message, size_t accounted);
  void write_next();
  void on_written(boost::beast::error_code ec);

  boost::asio::io_context& net_;
  WebSocket ws_;
  boost::asio::io_context& commands_io_;
  worker::WorkerSettings settings_;
  Value info_;
  Log log_;
  Closed closed_;
  std::shared_ptr<Outbox> outbox_;
  boost::beast::flat_buffer in_;
  std::deque<std::pair<std::string, size_t>> out_;
  bool writing_ = false;
  bool closed_flag_ = false;
  bool shutdown_requested_ = false;
  uint64_t next_seq_ = 0;
  std::map<uint64_t, Answer> waiting_;
  std::map<std::string, Command> commands_;
};

}  // namespace kiln::kiln_worker
