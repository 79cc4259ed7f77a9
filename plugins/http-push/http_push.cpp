// kiln-http-push: Buildbot's StatusPush and HttpStatusPush as reporter
// types `status-push` (the batch as a JSON body) and `http-push` (0.8.5's
// wire format: a form field `packets` holding the JSON). Events from the
// engine's bus become packets in a queue; every `buffer_delay` the queue is
// saved in the plugin's state (so it survives a restart) and its oldest
// `chunk_size` packets are POSTed to `server_url` by a thread of the
// plugin's own. A failed POST is tried again after `retry_delay`; a queue
// over `max_queue` drops its oldest packets and logs how many.

#include "http_post.h"

#include <kiln/sdk/components.hpp>
#include <kiln/sdk/notifier.hpp>
#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace kiln::http_push {
namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

constexpr const char* kSchema = R"json({"type": "object", "additionalProperties": false,
  "required": ["server_url"], "properties": {
    "server_url": {"type": "string", "minLength": 8, "description": "Where the batches are POSTed: http://... or https://..."},
    "buffer_delay": {"type": "number", "minimum": 0.01, "maximum": 3600, "default": 1,
      "description": "Seconds between pushes: events that come in meanwhile go in one batch"},
    "retry_delay": {"type": "number", "minimum": 0.01, "maximum": 86400, "default": 5,
      "description": "Seconds to wait after a failed push before trying again"},
    "max_queue": {"type": "integer", "minimum": 1, "maximum": 10000000, "default": 10000,
      "description": "Most events kept waiting; beyond it the oldest are dropped (and counted in the log)"},
    "chunk_size": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 200,
      "description": "Most events in one POST"},
    "timeout": {"type": "number", "minimum": 0.1, "maximum": 3600, "default": 30,
      "description": "Seconds a POST may take before it counts as failed"},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}, "default": {},
      "description": "Extra request headers, e.g. Authorization: \"Bearer ${env:PUSH_TOKEN}\""},
    "events": {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 1,
      "default": ["builds/+/new", "builds/+/finished", "steps/+/started", "steps/+/finished", "changes/+/new",
                  "buildsets/+/new", "buildsets/+/complete"],
      "description": "Event bus patterns to push (collection/+/event; + matches one part, # the rest)"},
    "builders": {"type": "array", "items": {"type": "string"}, "default": [],
      "description": "Only events of these builders' builds (their builds, steps, logs and build requests); events of no builder (changes, buildsets, workers) always go. Use builders or tags, not both"},
    "tags": {"type": "array", "items": {"type": "string"}, "default": [],
      "description": "Only events of builds of builders with one of these tags"},
    "tls_verify": {"type": "boolean", "default": true, "description": "Check an https server's certificate and name"},
    "tls_ca_file": {"type": ["string", "null"], "default": null,
      "description": "PEM file of the certificates to trust instead of the system's (relative to the master folder)"}
  }})json";

// Buildbot 0.8.5's event names, for receivers written against it.
std::string event_name(const std::string& routing_key) {
  const size_t first = routing_key.find('/');
  const size_t last = routing_key.rfind('/');
  const std::string collection = routing_key.substr(0, first);
  const std::string verb = last == std::string::npos ? "" : routing_key.substr(last + 1);
  static const std::map<std::pair<std::string, std::string>, std::string> kNames = {
      {{"builds", "new"}, "buildStarted"},         {{"builds", "finished"}, "buildFinished"},
      {{"steps", "started"}, "stepStarted"},       {{"steps", "finished"}, "stepFinished"},
      {{"changes", "new"}, "changeAdded"},         {{"buildsets", "new"}, "buildsetSubmitted"},
      {{"buildsets", "complete"}, "buildsetFinished"}, {{"buildrequests", "new"}, "requestSubmitted"},
      {{"workers", "connected"}, "slaveConnected"}, {{"workers", "disconnected"}, "slaveDisconnected"},
      {{"logs", "append"}, "logChunk"},            {{"logs", "finished"}, "logFinished"}};
  auto it = kNames.find({collection, verb});
  return it == kNames.end() ? routing_key : it->second;
}

std::string form_encoded(const std::string& text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 2);
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else if (c == ' ') {
      out += '+';
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The plugin's sending thread: one POST at a time; the outcome is posted
// back to the loop.
class Sender {
 public:
  using Done = std::function<void(PostOutcome)>;
  Sender() : thread_([this] { run(); }) {}
  ~Sender() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    poster_.abort();
    thread_.join();
  }
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  void send(PostRequest request, Done done) {
    {
      std::lock_guard lock(mutex_);
      job_ = Job{std::move(request), std::move(done)};
    }
    wake_.notify_all();
  }

 private:
  struct Job {
    PostRequest request;
    Done done;
  };
  void run() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || job_.has_value(); });
        if (stopping_) return;
        job = std::move(*job_);
        job_.reset();
      }
      PostOutcome outcome = poster_.post(job.request);
      job.done(std::move(outcome));
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::optional<Job> job_;
  bool stopping_ = false;
  HttpPoster poster_;
  std::thread thread_;  // last: started once the rest exists
};

class PushReporter : public sdk::Reporter {
 public:
  PushReporter(sdk::Context ctx, const json& config, bool form) : Reporter(std::move(ctx), config), form_(form) {
    const json& c = this->config();
    std::string error;
    request_.url = Url::parse(c.at("server_url").get<std::string>(), error);
    url_text_ = c.at("server_url").get<std::string>();
    request_.timeout_s = c.value("timeout", 30.0);
    request_.tls_verify = c.value("tls_verify", true);
    request_.content_type = form ? "application/x-www-form-urlencoded" : "application/json";
    const json headers = c.value("headers", json::object());
    for (const auto& [name, value] : headers.items()) {
      request_.headers.emplace_back(name, value.get<std::string>());
    }
    buffer_ms_ = static_cast<uint64_t>(c.value("buffer_delay", 1.0) * 1000);
    retry_ms_ = static_cast<uint64_t>(c.value("retry_delay", 5.0) * 1000);
    max_queue_ = c.value("max_queue", size_t{10000});
    chunk_size_ = c.value("chunk_size", size_t{200});
    filter_ = sdk::NotifierOptions::from_config(c);
    filtered_ = !filter_.builders.empty() || !filter_.tags.empty();
  }
  ~PushReporter() override { stop(); }

  static sdk::Status validate(const json& c) {
    if (!c.value("builders", json::array()).empty() && !c.value("tags", json::array()).empty()) {
      return {KILN_ERR_INVALID_CONFIG, "give builders or tags, not both"};
    }
    std::string error;
    Url::parse(c.at("server_url").get<std::string>(), error);
    if (!error.empty()) return {KILN_ERR_INVALID_CONFIG, "server_url: " + error};
    const json headers = c.value("headers", json::object());
    for (const auto& [name, value] : headers.items()) {
      const bool token = !name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == std::string::npos;
      if (!token) return {KILN_ERR_INVALID_CONFIG, "headers: '" + name + "' is not a header name (letters, digits, '-')"};
      const std::string v = value.get<std::string>();
      if (v.find_first_of("\r\n") != std::string::npos) {
        return {KILN_ERR_INVALID_CONFIG, "headers." + name + ": a header value is one line"};
      }
    }
    const json events = c.value("events", json::array());
    for (size_t i = 0; i < events.size(); ++i) {
      const std::string p = events[i].get<std::string>();
      if (p.find('/') == std::string::npos || p.find(' ') != std::string::npos || p.front() == '/' || p.back() == '/') {
        return {KILN_ERR_INVALID_CONFIG, "events[" + std::to_string(i) + "]: '" + p +
                                             "' is not an event pattern (collection/+/event, e.g. builds/+/finished)"};
      }
    }
    return {};
  }

  sdk::Status start() override {
    auto info = context().info();
    if (info.ok()) project_ = info->value("master_title", "");
    const json& c = config();
    if (c.value("tls_ca_file", json()).is_string()) {
      request_.tls_ca_file = c["tls_ca_file"].get<std::string>();
      const std::string dir = info.ok() ? info->value("master_dir", "") : "";
      if (!request_.tls_ca_file.empty() && request_.tls_ca_file.front() != '/' && !dir.empty()) {
        request_.tls_ca_file = dir + "/" + request_.tls_ca_file;
      }
    }
    for (const auto& pattern : c.value("events", json::array())) {
      auto sub = context().subscribe(pattern.get<std::string>(), [this](std::string_view key, const json& event) {
        on_event(std::string(key), event);
      });
      if (!sub.ok()) {
        return {KILN_ERR_INVALID_CONFIG, "events: cannot subscribe to '" + pattern.get<std::string>() + "': " + sub.status().message()};
      }
    }
    if (filtered_) {
      for (const char* pattern : {"builds/+/new", "builds/+/finished", "steps/+/new", "steps/+/finished",
                                  "logs/+/new", "logs/+/finished"}) {
        auto sub = context().subscribe(pattern, [this](std::string_view key, const json& event) {
          track(std::string(key), event);
        });
        if (!sub.ok()) return sub.status();
      }
    }
    // Builder names for the packets of builds (receivers want names, and a
    // lookup per event would reorder them).
    context().data_get("builders", nullptr, [this](sdk::Result<json> builders) {
      if (!builders.ok()) return;
      for (const auto& b : *builders) {
        const int64_t id = b.value("builderid", int64_t{0});
        builder_names_[id] = b.value("name", "");
        if (filter_.selects(b.value("name", ""), b.value("tags", json::array()))) selected_builders_.insert(id);
      }
    });
    // What an earlier run left unsent goes first.
    context().state_get("queue", [this](sdk::Result<json> saved) {
      restored_ = true;
      if (!saved.ok() || !saved->is_object()) return;
      std::deque<json> older;
      for (auto& p : saved->value("packets", json::array())) older.push_back(std::move(p));
      next_id_ = std::max(next_id_, saved->value("next_id", int64_t{0}));
      // Packets that arrived meanwhile get ids after the saved ones.
      for (auto& p : queue_) p["id"] = ++next_id_;
      for (auto& p : queue_) older.push_back(std::move(p));
      queue_ = std::move(older);
      if (!saved->value("packets", json::array()).empty()) {
        context().info("resuming with " + std::to_string(saved->value("packets", json::array()).size()) +
                       " events saved by the previous run");
      }
      bound();
      dirty_ = true;
    });
    auto timer = context().start_timer(buffer_ms_, buffer_ms_, [this] { tick(); });
    if (!timer.ok()) return timer.status();
    sender_ = std::make_unique<Sender>();
    return {};
  }

  void stop() override {
    if (!sender_) return;
    if (dirty_ && restored_) save();
    alive_ = std::make_shared<bool>(true);
    sender_.reset();
  }

 private:
  static std::optional<int64_t> id_in(const json& event, const char* name) {
    auto it = event.find(name);
    return it != event.end() && it->is_number_integer() ? std::optional<int64_t>(it->get<int64_t>()) : std::nullopt;
  }

  // The builder an event is of: its own builderid, or its build's, step's
  // or log's (known from their `new` events, which come first).
  std::optional<int64_t> builder_of(const std::string& key, const json& event) const {
    if (auto id = id_in(event, "builderid")) return id;
    auto known = [](const std::map<int64_t, int64_t>& map, std::optional<int64_t> id) {
      auto it = id ? map.find(*id) : map.end();
      return it == map.end() ? std::optional<int64_t>() : std::optional<int64_t>(it->second);
    };
    if (auto b = known(builder_of_build_, id_in(event, "buildid"))) return b;
    if (auto b = known(builder_of_step_, id_in(event, "stepid"))) return b;
    if (key.rfind("logs/", 0) == 0) return known(builder_of_log_, id_in(event, "logid"));
    return std::nullopt;
  }

  // With a builders or tags filter, the builds, steps and logs are followed
  // from their `new` to their `finished` events, whatever `events` says.
  // An entry goes once every subscriber has seen its `finished` event.
  void track(const std::string& key, const json& event) {
    const std::string collection = key.substr(0, key.find('/'));
    const char* own = collection == "builds" ? "buildid" : collection == "steps" ? "stepid" : "logid";
    auto& map = collection == "builds" ? builder_of_build_ : collection == "steps" ? builder_of_step_ : builder_of_log_;
    const std::optional<int64_t> id = id_in(event, own);
    if (!id) return;
    if (key.size() > 4 && key.compare(key.size() - 4, 4, "/new") == 0) {
      if (auto builder = builder_of(key, event)) map[*id] = *builder;
    } else {
      std::weak_ptr<bool> alive = alive_;
      context().post([this, alive, &map, id] {
        if (alive.lock()) map.erase(*id);
      });
    }
  }

  // Whether the builders or tags filter leaves this event out. Events of
  // no one builder (changes, buildsets, workers) always go.
  bool filtered_out(const std::string& key, const json& event) const {
    if (!filtered_) return false;
    const std::optional<int64_t> builder = builder_of(key, event);
    return builder && selected_builders_.count(*builder) == 0;
  }

  void on_event(const std::string& key, const json& event) {
    if (filtered_out(key, event)) return;
    json payload = event;
    if (key.rfind("builds/", 0) == 0 && payload.contains("builderid")) {
      auto it = builder_names_.find(payload["builderid"].get<int64_t>());
      if (it != builder_names_.end()) payload["builder"] = it->second;
    }
    auto now = context().now_ms();
    queue_.push_back({{"id", ++next_id_},
                      {"event", event_name(key)},
                      {"routing_key", key},
                      {"timestamp", now.ok() ? static_cast<double>(*now) / 1000.0 : 0.0},
                      {"project", project_},
                      {"payload", std::move(payload)}});
    bound();
    dirty_ = true;
  }

  void bound() {
    while (queue_.size() > max_queue_) {
      queue_.pop_front();
      ++dropped_;
    }
  }

  void save() {
    json packets = json::array();
    for (const auto& p : queue_) packets.push_back(p);
    context().state_put("queue", {{"packets", std::move(packets)}, {"next_id", next_id_}});
    dirty_ = false;
  }

  void tick() {
    if (dropped_ > 0) {
      context().warn("the queue is full (max_queue " + std::to_string(max_queue_) + "): dropped the " +
                     std::to_string(dropped_) + " oldest events");
      dropped_ = 0;
    }
    if (!restored_) return;  // the saved queue goes first
    if (dirty_) save();
    try_send();
  }

  void try_send() {
    if (sending_ || waiting_ || queue_.empty() || !sender_) return;
    json batch = json::array();
    for (size_t i = 0; i < queue_.size() && i < chunk_size_; ++i) batch.push_back(queue_[i]);
    const int64_t last = batch.back()["id"].get<int64_t>();
    const size_t count = batch.size();
    PostRequest request = request_;
    request.body = form_ ? "packets=" + form_encoded(batch.dump()) : batch.dump();
    sending_ = true;
    sdk::Context ctx = context();
    std::weak_ptr<bool> alive = alive_;
    sender_->send(std::move(request), [this, ctx, alive, last, count](PostOutcome outcome) {
      ctx.post([this, alive, last, count, outcome = std::move(outcome)] {
        if (alive.lock()) sent(outcome, last, count);
      });
    });
  }

  void sent(const PostOutcome& outcome, int64_t last, size_t count) {
    sending_ = false;
    if (outcome.ok()) {
      while (!queue_.empty() && queue_.front()["id"].get<int64_t>() <= last) queue_.pop_front();
      context().debug("pushed " + std::to_string(count) + " events to " + url_text_);
      if (failures_ > 0) context().info("pushing to " + url_text_ + " works again after " + std::to_string(failures_) +
                                        (failures_ == 1 ? " failure" : " failures"));
      failures_ = 0;
      save();
      try_send();  // the next chunk, if any, without waiting
      return;
    }
    ++failures_;
    context().warn("cannot push " + std::to_string(count) + " events to " + url_text_ + ": " + outcome.error +
                   "; retrying in " + sdk_seconds(retry_ms_) + " s");
    waiting_ = true;
    auto timer = context().start_timer(retry_ms_, [this] {
      waiting_ = false;
      try_send();
    });
    if (!timer.ok()) waiting_ = false;
  }

  static std::string sdk_seconds(uint64_t ms) {
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100);
  }

  bool form_;
  PostRequest request_;
  std::string url_text_, project_;
  uint64_t buffer_ms_ = 1000, retry_ms_ = 5000;
  size_t max_queue_ = 10000, chunk_size_ = 200;
  std::deque<json> queue_;
  int64_t next_id_ = 0;
  size_t dropped_ = 0;
  int failures_ = 0;
  bool dirty_ = false, restored_ = false, sending_ = false, waiting_ = false;
  std::map<int64_t, std::string> builder_names_;
  sdk::NotifierOptions filter_;
  bool filtered_ = false;
  std::set<int64_t> selected_builders_;
  std::map<int64_t, int64_t> builder_of_build_, builder_of_step_, builder_of_log_;
  std::unique_ptr<Sender> sender_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

class StatusPush : public PushReporter {
 public:
  StatusPush(sdk::Context ctx, const json& config) : PushReporter(std::move(ctx), config, false) {}
};

class HttpStatusPush : public PushReporter {
 public:
  HttpStatusPush(sdk::Context ctx, const json& config) : PushReporter(std::move(ctx), config, true) {}
};

}  // namespace
}  // namespace kiln::http_push

KILN_PLUGIN("kiln-http-push", "0.1.0", "Pushes build events as JSON over HTTP (Buildbot's StatusPush and HttpStatusPush)",
            "MIT",
            kiln::sdk::component<kiln::http_push::StatusPush>(KILN_KIND_REPORTER, "status-push", "0.1.0",
                                                              "POSTs batches of events as a JSON body",
                                                              kiln::http_push::kSchema),
            kiln::sdk::component<kiln::http_push::HttpStatusPush>(KILN_KIND_REPORTER, "http-push", "0.1.0",
                                                                  "POSTs batches of events as HttpStatusPush's form field 'packets'",
                                                                  kiln::http_push::kSchema));
