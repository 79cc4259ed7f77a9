#include "session.h"

#include <boost/asio/post.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/websocket.hpp>

#include <chrono>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>

namespace kiln::kiln_worker {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace wire = worker_wire;
using json = nlohmann::json;

namespace {

// Output bytes queued for the socket before a command's sink waits.
constexpr size_t kMaxQueued = 4u * 1024 * 1024;
// An update goes out once this much output waits in it (Buildbot's
// buffer_size); smaller batches go out as soon as the network thread is
// free.
constexpr size_t kMaxUpdateText = 64u * 1024;

constexpr size_t kWriteBuffer = 128u * 1024;

std::atomic<size_t> g_live_commands{0};

double wall_clock() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string canonical(const std::string& name) {
  if (name == "uploadFile") return "upload_file";
  if (name == "uploadDirectory") return "upload_directory";
  if (name == "downloadFile") return "download_file";
  return name;
}

// [text, [newline indexes in code points], [one time per line]], the form
// Buildbot's worker sends output in.
Value lines_value(const std::string& text) {
  Value newlines = Value::array(), times = Value::array();
  const double now = wall_clock();
  size_t index = 0;
  for (unsigned char c : text) {
    if ((c & 0xC0) == 0x80) continue;  // a UTF-8 continuation byte
    if (c == '\n') {
      newlines.push_back(index);
      times.push_back(now);
    }
    ++index;
  }
  return Value::array({text, std::move(newlines), std::move(times)});
}

}  // namespace

size_t live_commands() { return g_live_commands.load(); }

// Bytes queued for the socket, shared by a session and its commands' sinks.
class Outbox {
 public:
  void add(size_t bytes) {
    std::lock_guard lock(mutex_);
    bytes_ += bytes;
  }
  void sent(size_t bytes) {
    {
      std::lock_guard lock(mutex_);
      bytes_ -= std::min(bytes, bytes_);
    }
    cv_.notify_all();
  }
  // Command thread: until the socket has caught up or the session ended.
  void wait_for_room() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return closed_ || bytes_ <= kMaxQueued; });
  }
  bool closed() {
    std::lock_guard lock(mutex_);
    return closed_;
  }
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  size_t bytes_ = 0;
  bool closed_ = false;
};

// One command's sink: runs on the command thread, hands everything to the
// session on the network thread. Keeps its runner alive until completion.
class CommandBridge final : public worker::CommandSink {
 public:
  CommandBridge(asio::io_context& net, asio::io_context& commands, std::weak_ptr<Session> session,
                std::shared_ptr<Outbox> outbox, std::string command_id, std::string name)
      : net_(net),
        commands_(commands),
        session_(std::move(session)),
        outbox_(std::move(outbox)),
        id_(std::move(command_id)),
        name_(std::move(name)) {}

  void keep(std::shared_ptr<worker::CommandRunner> runner) {
    runner_ = std::move(runner);
    ++g_live_commands;
  }

  void on_output(worker::Stream stream, std::string_view data) override {
    const char* key = stream == worker::Stream::kStdout ? "stdout" : stream == worker::Stream::kStderr ? "stderr" : "header";
    outbox_->add(data.size());
    on_session([key, text = std::string(data)](Session& s, const std::string& id) mutable {
      const size_t size = text.size();
      s.add_output(id, key, std::move(text), size);
    });
    outbox_->wait_for_room();
  }

  void on_update(const json& update) override {
    for (const auto& [key, value] : update.items()) {
      if (key == "utime" && value.is_array() && value.size() == 2) {
        on_session([a = value[0].get<double>(), m = value[1].get<double>()](Session& s, const std::string& id) {
          s.set_utime(id, a, m);
        });
      } else if (key == "log" && value.is_object()) {
        // Log bytes travel as they are; they need not be UTF-8.
        std::string data = value.value("data", std::string());
        Value pair = Value::array({"log", Value::array({value.value("name", std::string()), lines_value(data)})});
        outbox_->add(data.size());
        on_session([pair = std::move(pair), size = data.size()](Session& s, const std::string& id) mutable {
          s.add_pair(id, std::move(pair), size);
        });
      } else {
        on_session([pair = Value::array({key, wire::from_json(value)})](Session& s, const std::string& id) mutable {
          s.add_pair(id, std::move(pair), 0);
        });
      }
    }
    outbox_->wait_for_room();
  }

  void on_complete(const worker::CommandResult& result) override {
    on_session([result](Session& s, const std::string& id) { s.complete(id, result); });
    // Released later: this call comes from inside the runner.
    asio::post(commands_, [runner = std::move(runner_)] {});
    --g_live_commands;
  }

  bool transfer_write(std::string_view data) override {
    const char* op = name_ == "upload_directory" ? "update_upload_directory_write" : "update_upload_file_write";
    const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
    Value fields = {{"args", Value::binary(std::vector<uint8_t>(bytes, bytes + data.size()))}};
    auto answer = ask(op, std::move(fields));
    return answer.has_value();
  }

  std::optional<std::string> transfer_read(size_t max_len) override {
    auto answer = ask("update_read_file", Value{{"length", max_len}});
    if (!answer) return std::nullopt;
    if (answer->is_null()) return std::string();
    auto bytes = wire::bytes_of(*answer);
    if (!bytes) return std::nullopt;
    if (bytes->size() > max_len) bytes->resize(max_len);
    return bytes;
  }

 private:
  template <class Fn>
  void on_session(Fn fn) {
    asio::post(net_, [session = session_, id = id_, fn = std::move(fn)]() mutable {
      if (auto s = session.lock()) fn(*s, id);
    });
  }

  // A transfer request and the master's answer: nullopt when it failed or
  // the connection went away first.
  std::optional<Value> ask(const char* op, Value fields) {
    auto promise = std::make_shared<std::promise<std::optional<Value>>>();
    auto future = promise->get_future();
    asio::post(net_, [session = session_, id = id_, op, fields = std::move(fields), promise]() mutable {
      auto s = session.lock();
      if (!s) {
        promise->set_value(std::nullopt);
        return;
      }
      s->transfer(id, op, std::move(fields), [promise](bool ok, const Value& result) {
        promise->set_value(ok ? std::optional<Value>(result) : std::nullopt);
      });
    });
    // The network thread may end with the request still queued: the
    // closed outbox says so.
    while (future.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
      if (outbox_->closed()) return std::nullopt;
    }
    try {
      return future.get();
    } catch (const std::future_error&) {
      return std::nullopt;
    }
  }

  asio::io_context& net_;
  asio::io_context& commands_;
  std::weak_ptr<Session> session_;
  std::shared_ptr<Outbox> outbox_;
  std::string id_, name_;
  std::shared_ptr<worker::CommandRunner> runner_;
};

Session::Session(asio::io_context& net, WebSocket ws, asio::io_context& commands, const worker::WorkerSettings& settings, Value info,
                 Log log, Closed closed)
    : net_(net),
      ws_(std::move(ws)),
      commands_io_(commands),
      settings_(settings),
      info_(std::move(info)),
      log_(std::move(log)),
      closed_(std::move(closed)),
      outbox_(std::make_shared<Outbox>()) {}

Session::~Session() { outbox_->close(); }

void Session::start() {
  std::visit(
      [](auto& ws) {
        ws.binary(true);
        ws.auto_fragment(false);
        // A client masks what it sends, through this buffer: at the default
        // 4 KiB an update of output took a dozen writes.
        ws.write_buffer_bytes(kWriteBuffer);
      },
      ws_);
  read();
}

void Session::read() {
  if (closed_flag_) return;
  std::visit(
      [&](auto& ws) {
        ws.async_read(in_, [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
      },
      ws_);
}

// The completion holds the session alive while this runs.
void Session::on_read(beast::error_code ec) {
  if (closed_flag_) return;
  if (ec) {
    const bool gone = ec == beast::websocket::error::closed || ec == asio::error::eof ||
                      ec == asio::error::connection_reset || ec == beast::error::timeout;
    close(gone ? (ec == beast::error::timeout ? "the master stopped answering" : "the master closed the connection")
               : "cannot read from the master: " + ec.message());
    return;
  }
  if (std::visit([](auto& ws) { return ws.got_binary(); }, ws_)) on_message(beast::buffers_to_string(in_.data()));
  in_.consume(in_.size());
  read();
}

void Session::close(const std::string& reason) {
  if (closed_flag_) return;
  closed_flag_ = true;
  outbox_->close();
  beast::error_code ignored;
  std::visit(
      [&](auto& ws) {
        beast::get_lowest_layer(ws).socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
        beast::get_lowest_layer(ws).close();
      },
      ws_);
  for (auto& [id, command] : commands_) command.runner->interrupt("kiln-worker lost its master: " + reason);
  commands_.clear();
  auto waiting = std::move(waiting_);
  waiting_.clear();
  for (auto& [seq, answer] : waiting) {
    if (answer) answer(false, Value("connection lost: " + reason));
  }
  auto closed = std::move(closed_);
  if (closed) closed(reason, shutdown_requested_);
}

void Session::on_message(const std::string& payload) {
  std::string error;
  auto message = wire::decode(payload, error);
  if (!message || !message->is_object()) {
    log_("ignored an unreadable message from the master: " + error);
    return;
  }
  auto op = message->find("op");
  auto seq = message->find("seq_number");
  if (op == message->end() || !op->is_string() || seq == message->end() || !seq->is_number_integer() ||
      seq->get<int64_t>() < 0) {
    log_("ignored a message without op or seq_number from the master");
    return;
  }
  const uint64_t seq_number = seq->get<uint64_t>();
  const std::string name = op->get<std::string>();
  if (name == "response") {
    auto it = waiting_.find(seq_number);
    if (it == waiting_.end()) return;
    Answer answer = std::move(it->second);
    waiting_.erase(it);
    const Value result = message->contains("result") ? (*message)["result"] : Value();
    if (answer) answer(!message->contains("is_exception"), result);
    return;
  }
  Reply reply;
  try {
    reply = dispatch(name, *message);
  } catch (const std::exception& e) {
    reply = "kiln-worker failed to handle " + name + ": " + e.what();
  }
  if (const auto* result = std::get_if<Value>(&reply)) {
    send(wire::response(seq_number, *result));
  } else {
    send(wire::error_response(seq_number, std::get<std::string>(reply)));
  }
}

Session::Reply Session::dispatch(const std::string& op, const Value& message) {
  auto missing = [](const char* key) { return "message did not contain obligatory \"" + std::string(key) + "\" key"; };
  if (op == "print") {
    if (!message.contains("message")) return missing("message");
    log_("message from master: " + wire::bytes_of(message["message"]).value_or(message["message"].dump()));
    return Value();
  }
  if (op == "keepalive") return Value();
  if (op == "get_worker_info") return info_;
  if (op == "set_worker_settings") {
    // Output goes out as it comes (no line buffering), so the settings for
    // Buildbot's line splitter do not apply; they are checked as it does.
    const auto* args = message.contains("args") ? &message["args"] : nullptr;
    for (const char* key : {"newline_re", "max_line_length", "buffer_timeout", "buffer_size"}) {
      if (!args || !args->is_object() || !args->contains(key)) {
        return std::string("message did not contain obligatory settings for worker");
      }
    }
    return Value();
  }
  if (op == "start_command") return start_command(message);
  if (op == "interrupt_command") return interrupt_command(message);
  if (op == "shutdown") {
    log_("the master asked this worker to shut down");
    shutdown_requested_ = true;
    return Value();  // the connection closes once the answer is written
  }
  return "Command " + op + " does not exist.";
}

Session::Reply Session::start_command(const Value& message) {
  for (const char* key : {"command_id", "command_name", "args"}) {
    if (!message.contains(key)) return "message did not contain obligatory \"" + std::string(key) + "\" key";
  }
  auto id = wire::bytes_of(message["command_id"]);
  auto name = wire::bytes_of(message["command_name"]);
  if (!id || !name) return std::string("command_id and command_name must be strings");
  if (commands_.count(*id) != 0) return "command " + *id + " is already running";
  const std::string command = canonical(*name);
  auto bridge = std::make_shared<CommandBridge>(net_, commands_io_, weak_from_this(), outbox_, *id, command);
  auto runner = worker::make_command(commands_io_, settings_, *name, wire::to_json(message["args"]), bridge);
  bridge->keep(runner);
  commands_[*id] = Command{command, runner, {}, 0, 0, false, std::nullopt};
  runner->start();
  return Value();
}

Session::Reply Session::interrupt_command(const Value& message) {
  for (const char* key : {"command_id", "why"}) {
    if (!message.contains(key)) return "message did not contain obligatory \"" + std::string(key) + "\" key";
  }
  const std::string id = wire::bytes_of(message["command_id"]).value_or("");
  auto it = commands_.find(id);
  if (it == commands_.end()) {
    log_("asked to interrupt command " + id + " but none is running");
    return Value();
  }
  flush(id);
  it->second.runner->interrupt(wire::bytes_of(message["why"]).value_or("interrupted"));
  return Value();
}

void Session::add_output(const std::string& command_id, const std::string& key, std::string text, size_t accounted) {
  auto it = commands_.find(command_id);
  if (it == commands_.end()) {
    outbox_->sent(accounted);
    return;
  }
  Command& c = it->second;
  // Consecutive output of one stream travels as one pair, as Buildbot merges it.
  if (!c.pending.empty() && c.pending.back().key == key && c.pending.back().value.is_null()) {
    c.pending.back().text += text;
  } else {
    c.pending.push_back({key, std::move(text), Value()});
  }
  c.pending_text += accounted;
  c.accounted += accounted;
  if (c.pending_text >= kMaxUpdateText) {
    flush(command_id);
  } else if (!c.flush_posted) {
    c.flush_posted = true;
    asio::post(net_, [weak = weak_from_this(), command_id] {
      if (auto s = weak.lock()) s->flush(command_id);
    });
  }
}

void Session::add_pair(const std::string& command_id, Value pair, size_t accounted) {
  auto it = commands_.find(command_id);
  if (it == commands_.end()) {
    outbox_->sent(accounted);
    return;
  }
  it->second.pending.push_back({pair[0].get<std::string>(), {}, std::move(pair[1])});
  it->second.accounted += accounted;
  if (!it->second.flush_posted) {
    it->second.flush_posted = true;
    asio::post(net_, [weak = weak_from_this(), command_id] {
      if (auto s = weak.lock()) s->flush(command_id);
    });
  }
}

void Session::flush(const std::string& command_id) {
  auto it = commands_.find(command_id);
  if (it == commands_.end()) return;
  Command& c = it->second;
  c.flush_posted = false;
  if (c.pending.empty()) return;
  // Written straight to bytes (worker_wire::Writer): as a Value tree the
  // output's per-line indexes and times cost more than the text itself.
  const double now = wall_clock();
  wire::Writer message;
  message.reserve(c.pending_text + c.pending_text / 6 + 128);
  message.map(4);
  message.text("op");
  message.text("update");
  message.text("args");
  message.array(static_cast<uint32_t>(c.pending.size()));
  for (auto& p : c.pending) {
    message.array(2);
    message.text(p.key);
    if (p.value.is_null() && (p.key == "stdout" || p.key == "stderr" || p.key == "header")) {
      message.output_lines(p.text, now);
    } else {
      message.value(p.value);
    }
  }
  message.text("command_id");
  message.text(command_id);
  c.pending.clear();
  c.pending_text = 0;
  const size_t accounted = std::exchange(c.accounted, 0);
  const uint64_t seq = next_seq_++;
  message.text("seq_number");
  message.number(seq);
  waiting_[seq] = nullptr;  // the worker does not wait for update answers
  send_bytes(message.take(), accounted);
}

void Session::set_utime(const std::string& command_id, double atime, double mtime) {
  if (auto it = commands_.find(command_id); it != commands_.end()) it->second.utime = std::make_pair(atime, mtime);
}

void Session::complete(const std::string& command_id, const worker::CommandResult& result) {
  auto it = commands_.find(command_id);
  if (it == commands_.end()) return;
  const Value id_field = {{"command_id", command_id}};
  // The end of a transfer, as Buildbot's worker announces it (after
  // errors too); the master finishes the file when the command completes.
  const std::string& name = it->second.name;
  if (name == "upload_file") {
    call("update_upload_file_close", id_field, nullptr);
    if (auto utime = it->second.utime) {
      call("update_upload_file_utime",
           {{"command_id", command_id}, {"access_time", utime->first}, {"modified_time", utime->second}}, nullptr);
    }
  } else if (name == "upload_directory") {
    call("update_upload_directory_unpack", id_field, nullptr);
  } else if (name == "download_file") {
    call("update_read_file_close", id_field, nullptr);
  }
  it->second.pending.push_back({"rc", {}, Value(result.rc)});
  if (result.elapsed) it->second.pending.push_back({"elapsed", {}, Value(*result.elapsed)});
  flush(command_id);
  commands_.erase(it);
  const Value failure = result.failure.empty() ? Value() : Value(result.failure);
  call("complete", {{"command_id", command_id}, {"args", failure}}, nullptr);
}

void Session::transfer(const std::string& command_id, const char* op, Value fields, Answer answer) {
  if (commands_.count(command_id) == 0) {
    answer(false, Value("the command is no longer running"));
    return;
  }
  fields["command_id"] = command_id;
  flush(command_id);  // its header comes first
  call(op, std::move(fields), std::move(answer));
}

void Session::call(std::string_view op, Value fields, Answer answer) {
  const uint64_t seq = next_seq_++;
  waiting_[seq] = std::move(answer);
  send(wire::request(op, seq, fields));
}

void Session::send(const Value& message, size_t accounted) { send_bytes(wire::encode(message), accounted); }

void Session::send_bytes(std::string message, size_t accounted) {
  if (closed_flag_) {
    outbox_->sent(accounted);
    return;
  }
  out_.emplace_back(std::move(message), accounted);
  if (!writing_) write_next();
}

void Session::write_next() {
  writing_ = true;
  std::visit(
      [&](auto& ws) {
        ws.async_write(asio::buffer(out_.front().first),
                       [self = shared_from_this()](beast::error_code ec, size_t) { self->on_written(ec); });
      },
      ws_);
}

void Session::on_written(beast::error_code ec) {
  writing_ = false;
  if (closed_flag_) return;
  if (ec) return close("cannot write to the master: " + ec.message());
  outbox_->sent(out_.front().second);
  out_.pop_front();
  if (!out_.empty()) {
    write_next();
  } else if (shutdown_requested_) {
    close("the master asked this worker to shut down");
  }
}

}  // namespace kiln::kiln_worker
