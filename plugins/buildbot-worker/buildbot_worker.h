#pragma once
// The `buildbot-worker` worker type: a real, unchanged Buildbot 3.x
// `buildbot-worker` (msgpack protocol) connects to Kiln and runs the build's
// commands (reference/worker-protocol-msgpack.md; README.md here). The
// latent `exec-latent` type (exec_latent.h) is this worker with a start
// and a stop command around it.
//
// The instance lives on the loop thread: its sessions, the requests it is
// waiting on and the commands it runs. The network lives on the shared
// Server's thread (server.h), which only ever posts to the loop; so no host
// call is made off the loop, and nothing here waits for another thread
// except when the last worker of an address releases its server (joining a
// thread that never waits for the loop).

#include "server.h"
#include "wire.h"

#include <kiln/sdk/plugin.hpp>

#include <charconv>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <variant>
#include <vector>

namespace kiln::buildbot_worker {

namespace sdk = kiln::sdk;
namespace bw = kiln::buildbot_worker;
using json = nlohmann::json;

inline constexpr const char* kDefaultListen = "127.0.0.1:9989";
// How long an existing connection has to answer before a second connection
// with the same credentials replaces it (Buildbot waits as long).
inline constexpr uint64_t kDuplicateCheckMs = 10'000;
// update_read_file asks for `blocksize` bytes; more than this per message
// is never sent whatever the worker asks.
inline constexpr size_t kMaxReadChunk = 16u * 1024 * 1024;

inline constexpr const char* kSchema = R"({
  "type": "object",
  "required": ["password"],
  "properties": {
    "password": {"type": "string",
                 "description": "The password the worker presents (the PASSWORD of buildbot-worker create-worker); the worker's name is this entry's name."},
    "listen": {"type": "string", "default": "127.0.0.1:9989",
               "description": "host:port the master listens on for msgpack WebSocket workers (Buildbot's msgpack_experimental_v7 port). Workers with the same listen address share one listener; use 0.0.0.0:PORT to accept workers from other machines."},
    "tls": {"type": "object", "required": ["cert", "key"], "additionalProperties": false,
            "description": "Serve wss:// (TLS) instead of plain WebSocket: PEM files, relative to the master folder. Workers sharing the listen address must agree.",
            "properties": {"cert": {"type": "string", "minLength": 1, "description": "The certificate (chain) file."},
                           "key": {"type": "string", "minLength": 1, "description": "Its private key file."}}},
    "keepalive_interval": {"type": "integer", "minimum": 0, "default": 300,
                           "description": "Seconds between keepalive messages to the worker; a keepalive still unanswered at the next one drops the connection (the build then ends RETRY). 0 turns keepalives off."}
  },
  "additionalProperties": false
})";

inline const std::set<std::string, std::less<>> kCommands = {
    "shell",       "stat",   "glob",           "listdir",          "mkdir",           "rmdir",
    "rmfile",      "cpdir",  "upload_file",    "upload_directory", "download_file",   "uploadFile",
    "uploadDirectory", "downloadFile"};

inline std::string text_of(const Value& v) {
  if (auto bytes = bw::bytes_of(v)) return *bytes;
  return bw::plain(v).dump(-1, ' ', false, Value::error_handler_t::replace);
}

class BuildbotWorker : public sdk::Worker {
 public:
  BuildbotWorker(sdk::Context ctx, const json& config) : Worker(std::move(ctx), config) {}
  ~BuildbotWorker() override { shutdown(false); }

  static sdk::Status validate(const json& config) {
    std::string error;
    if (!bw::Server::parse_listen(config.value("listen", std::string(kDefaultListen)), error)) {
      return sdk::Status(KILN_ERR_INVALID_CONFIG, error);
    }
    return {};
  }

  sdk::Status start() override {
    if (server_) return {};
    auto info = context().info();
    if (!info) return info.status();
    name_ = info->value("name", std::string());
    if (name_.find(':') != std::string::npos) {
      return sdk::Status(KILN_ERR_INVALID_CONFIG, "a buildbot-worker name cannot contain ':' (it is the Basic auth user name)");
    }
    const std::string listen = config().value("listen", std::string(kDefaultListen));
    const auto tls = kiln::tls::tls_files(config(), info->value("master_dir", std::string()));
    std::string error;
    auto server = bw::Server::acquire(listen, tls, error);
    if (!server) return sdk::Status(KILN_ERR_INVALID_CONFIG, error);
    // Called on the server thread under its endpoint lock; remove_endpoint()
    // in shutdown() guarantees it never runs once this instance is gone.
    auto on_connect = [this, ctx = context()](std::shared_ptr<bw::Link> link) {
      auto posted = ctx.post([this, link] { on_link(link); });
      if (!posted) link->close("the master is stopping");
    };
    if (!server->add_endpoint(name_, config().value("password", std::string()), on_connect, error)) {
      return sdk::Status(KILN_ERR_INVALID_CONFIG, error);
    }
    server_ = std::move(server);
    log(KILN_LOG_INFO, "waiting for buildbot-worker '" + name_ + "' on " + server_->address() + " (port " +
                           std::to_string(server_->port()) + (server_->tls() ? ", TLS" : "") + ")");
    const int64_t interval = config().value("keepalive_interval", int64_t{300});
    if (interval > 0) {
      auto timer = context().start_timer(static_cast<uint64_t>(interval) * 1000,
                                         static_cast<uint64_t>(interval) * 1000, [this] { keepalive(); });
      if (timer) keepalive_timer_ = *timer;
    }
    return {};
  }

  void stop() override { shutdown(true); }

  sdk::Status command_start(uint64_t command_id, std::string_view name, const json& args) override {
    if (!session_ || !session_->attached) {
      return sdk::Status(KILN_ERR_RETRY, "buildbot-worker '" + name_ + "' is not connected");
    }
    if (kCommands.find(name) == kCommands.end()) {
      return sdk::Status(KILN_ERR_UNSUPPORTED, "a Buildbot worker has no command '" + std::string(name) + "'");
    }
    if (commands_.count(command_id) != 0) {
      return sdk::Status(KILN_ERR_INVALID_ARGUMENT, "command " + std::to_string(command_id) + " is already running");
    }
    commands_[command_id] = Command{};
    // Registered before it is sent: fast commands answer with update and
    // complete before the response to start_command.
    Value fields = {{"command_id", std::to_string(command_id)},
                    {"command_name", std::string(name)},
                    {"args", bw::from_json(args)}};
    call(*session_, "start_command", std::move(fields), [this, command_id](bool ok, const Value& result) {
      if (ok) return;
      auto it = commands_.find(command_id);
      if (it == commands_.end()) return;
      commands_.erase(it);
      host_complete(command_id, {{"rc", -1}, {"failure", "the worker cannot run it: " + text_of(result)}});
      after_command();
    });
    return {};
  }

  sdk::Status command_interrupt(uint64_t command_id, std::string_view reason) override {
    if (commands_.count(command_id) == 0 || !session_) {
      return sdk::Status(KILN_ERR_NOT_FOUND, "no running command " + std::to_string(command_id));
    }
    call(*session_, "interrupt_command",
         {{"command_id", std::to_string(command_id)}, {"why", std::string(reason)}}, nullptr);
    return {};
  }

  // "ping": a print round trip; "graceful_shutdown": the worker is told to
  // shut down once it runs no command; "shutdown": at once.
  sdk::Status control(std::string_view action, const json& args, sdk::Reply reply) override {
    (void)args;
    if (action != "ping" && action != "graceful_shutdown" && action != "shutdown") {
      return sdk::Status(KILN_ERR_UNSUPPORTED, "no control action '" + std::string(action) + "'");
    }
    if (!session_ || !session_->attached) {
      return sdk::Status(KILN_ERR_NOT_FOUND, "buildbot-worker '" + name_ + "' is not connected");
    }
    if (action == "ping") {
      const uint64_t started = now();
      call(*session_, "print", {{"message", "ping"}}, [this, reply, started](bool ok, const Value& result) {
        if (ok) {
          reply.ok({{"ok", true}, {"rtt_ms", now() - started}});
        } else {
          reply.fail(sdk::Status(KILN_ERR_RETRY, "no answer from the worker: " + text_of(result)));
        }
      });
      return {};
    }
    shutdown_replies_.push_back(reply);
    if (action == "shutdown" || commands_.empty()) send_shutdown();
    return {};
  }

 protected:
  // For a latent type built on this one: whether a new connection may
  // attach now (`why` not, when not); the worker attached (it described
  // itself and the host knows it connected); the attached worker is gone.
  virtual bool accepts_connection(std::string& why) {
    (void)why;
    return true;
  }
  virtual void on_attached() {}
  virtual void on_lost(const std::string& reason) { (void)reason; }

  // Drops the worker's connection; its builds end RETRY.
  void disconnect(const std::string& reason) { lose(reason); }
  bool worker_attached() const { return session_ && session_->attached; }
  const std::string& worker_name() const { return name_; }
  // The bound port, once started.
  uint16_t listen_port() const { return server_ ? server_->port() : 0; }

 private:
  struct Command {
    std::optional<int64_t> rc;
    std::optional<double> elapsed;
  };
  using Handler = std::function<void(bool ok, const Value& result)>;
  struct Session {
    std::shared_ptr<bw::Link> link;
    uint64_t serial = 0;
    uint64_t next_seq = 0;
    std::map<uint64_t, Handler> pending;
    bool attached = false;
    bool keepalive_outstanding = false;
    bool shutting_down = false;
  };
  // A result, or the error text of an is_exception response.
  using Answer = std::variant<Value, std::string>;

  uint64_t now() const {
    auto ms = context().now_ms();
    return ms ? *ms : 0;
  }

  // --- connections ------------------------------------------------------

  void on_link(const std::shared_ptr<bw::Link>& link) {
    if (!server_) {
      link->close("the worker is stopped");
      return;
    }
    if (std::string why; !accepts_connection(why)) {
      log(KILN_LOG_WARN, "refused a connection for '" + name_ + "' from " + link->peer() + ": " + why);
      link->close(why);
      return;
    }
    auto session = std::make_unique<Session>();
    session->link = link;
    session->serial = ++serials_;
    // The sink runs on the server thread: it only posts. detach() in
    // drop()/shutdown() stops it before this instance can go away.
    link->set_sink([this, ctx = context(), serial = session->serial](bw::LinkEvent event) {
      (void)ctx.post([this, serial, event = std::move(event)]() mutable { on_event(serial, std::move(event)); });
    });
    link->start_reading();
    if (!session_) {
      log(KILN_LOG_INFO, "buildbot-worker '" + name_ + "' connected from " + link->peer());
      session_ = std::move(session);
      attach(*session_);
      return;
    }
    if (candidate_) {
      drop(std::move(session), "another connection for this worker is already being checked");
      return;
    }
    // As Buildbot: the old connection is asked to answer; if it does, the
    // new one is refused, otherwise the new one replaces it.
    log(KILN_LOG_WARN, "a second connection for buildbot-worker '" + name_ + "' from " + link->peer() +
                           ": checking the existing one");
    candidate_ = std::move(session);
    const uint64_t old_serial = session_->serial, new_serial = candidate_->serial;
    call(*session_, "print", {{"message", "master got a duplicate connection"}},
         [this, new_serial](bool ok, const Value&) {
           if (!ok || !candidate_ || candidate_->serial != new_serial) return;
           log(KILN_LOG_WARN, "refused a duplicate connection for buildbot-worker '" + name_ + "'");
           drop(std::move(candidate_), "this worker is already connected");
         });
    (void)context().start_timer(kDuplicateCheckMs, [this, old_serial, new_serial] {
      if (candidate_ && candidate_->serial == new_serial && session_ && session_->serial == old_serial) {
        lose("replaced by a new connection from " + candidate_->link->peer());
      }
    });
  }

  void attach(Session& s) {
    call(s, "print", {{"message", "attached"}}, nullptr);
    call(s, "get_worker_info", Value::object(), [this, serial = s.serial](bool ok, const Value& result) {
      if (!session_ || session_->serial != serial) return;
      if (!ok || !result.is_object()) {
        log(KILN_LOG_WARN, "buildbot-worker '" + name_ + "' did not describe itself: " + text_of(result));
        lose("no worker info");
        return;
      }
      session_->attached = true;
      auto status = connected(bw::host_info(result));
      if (!status) log(KILN_LOG_WARN, "worker_connected: " + status.message());
      on_attached();
    });
  }

  void on_event(uint64_t serial, bw::LinkEvent event) {
    Session* s = session_ && session_->serial == serial       ? session_.get()
                 : candidate_ && candidate_->serial == serial ? candidate_.get()
                                                               : nullptr;
    if (s == nullptr) return;
    if (event.kind == bw::LinkEvent::Kind::kClosed) {
      if (s == candidate_.get()) {
        drop(std::move(candidate_), event.data);
      } else {
        lose(s->shutting_down ? "the worker shut down" : event.data);
      }
      return;
    }
    auto link = s->link;  // handling may end the session
    handle(*s, event.data);
    release_read_backlog(link, event.data.size());
  }

  // Lets the link read on now, or, while the master is behind storing
  // output, once it has caught up: until then the socket waits unread and
  // the worker's own sends block, so the master's memory stays flat.
  void release_read_backlog(const std::shared_ptr<bw::Link>& link, size_t bytes) {
    if (resume_registered_ || master_wants_pause()) {
      deferred_reads_.emplace_back(link, bytes);
      return;
    }
    link->consumed(bytes);
  }
  bool master_wants_pause() {
    const kiln_host_api* h = sdk::Host::api();
    if (!KILN_HAS(kiln_host_api, h, output_throttle)) return false;
    // This instance outlives its context's registered resumes.
    auto resume = [](void* user) { static_cast<BuildbotWorker*>(user)->on_master_ready(); };
    resume_registered_ = h->output_throttle(context().raw(), resume, this) == KILN_ERR_RETRY;
    return resume_registered_;
  }
  void on_master_ready() {
    resume_registered_ = false;
    for (auto& [weak, bytes] : std::exchange(deferred_reads_, {})) {
      if (auto link = weak.lock()) link->consumed(bytes);
    }
  }

  // Forgets a session that never was, or no longer is, the worker's.
  void drop(std::unique_ptr<Session> s, const std::string& reason) {
    if (!s) return;
    s->link->detach();
    s->link->close(reason);
  }

  // The active connection is gone: the host ends its commands as lost (the
  // build then ends RETRY), a waiting connection takes over.
  void lose(const std::string& reason) {
    if (!session_) return;
    auto s = std::move(session_);
    s->link->detach();
    s->link->close(reason);
    commands_.clear();
    if (s->attached) {
      log(KILN_LOG_WARN, "buildbot-worker '" + name_ + "' lost: " + reason);
      auto status = disconnected(reason);
      if (!status) log(KILN_LOG_WARN, "worker_disconnected: " + status.message());
      on_lost(reason);
    }
    auto pending = std::move(s->pending);
    for (auto& [seq, handler] : pending) {
      if (handler) handler(false, Value("connection lost: " + reason));
    }
    if (candidate_ && server_) {
      session_ = std::move(candidate_);
      log(KILN_LOG_INFO, "buildbot-worker '" + name_ + "' connected from " + session_->link->peer());
      attach(*session_);
    }
  }

  void keepalive() {
    if (!session_ || !session_->attached) return;
    if (session_->keepalive_outstanding) {
      lose("no answer to a keepalive within " + std::to_string(config().value("keepalive_interval", 300)) + " s");
      return;
    }
    session_->keepalive_outstanding = true;
    call(*session_, "keepalive", Value::object(), [this, serial = session_->serial](bool, const Value&) {
      if (session_ && session_->serial == serial) session_->keepalive_outstanding = false;
    });
  }

  void send_shutdown() {
    if (!session_ || session_->shutting_down) return;
    session_->shutting_down = true;
    call(*session_, "shutdown", Value::object(), [this](bool ok, const Value& result) {
      auto replies = std::move(shutdown_replies_);
      shutdown_replies_.clear();
      for (auto& reply : replies) {
        if (ok) {
          reply.ok({{"shutdown", true}});
        } else {
          reply.fail(sdk::Status(KILN_ERR_RETRY, "the worker did not shut down: " + text_of(result)));
        }
      }
    });
  }

  void after_command() {
    if (commands_.empty() && !shutdown_replies_.empty()) send_shutdown();
  }

  // --- messages ---------------------------------------------------------

  void call(Session& s, std::string_view op, Value fields, Handler handler) {
    const uint64_t seq = s.next_seq++;
    // Every request is answered; a response nobody waits for is dropped.
    s.pending[seq] = std::move(handler);
    s.link->send(bw::encode(bw::request(op, seq, fields)));
  }

  void handle(Session& s, const std::string& payload) {
    auto link = s.link;  // `s` may end while dispatching (through a host call)
    if (s.attached) {
      if (auto update = bw::read_output_update(payload)) return handle_output_update(*update, *link);
    }
    std::string error;
    auto msg = bw::decode(payload, error);
    if (!msg || !msg->is_object()) {
      log(KILN_LOG_WARN, "ignored an unreadable message from buildbot-worker '" + name_ + "': " + error);
      return;
    }
    auto op = msg->find("op");
    auto seq = msg->find("seq_number");
    if (op == msg->end() || !op->is_string() || seq == msg->end() || !seq->is_number_integer() ||
        seq->get<int64_t>() < 0) {
      log(KILN_LOG_WARN, "ignored a message without op or seq_number from buildbot-worker '" + name_ + "'");
      return;
    }
    const uint64_t seq_number = seq->get<uint64_t>();
    const std::string name = op->get<std::string>();
    if (name == "response") {
      auto it = s.pending.find(seq_number);
      if (it == s.pending.end()) return;
      Handler handler = std::move(it->second);
      s.pending.erase(it);
      const Value result = msg->contains("result") ? (*msg)["result"] : Value();
      if (handler) handler(!msg->contains("is_exception"), result);
      return;
    }
    Answer answer = std::string("Worker not authenticated.");
    if (s.attached) {
      try {
        answer = dispatch(name, *msg);
      } catch (const std::exception& e) {
        answer = std::string("the master failed to handle ") + name + ": " + e.what();
      }
    }
    if (const auto* result = std::get_if<Value>(&answer)) {
      link->send(bw::encode(bw::response(seq_number, *result)));
    } else {
      link->send(bw::encode(bw::error_response(seq_number, std::get<std::string>(answer))));
    }
  }

  // The general path's `update` (dispatch, apply) for the form
  // read_output_update reads in place.
  void handle_output_update(const bw::OutputUpdate& update, bw::Link& link) {
    uint64_t id = 0;
    const char* first = update.command_id.data();
    const char* last = first + update.command_id.size();
    auto [end, ec] = std::from_chars(first, last, id);
    if (ec != std::errc() || end != last || commands_.count(id) == 0) {
      link.send(bw::encode(bw::error_response(update.seq, "unknown \"command_id\"")));
      return;
    }
    for (const auto& item : update.items) apply(id, item.kind, item.stream, item.text, item.rc, item.elapsed);
    link.send(bw::encode(bw::response(update.seq, Value())));
  }

  Answer dispatch(const std::string& op, const Value& msg) {
    static const std::set<std::string, std::less<>> kCommandOps = {
        "update",
        "complete",
        "update_upload_file_write",
        "update_upload_file_close",
        "update_upload_file_utime",
        "update_upload_directory_write",
        "update_upload_directory_unpack",
        "update_read_file",
        "update_read_file_close"};
    if (kCommandOps.count(op) == 0) return "Command " + op + " does not exist.";
    auto cid = msg.find("command_id");
    if (cid == msg.end()) return std::string("message did not contain obligatory \"command_id\" key");
    const std::string id_text = text_of(*cid);
    uint64_t id = 0;
    auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    if (ec != std::errc() || end != id_text.data() + id_text.size() || commands_.count(id) == 0) {
      return std::string("unknown \"command_id\"");
    }
    auto arg = [&](const char* key) -> const Value* {
      auto it = msg.find(key);
      return it == msg.end() ? nullptr : &*it;
    };
    auto missing = [](const char* key) { return "message did not contain obligatory \"" + std::string(key) + "\" key"; };

    if (op == "update") {
      const Value* args = arg("args");
      if (!args) return missing("args");
      std::string error;
      auto items = bw::read_update(*args, error);
      if (!items) return error;
      for (auto& item : *items) apply(id, item);
      return Value();
    }
    if (op == "complete") {
      if (!arg("args")) return missing("args");
      auto it = commands_.find(id);
      Command command = it->second;
      commands_.erase(it);
      json result = {{"rc", command.rc.value_or(-1)}};
      if (command.elapsed) result["elapsed"] = *command.elapsed;
      if (const Value* failure = arg("args"); !failure->is_null()) {
        result["failure"] = text_of(*failure);
      } else if (!command.rc) {
        result["failure"] = "the worker reported no exit code";
      }
      host_complete(id, result);
      after_command();
      return Value();
    }
    if (op == "update_upload_file_write" || op == "update_upload_directory_write") {
      const Value* data = arg("args");
      if (!data) return missing("args");
      auto bytes = bw::bytes_of(*data);
      if (!bytes) return std::string("upload data is not bytes");
      auto status = transfer_write(id, *bytes);
      if (!status) return "cannot write on the master: " + status.message();
      return Value();
    }
    if (op == "update_upload_file_utime") {
      const Value* atime = arg("access_time");
      const Value* mtime = arg("modified_time");
      if (!atime || !atime->is_number()) return missing("access_time");
      if (!mtime || !mtime->is_number()) return missing("modified_time");
      host_update(id, {{"utime", {atime->get<double>(), mtime->get<double>()}}});
      return Value();
    }
    if (op == "update_read_file") {
      const Value* length = arg("length");
      if (!length || !length->is_number_integer() || length->get<int64_t>() < 0) return missing("length");
      const size_t want = std::min<size_t>(static_cast<size_t>(length->get<int64_t>()), kMaxReadChunk);
      auto data = transfer_read(id, want);
      if (!data) return "cannot read on the master: " + data.status().message();
      if (data->size() > want) data->resize(want);
      return Value::binary(std::vector<uint8_t>(data->begin(), data->end()));
    }
    // update_upload_file_close, update_upload_directory_unpack,
    // update_read_file_close: the host closes, unpacks and finishes the
    // transfer when the command completes.
    return Value();
  }

  void apply(uint64_t id, const bw::UpdateItem& item) {
    using Kind = bw::UpdateItem::Kind;
    switch (item.kind) {
      case Kind::kLog:
        host_update(id, {{"log", {{"name", item.name}, {"data", item.text}}}});
        return;
      case Kind::kOther:
        host_update(id, {{item.name, bw::to_json(item.value)}});
        return;
      default:
        apply(id, item.kind, item.stream, item.text, item.rc, item.elapsed);
    }
  }
  // Output, rc and elapsed: what both readings of an update carry.
  void apply(uint64_t id, bw::UpdateItem::Kind kind, int stream, std::string_view text, int64_t rc, double elapsed) {
    using Kind = bw::UpdateItem::Kind;
    if (kind == Kind::kOutput) {
      (void)command_output(id, static_cast<kiln_stream>(stream), text);
    } else if (auto it = commands_.find(id); it != commands_.end() && kind == Kind::kRc) {
      it->second.rc = rc;
    } else if (it != commands_.end() && kind == Kind::kElapsed) {
      it->second.elapsed = elapsed;
    }
  }

  // Worker text is Python str, so UTF-8; should it ever not be, the host
  // still gets JSON.
  void host_update(uint64_t id, const json& update) const {
    const std::string text = update.dump(-1, ' ', false, json::error_handler_t::replace);
    const kiln_host_api* h = sdk::Host::api();
    if (KILN_HAS(kiln_host_api, h, command_update)) h->command_update(context().raw(), id, sdk::str(text));
  }
  void host_complete(uint64_t id, const json& result) const {
    const std::string text = result.dump(-1, ' ', false, json::error_handler_t::replace);
    const kiln_host_api* h = sdk::Host::api();
    if (KILN_HAS(kiln_host_api, h, command_complete)) h->command_complete(context().raw(), id, sdk::str(text));
  }

  // --- teardown -----------------------------------------------------------

  void shutdown(bool report) {
    if (!server_) return;
    server_->remove_endpoint(name_);
    if (keepalive_timer_) {
      (void)context().cancel_timer(keepalive_timer_);
      keepalive_timer_ = 0;
    }
    drop(std::move(candidate_), "the master stopped the worker");
    if (session_) {
      auto s = std::move(session_);
      s->link->detach();
      s->link->close("the master stopped the worker");
      commands_.clear();
      if (report && s->attached) (void)disconnected("worker stopped");
    }
    shutdown_replies_.clear();
    server_.reset();  // joins the server thread when this was its last worker
  }

  std::string name_;
  std::shared_ptr<bw::Server> server_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<Session> candidate_;
  uint64_t serials_ = 0;
  uint64_t keepalive_timer_ = 0;
  std::map<uint64_t, Command> commands_;
  std::vector<sdk::Reply> shutdown_replies_;
  bool resume_registered_ = false;
  std::vector<std::pair<std::weak_ptr<bw::Link>, size_t>> deferred_reads_;
};

}  // namespace kiln::buildbot_worker
