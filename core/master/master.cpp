#include "master/master.h"

#include "master/user_requests.h"
#include "store/store.h"

#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <filesystem>

#include <unistd.h>

namespace kiln::master {

Master::Master(LoadedMaster loaded) : loaded_(std::move(loaded)), basedir_(loaded_.config.basedir) {}

std::string Master::start() {
  const auto& basedir = basedir_;
  auto location = store::parse_store_url(loaded_.config.master.db, basedir);
  if (!location.ok()) return location.status.message;
  std::error_code ec;
  const bool fresh = location.value.backend == store::StoreLocation::Backend::kSqliteFile &&
                     !std::filesystem::exists(location.value.path, ec);
  store::OpenOptions options;
  options.url = loaded_.config.master.db;
  options.base_dir = basedir;
  options.mode = fresh ? store::OpenMode::kCreate : store::OpenMode::kNormal;
  options.post_to_loop = [this](std::function<void()> fn) { loop_.post(std::move(fn)); };
  options.progress = [](std::string_view line) { spdlog::info("store: {}", line); };
  auto opened = store::open_store(std::move(options));
  if (!opened.ok()) return opened.status.message;
  store_ = std::move(opened.value);

  char host[256] = "localhost";
  ::gethostname(host, sizeof host - 1);
  auto registered = store_->register_master_sync(std::string(host) + ":" + basedir.string(),
                                                 static_cast<int64_t>(loop_.now_ms() / 1000));
  if (!registered.ok()) return registered.status.message;
  masterid_ = registered.value;
  spdlog::info("store {} at schema version {} (master id {})", store_->location(),
               store_->schema_version(), masterid_);
  const size_t workers = loaded_.config.workers.size(), builders = loaded_.config.builders.size();
  // The config check looked up every type the config names; the other
  // libraries would only take memory (a reconfig naming one loads it again).
  const size_t released = loaded_.registry->release_unused();
  engine_ = std::make_unique<engine::Engine>(loop_, *store_, *loaded_.registry, std::move(loaded_.config),
                                             masterid_);
  if (auto error = engine_->start(); !error.empty()) return error;
  // masters/N stop (a clean shutdown): the engine says when no build runs.
  engine_->events().subscribe("masters/" + std::to_string(masterid_) + "/drained",
                              [this](const std::string&, const nlohmann::json&) {
                                loop_.post([this] { stop(); });
                              });
  control_ = std::make_unique<ControlServer>(
      loop_.io(), [this](const nlohmann::json& request, ControlReply reply) {
        handle_control(request, std::move(reply));
      });
  if (auto error = control_->start(basedir); !error.empty()) return error;
  spdlog::info("loaded {} component types from {} folders ({} libraries unused by this "
               "configuration unloaded); {} workers, {} builders",
               loaded_.registry->all().size(), loaded_.plugin_search_path.size(), released,
               workers, builders);
  return {};
}

void Master::run() {
  boost::asio::signal_set signals(loop_.io(), SIGINT, SIGTERM, SIGHUP);
  std::function<void(const boost::system::error_code&, int)> on_signal =
      [&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP) {
          spdlog::info("SIGHUP: reconfiguring from {}", master_yaml_path(basedir_).string());
          reconfigure([](const nlohmann::json& answer) {
            for (const auto& e : answer.value("errors", nlohmann::json::array())) {
              spdlog::error("reconfig: {}", e.get<std::string>());
            }
            spdlog::log(answer.value("ok", false) ? spdlog::level::info : spdlog::level::err,
                        "reconfig {}", answer.value("ok", false) ? "done" : "failed");
          });
          signals.async_wait(on_signal);
          return;
        }
        spdlog::info("signal {}: shutting down", signo);
        stop();
      };
  signals.async_wait(on_signal);
  loop_.run();
}

void Master::handle_control(const nlohmann::json& request, ControlReply reply) {
  using nlohmann::json;
  // Engine answers come as (status, value); errors carry {"error": ...}.
  auto answer = [reply](kiln_status status, json value) {
    if (status != KILN_OK && !(value.is_object() && value.contains("error"))) {
      value = json{{"error", value.dump()}};
    }
    reply(std::move(value));
  };
  const std::string op = request.value("op", "");
  if (op == "data_get") {
    engine_->data().get(request.value("path", ""), request.value("query", json()), answer);
  } else if (op == "control") {
    engine_->control(request.value("path", ""), request.value("action", ""),
                     request.value("args", json::object()), answer);
  } else if (op == "change_add") {
    engine_->add_change(request.value("change", json::object()), answer);
  } else if (op == "status") {
    reply(engine_->status());
  } else if (op == "reconfig") {
    reconfigure([reply](json answer) { reply(std::move(answer)); });
  } else if (op == "user") {
    handle_user_request(*store_, request, reply);
  } else {
    reply(json{{"error", "unknown request '" + op +
                             "' (expected data_get, control, change_add, status, reconfig, "
                             "user)"}});
  }
}

void Master::reconfigure(std::function<void(nlohmann::json)> done) {
  using nlohmann::json;
  auto fail = [](std::vector<std::string> errors) {
    return json{{"ok", false}, {"errors", std::move(errors)}, {"changes", json::array()}};
  };
  if (!engine_) return done(fail({"the master is not running"}));
  if (reconfiguring_) return done(fail({"a reconfig is already in progress; try again"}));
  reconfiguring_ = true;
  if (config_reader_.joinable()) config_reader_.join();
  auto finish = [this, done = std::move(done)](json answer) {
    reconfiguring_ = false;
    done(std::move(answer));
  };
  // YAML parsing of a big master takes long enough to matter to the loop;
  // plugins and checks stay on the loop, where the registry lives.
  config_reader_ = std::thread([this, fail, finish = std::move(finish),
                                path = master_yaml_path(basedir_)]() mutable {
    auto read = std::make_shared<config::ReadResult>(config::read_config_document(path));
    loop_.post([this, read, finish = std::move(finish), fail]() mutable {
      std::vector<std::string> errors;
      for (const auto& d : read->errors) errors.push_back(d.to_string());
      if (!read->document) return finish(fail(std::move(errors)));
      std::vector<std::filesystem::path> searched;
      for (const auto& e : load_plugins(*loaded_.registry, config::plugin_paths_of(*read->document),
                                        searched)) {
        errors.push_back(e.to_string());
      }
      if (!errors.empty()) return finish(fail(std::move(errors)));
      auto checked = config::check_master_config(*read->document, *loaded_.registry);
      for (const auto& d : checked.errors) errors.push_back(d.to_string());
      if (!checked.config) return finish(fail(std::move(errors)));
      engine_->reconfigure(std::move(*checked.config), std::move(finish));
    });
  });
}

void Master::stop() {
  if (control_) control_->stop();
  if (!engine_) {
    loop_.stop();
    return;
  }
  engine_->stop([this] { loop_.stop(); });
}

Master::~Master() {
  if (config_reader_.joinable()) config_reader_.join();
  control_.reset();
  engine_.reset();
  if (store_ && masterid_ != 0) {
    store_->set_master_active_sync(masterid_, false, static_cast<int64_t>(loop_.now_ms() / 1000));
  }
}

}  // namespace kiln::master
