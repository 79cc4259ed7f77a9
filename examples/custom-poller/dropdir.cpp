// kiln-dropdir: a custom polling change source built on the SDK's Poller,
// the shape Buildbot's manual gives under "Writing a Change Poller".
//
// It watches a folder (a drop box that some other system writes release
// tarballs, nightly dumps or patch files into) and reports one change per
// new file: who is the configured `who`, files holds the file's name, the
// revision is the name too, and the change's time is the file's
// modification time. The first poll records what is already there without
// reporting it; the names seen are plugin state, so a restarted master
// reports neither old files again nor misses the ones that arrived while it
// was down.
//
// In master.yaml (after copying kiln-dropdir.so into a folder listed in
// master.plugin_paths or $KILN_PLUGIN_PATH):
//   change_sources:
//     - {type: dropdir, directory: /srv/incoming, poll_interval: 30, branch: releases}

#include <kiln/sdk/plugin.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

namespace {

namespace sdk = kiln::sdk;
namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kSchema = R"({
  "type": "object",
  "required": ["directory"],
  "additionalProperties": false,
  "properties": {
    "directory": {"type": "string", "minLength": 1, "description": "The folder to watch, on the master."},
    "who": {"type": "string", "default": "dropdir", "description": "The author of every change."},
    "branch": {"type": ["string", "null"], "default": null, "description": "The branch of every change."},
    "project": {"type": "string", "default": "", "description": "The project of every change."},
    "poll_interval": {"type": "number", "minimum": 0, "default": 60, "description": "Seconds between polls."},
    "poll_at_launch": {"type": "boolean", "default": false, "description": "Poll as the master starts."}
  }
})";

struct DroppedFile {
  std::string name;
  int64_t mtime = 0;
};

class DropDir : public sdk::Poller {
 public:
  DropDir(sdk::Context ctx, const json& config) : Poller(std::move(ctx), config, 60) {
    directory_ = config.value("directory", "");
  }

  static sdk::Status validate(const json& config) {
    if (!fs::path(config.value("directory", "")).is_absolute()) {
      return sdk::invalid_config("directory '" + config.value("directory", "") + "' must be an absolute path");
    }
    return {};
  }

 protected:
  // One poll: read the saved names (once), list the folder on the poller's
  // own thread (a folder may be large or on a slow disk: never on the
  // engine's loop), then report what is new. done() ends the poll; the base
  // class never starts another one while this one runs.
  void poll_once(PollDone done) override {
    if (!loaded_) {
      sdk::Status asked = context().state_get("seen", [this, done](sdk::Result<json> value) {
        if (stopped()) return;
        if (!value.ok()) return done(value.status());
        loaded_ = true;
        if (value->is_array()) {
          seen_.emplace();
          for (const auto& name : *value) seen_->insert(name.get<std::string>());
        }
        list(done);
      });
      if (!asked.ok()) done(asked);
      return;
    }
    list(done);
  }

 private:
  void list(PollDone done) {
    auto files = std::make_shared<std::vector<DroppedFile>>();
    auto error = std::make_shared<std::string>();
    const std::string dir = directory_;
    sdk::Status queued = runner().call(
        [dir, files, error] {
          std::error_code ec;
          for (const auto& entry : fs::directory_iterator(dir, ec)) {
            if (!entry.is_regular_file(ec)) continue;
            auto mtime = fs::last_write_time(entry.path(), ec);
            auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                               std::chrono::file_clock::to_sys(mtime).time_since_epoch())
                               .count();
            files->push_back({entry.path().filename().string(), static_cast<int64_t>(seconds)});
          }
          if (ec) *error = "cannot list " + dir + ": " + ec.message();
        },
        [this, files, error, done] {
          if (stopped()) return;
          if (!error->empty()) return done(sdk::Status(KILN_ERR_RETRY, *error));
          report(*files, done);
        });
    if (!queued.ok()) done(queued);
  }

  void report(std::vector<DroppedFile> files, PollDone done) {
    std::sort(files.begin(), files.end(), [](const DroppedFile& a, const DroppedFile& b) {
      return a.mtime != b.mtime ? a.mtime < b.mtime : a.name < b.name;
    });
    const bool first = !seen_.has_value();
    if (first) seen_.emplace();
    for (const auto& f : files) {
      if (!seen_->insert(f.name).second || first) continue;
      // Sent in order; the engine stores them in the order it gets them.
      sdk::Status added = add_change({{"author", config().value("who", "dropdir")},
                  {"files", {f.name}},
                  {"comments", "new file " + f.name + " in " + directory_},
                  {"revision", f.name},
                  {"branch", config().value("branch", json())},
                  {"project", config().value("project", "")},
                  {"repository", directory_},
                  {"when_timestamp", f.mtime}});
      if (!added.ok()) {
        seen_->erase(f.name);  // reported again by the next poll
        return done(added);
      }
    }
    if (first) context().info("first poll: " + std::to_string(files.size()) + " file(s) already in " + directory_);
    json names = json::array();
    for (const auto& name : *seen_) names.push_back(name);
    sdk::Status saved = context().state_put("seen", names, [this, done](sdk::Result<json> r) {
      if (!stopped()) done(r.ok() ? sdk::Status() : r.status());
    });
    if (!saved.ok()) done(saved);
  }

  std::string directory_;
  bool loaded_ = false;
  std::optional<std::set<std::string>> seen_;  // nullopt until a first poll
};

}  // namespace

KILN_PLUGIN("kiln-dropdir", "0.1.0", "Example plugin: a change source watching a folder for new files", "MIT",
            sdk::component<DropDir>(KILN_KIND_CHANGE_SOURCE, "dropdir", "0.1.0",
                                    "Reports one change per new file in a folder", kSchema));
