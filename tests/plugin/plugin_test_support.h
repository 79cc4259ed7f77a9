#pragma once
// Shared by the plugin tests: where the test plugins were built, a scratch
// folder, a capture of what is logged, and an in-memory StateBackend.

#include "plugin/host.h"
#include "store/temp_dir.h"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>

namespace kiln::plugin::test {

// The build folder of one test plugin case (tests/plugins/<name>).
inline std::filesystem::path case_dir(const std::string& name) {
  return std::filesystem::path(KILN_TEST_PLUGIN_DIR) / name;
}

inline std::filesystem::path case_library(const std::string& name,
                                          const std::string& folder = "") {
  return case_dir(folder.empty() ? name : folder) / ("kiln-" + name + ".so");
}

using kiln::testing::TempDir;

// Routes the default spdlog logger into a string while alive.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_);
    auto logger = std::make_shared<spdlog::logger>("kiln-plugin-test-capture", sink);
    logger->set_level(spdlog::level::trace);
    logger->set_pattern("%l %v");
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() const {
    spdlog::default_logger()->flush();
    return stream_.str();
  }

 private:
  std::shared_ptr<spdlog::logger> previous_;
  std::ostringstream stream_;
};

// Answers synchronously, inside get()/put(), which is the hardest case for
// the context (it must still defer the plugin's callback to the loop).
class MemoryStateBackend final : public StateBackend {
 public:
  void get(const StateKey& key, Done done) override {
    std::string value;
    {
      std::lock_guard lock(mutex_);
      auto it = values_.find(flat(key));
      value = it == values_.end() ? "null" : it->second;
    }
    done(KILN_OK, value);
  }
  void put(const StateKey& key, std::string value_json, Done done) override {
    {
      std::lock_guard lock(mutex_);
      values_[flat(key)] = std::move(value_json);
    }
    done(KILN_OK, "");
  }
  std::map<std::string, std::string> values() const {
    std::lock_guard lock(mutex_);
    return values_;
  }
  static std::string flat(const StateKey& key) {
    return std::to_string(key.kind) + "/" + key.name + "/" + key.key;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::string> values_;
};

inline kiln_str str(std::string_view s) { return kiln_str{s.data(), s.size()}; }

}  // namespace kiln::plugin::test
