#pragma once
// Shared by the std_plugins tests: loads the REAL built kiln-std-steps.so /
// kiln-force-scheduler.so through the Registry and creates one instance on
// a FakeContext, an InstanceContext that plays the engine: it records what
// the plugin asks for (commands, logs, summaries, properties, buildsets) and
// lets the test feed command output and completion back.

#include "config/core_schema.h"
#include "config/json_schema.h"
#include "plugin/host.h"
#include "plugin/registry.h"
#include "util/event_loop.h"
#include "store/temp_dir.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace kiln::std_plugins::test {

using nlohmann::json;

inline std::filesystem::path std_steps_library() {
  return std::filesystem::path(KILN_BUILD_PLUGIN_DIR) / "kiln-std-steps.so";
}
inline std::filesystem::path force_scheduler_library() {
  return std::filesystem::path(KILN_BUILD_PLUGIN_DIR) / "kiln-force-scheduler.so";
}

// Everything the plugin did, kept apart from the context so that it can be
// read after the instance (and its context) is gone.
struct Recorder {
  struct Command {
    std::string name;
    json args;
    kiln_ctx::CommandHandlers handlers;
    uint64_t id = 0;
  };
  struct Log {
    std::string name;
    char type = 0;
    std::map<kiln_stream, std::string> streams;
    std::string text;  // every stream, in order
    bool finished = false;
  };

  std::vector<Command> commands;
  std::vector<std::pair<uint64_t, std::string>> interrupts;
  std::map<uint64_t, Log> logs;
  std::vector<std::string> summaries;
  std::vector<std::pair<kiln_result, std::string>> finishes;
  std::map<std::string, json> statistics;
  std::map<std::string, json> properties;
  std::map<std::string, std::string> property_sources;
  std::vector<std::pair<std::string, std::string>> urls;
  std::vector<json> buildsets;

  const Log* log(std::string_view name) const {
    for (const auto& [_, log] : logs) {
      if (log.name == name) return &log;
    }
    return nullptr;
  }
  std::string stream(std::string_view log_name, kiln_stream s) const {
    const Log* l = log(log_name);
    if (l == nullptr) return {};
    auto it = l->streams.find(s);
    return it == l->streams.end() ? std::string() : it->second;
  }
};

class FakeContext final : public kiln::plugin::InstanceContext {
 public:
  FakeContext(kiln::util::EventLoop& loop, kiln_component_kind kind, std::string name, json facts,
              std::shared_ptr<Recorder> rec)
      : InstanceContext(loop, nullptr, kind, std::move(name)), facts_(std::move(facts)), rec_(std::move(rec)) {}

  kiln_status command_start(std::string_view name, std::string_view args, CommandHandlers handlers,
                            uint64_t& id) override {
    id = 100 + rec_->commands.size();
    rec_->commands.push_back({std::string(name), json::parse(args), std::move(handlers), id});
    return KILN_OK;
  }
  kiln_status command_interrupt(uint64_t id, std::string_view reason) override {
    rec_->interrupts.emplace_back(id, std::string(reason));
    return KILN_OK;
  }
  kiln_status log_add(std::string_view name, char type, uint64_t& id) override {
    id = rec_->logs.size() + 1;
    rec_->logs[id] = Recorder::Log{std::string(name), type, {}, {}, false};
    return KILN_OK;
  }
  kiln_status log_append(uint64_t id, kiln_stream stream, Bytes data) override {
    auto it = rec_->logs.find(id);
    if (it == rec_->logs.end()) return KILN_ERR_NOT_FOUND;
    const std::string text(reinterpret_cast<const char*>(data.data()), data.size());
    it->second.streams[stream] += text;
    it->second.text += text;
    return KILN_OK;
  }
  kiln_status log_finish(uint64_t id) override {
    auto it = rec_->logs.find(id);
    if (it == rec_->logs.end()) return KILN_ERR_NOT_FOUND;
    it->second.finished = true;
    return KILN_OK;
  }
  kiln_status set_summary(std::string_view summary) override {
    rec_->summaries.emplace_back(summary);
    return KILN_OK;
  }
  kiln_status add_url(std::string_view name, std::string_view url) override {
    rec_->urls.emplace_back(name, url);
    return KILN_OK;
  }
  kiln_status set_statistic(std::string_view name, std::string_view value) override {
    rec_->statistics[std::string(name)] = json::parse(value);
    return KILN_OK;
  }
  kiln_status step_finish(kiln_result result, std::string_view summary) override {
    rec_->finishes.emplace_back(result, std::string(summary));
    return KILN_OK;
  }
  kiln_status property_get(std::string_view name, std::string& out) override {
    auto it = rec_->properties.find(std::string(name));
    out = it == rec_->properties.end()
              ? "null"
              : json{{"value", it->second}, {"source", rec_->property_sources[it->first]}}.dump();
    return KILN_OK;
  }
  kiln_status property_set(std::string_view name, std::string_view value, std::string_view source) override {
    rec_->properties[std::string(name)] = json::parse(value);
    rec_->property_sources[std::string(name)] = std::string(source);
    return KILN_OK;
  }
  kiln_status buildset_add(std::string_view request, JsonCallback cb) override {
    json req = json::parse(request);
    rec_->buildsets.push_back(req);
    json brids = json::object();
    int next = 1;
    for (const auto& b : req["builders"]) brids[b.get<std::string>()] = next++;
    const json answer = {{"bsid", static_cast<int>(rec_->buildsets.size()) + 40}, {"brids", brids}};
    // Answered later on the loop, as the engine does.
    if (cb) loop()->post([cb, text = answer.dump()] { cb(KILN_OK, text); });
    return KILN_OK;
  }

 protected:
  void context_facts(json& facts) const override {
    for (const auto& [key, value] : facts_.items()) facts[key] = value;
  }

 private:
  json facts_;
  std::shared_ptr<Recorder> rec_;
};

// One instance of one component type from a real plugin library. The
// config goes through what the core does first: schema check, defaults,
// the plugin's validate().
class Harness {
 public:
  Harness(const std::filesystem::path& library, kiln_component_kind kind, const std::string& type,
          json config, json facts) {
    if (auto problem = registry.load_library(library)) {
      error = "cannot load " + library.string() + ": " + problem->message;
      return;
    }
    const kiln::plugin::ComponentType* component = registry.find(kind, type);
    if (component == nullptr) {
      error = "no component type " + type;
      return;
    }
    auto violations = kiln::config::validate_against_schema(component->schema, config);
    if (!violations.empty()) {
      error = violations.front().instance_pointer + ": " + violations.front().message;
      return;
    }
    kiln::config::apply_schema_defaults(component->schema, config);
    if (auto rejected = registry.check_with_plugin(kind, type, config)) {
      error = *rejected;
      return;
    }
    const std::string name = facts.value("name", type);
    auto ctx = std::make_unique<FakeContext>(loop, kind, name, std::move(facts), rec);
    instance = kiln::plugin::Instance::create(*component, std::move(ctx), config, error);
  }
  ~Harness() { instance.reset(); }  // before the registry unloads the library

  // A step run's facts as the engine gives them: the core's step defaults
  // in "common", overridden by `common`.
  static json step_facts(const json& common = json::object(), const json& extra = json::object()) {
    json c = common;
    kiln::config::apply_schema_defaults(kiln::config::core_definition("step"), c);
    json facts = {{"kind", "step"}, {"name", "step"}, {"builder", "runtests"}, {"buildid", 7},
                  {"build_number", 3},  {"step_number", 1},   {"master_dir", "/srv/ci"},
                  {"common", c}};
    for (const auto& [key, value] : extra.items()) facts[key] = value;
    return facts;
  }

  kiln_status run() {
    kiln_error err;
    kiln_status status = instance->vtable<kiln_step_vtable>()->run(instance->handle(), &err);
    run_error = err.message;
    return status;
  }
  void interrupt(std::string_view reason) {
    instance->vtable<kiln_step_vtable>()->interrupt(instance->handle(), kiln_str{reason.data(), reason.size()});
  }

  // A scheduler's control action; the answer arrives on the loop.
  struct Answer {
    bool answered = false;
    kiln_status status = KILN_OK;
    std::string text;
    json value() const { return json::parse(text); }
  };
  kiln_status control(std::string_view action, const json& args, Answer& answer) {
    const std::string text = args.dump();
    return instance->vtable<kiln_scheduler_vtable>()->control(
        instance->handle(), kiln_str{action.data(), action.size()}, kiln_str{text.data(), text.size()},
        [](void* user, kiln_status status, kiln_str json_text) {
          auto* a = static_cast<Answer*>(user);
          a->answered = true;
          a->status = status;
          a->text.assign(json_text.ptr, json_text.len);
        },
        &answer);
  }

  // Feeds the command the step started (index i) as the worker would.
  void output(size_t i, kiln_stream stream, std::string_view data) {
    rec->commands.at(i).handlers.on_output(
        stream, kiln_ctx::Bytes(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  }
  void update(size_t i, const json& update) { rec->commands.at(i).handlers.on_update(update.dump()); }
  void complete(size_t i, const json& result) { rec->commands.at(i).handlers.on_complete(result.dump()); }

  // Runs the loop until done() or the (real-time) limit; true when done.
  bool run_until(const std::function<bool()>& done,
                 std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (loop.poll() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  kiln::util::EventLoop loop;
  kiln::plugin::Registry registry;
  std::shared_ptr<Recorder> rec = std::make_shared<Recorder>();
  std::unique_ptr<kiln::plugin::Instance> instance;
  std::string error;
  std::string run_error;
};

using kiln::testing::TempDir;

}  // namespace kiln::std_plugins::test
