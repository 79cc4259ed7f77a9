#include "store/store.h"

// The blocking wrappers of the engine's calls (see store.h): each runs its
// call with a store-thread completion and waits for it.

namespace kiln::store {

Result<int64_t> Store::add_change_sync(ChangeRecord change) {
  return wait_for<int64_t>(
      [&](Completion<int64_t> done) { add_change(std::move(change), std::move(done)); });
}

Result<int64_t> Store::find_or_create_user_sync(std::string identifier,
                                                std::string attr_type,
                                                std::string attr_data) {
  return wait_for<int64_t>([&](Completion<int64_t> done) {
    find_or_create_user(std::move(identifier), std::move(attr_type), std::move(attr_data),
                        std::move(done));
  });
}

Result<BuildsetIds> Store::add_buildset_sync(BuildsetRequest request) {
  return wait_for<BuildsetIds>([&](Completion<BuildsetIds> done) {
    add_buildset(std::move(request), std::move(done));
  });
}

Status Store::complete_buildset_sync(int64_t bsid, int results, int64_t complete_at) {
  return wait_for<void>([&](Completion<void> done) {
    complete_buildset(bsid, results, complete_at, std::move(done));
  });
}

Result<int64_t> Store::ensure_builder_sync(std::string name,
                                           std::optional<std::string> description,
                                           std::vector<std::string> tags) {
  return wait_for<int64_t>([&](Completion<int64_t> done) {
    ensure_builder(std::move(name), std::move(description), std::move(tags),
                   std::move(done));
  });
}

Result<std::vector<BuilderRecord>> Store::list_builders_sync() {
  return wait_for<std::vector<BuilderRecord>>(
      [&](Completion<std::vector<BuilderRecord>> done) {
        list_builders(std::move(done));
      });
}

Result<int64_t> Store::ensure_worker_sync(std::string name, nlohmann::json info) {
  return wait_for<int64_t>([&](Completion<int64_t> done) {
    ensure_worker(std::move(name), std::move(info), std::move(done));
  });
}

Status Store::set_worker_connected_sync(int64_t workerid, int64_t masterid,
                                        bool connected) {
  return wait_for<void>([&](Completion<void> done) {
    set_worker_connected(workerid, masterid, connected, std::move(done));
  });
}

Status Store::set_worker_info_sync(int64_t workerid, nlohmann::json info) {
  return wait_for<void>([&](Completion<void> done) {
    set_worker_info(workerid, std::move(info), std::move(done));
  });
}

Result<std::vector<BuildRequestRecord>> Store::pending_requests_sync(
    std::optional<int64_t> builderid, int64_t limit) {
  return wait_for<std::vector<BuildRequestRecord>>(
      [&](Completion<std::vector<BuildRequestRecord>> done) {
        pending_requests(builderid, limit, std::move(done));
      });
}

Result<std::vector<int64_t>> Store::claim_requests_sync(std::vector<int64_t> brids,
                                                        int64_t masterid, int64_t now) {
  return wait_for<std::vector<int64_t>>([&](Completion<std::vector<int64_t>> done) {
    claim_requests(std::move(brids), masterid, now, std::move(done));
  });
}

Status Store::unclaim_requests_sync(std::vector<int64_t> brids) {
  return wait_for<void>([&](Completion<void> done) {
    unclaim_requests(std::move(brids), std::move(done));
  });
}

Status Store::complete_requests_sync(std::vector<int64_t> brids, int results,
                                     int64_t complete_at) {
  return wait_for<void>([&](Completion<void> done) {
    complete_requests(std::move(brids), results, complete_at, std::move(done));
  });
}

Result<bool> Store::cancel_request_sync(int64_t brid, int64_t now) {
  return wait_for<bool>(
      [&](Completion<bool> done) { cancel_request(brid, now, std::move(done)); });
}

Result<BuildIds> Store::add_build_sync(int64_t builderid, int64_t buildrequestid,
                                       std::optional<int64_t> workerid, int64_t masterid,
                                       int64_t started_at, std::string state_string) {
  return wait_for<BuildIds>([&](Completion<BuildIds> done) {
    add_build(builderid, buildrequestid, workerid, masterid, started_at,
              std::move(state_string), std::move(done));
  });
}

Status Store::set_build_state_string_sync(int64_t buildid, std::string state_string) {
  return wait_for<void>([&](Completion<void> done) {
    set_build_state_string(buildid, std::move(state_string), std::move(done));
  });
}

Status Store::finish_build_sync(int64_t buildid, int results, int64_t complete_at) {
  return wait_for<void>([&](Completion<void> done) {
    finish_build(buildid, results, complete_at, std::move(done));
  });
}

Status Store::set_build_property_sync(int64_t buildid, std::string name,
                                      nlohmann::json value, std::string source) {
  return wait_for<void>([&](Completion<void> done) {
    set_build_property(buildid, std::move(name), std::move(value), std::move(source),
                       std::move(done));
  });
}

Result<nlohmann::json> Store::build_properties_sync(int64_t buildid) {
  return wait_for<nlohmann::json>([&](Completion<nlohmann::json> done) {
    build_properties(buildid, std::move(done));
  });
}

Result<StepIds> Store::add_step_sync(int64_t buildid, std::string name) {
  return wait_for<StepIds>([&](Completion<StepIds> done) {
    add_step(buildid, std::move(name), std::move(done));
  });
}

Status Store::start_step_sync(int64_t stepid, int64_t started_at) {
  return wait_for<void>(
      [&](Completion<void> done) { start_step(stepid, started_at, std::move(done)); });
}

Status Store::set_step_state_string_sync(int64_t stepid, std::string state_string) {
  return wait_for<void>([&](Completion<void> done) {
    set_step_state_string(stepid, std::move(state_string), std::move(done));
  });
}

Status Store::add_step_url_sync(int64_t stepid, std::string name, std::string url) {
  return wait_for<void>([&](Completion<void> done) {
    add_step_url(stepid, std::move(name), std::move(url), std::move(done));
  });
}

Status Store::finish_step_sync(int64_t stepid, int results, bool hidden,
                               int64_t complete_at) {
  return wait_for<void>([&](Completion<void> done) {
    finish_step(stepid, results, hidden, complete_at, std::move(done));
  });
}

Result<int64_t> Store::add_log_sync(int64_t stepid, std::string name, char type) {
  return wait_for<int64_t>([&](Completion<int64_t> done) {
    add_log(stepid, std::move(name), type, std::move(done));
  });
}

Result<LineRange> Store::append_log_sync(int64_t logid, std::string lines) {
  return wait_for<LineRange>([&](Completion<LineRange> done) {
    append_log(logid, std::move(lines), std::move(done));
  });
}

Status Store::finish_log_sync(int64_t logid) {
  return wait_for<void>(
      [&](Completion<void> done) { finish_log(logid, std::move(done)); });
}

Result<std::string> Store::log_lines_sync(int64_t logid, int64_t first_line,
                                          int64_t last_line) {
  return wait_for<std::string>([&](Completion<std::string> done) {
    log_lines(logid, first_line, last_line, std::move(done));
  });
}

Result<LogPage> Store::log_page_sync(int64_t logid, int64_t from_line, size_t max_bytes) {
  return wait_for<LogPage>([&](Completion<LogPage> done) {
    log_page(logid, from_line, max_bytes, std::move(done));
  });
}

Result<RecoveryCounts> Store::recover_after_crash_sync(int64_t masterid, int64_t now) {
  return wait_for<RecoveryCounts>([&](Completion<RecoveryCounts> done) {
    recover_after_crash(masterid, now, std::move(done));
  });
}

Result<int64_t> Store::delete_old_logs_sync(int64_t builderid, int64_t older_than,
                                            int64_t batch_size) {
  return wait_for<int64_t>([&](Completion<int64_t> done) {
    delete_old_logs(builderid, older_than, batch_size, std::move(done));
  });
}

Result<int64_t> Store::delete_old_builds_sync(int64_t builderid, int64_t older_than,
                                              int64_t batch_size) {
  return wait_for<int64_t>([&](Completion<int64_t> done) {
    delete_old_builds(builderid, older_than, batch_size, std::move(done));
  });
}

Result<nlohmann::json> Store::query_sync(Resource resource, ResultSpec spec) {
  return wait_for<nlohmann::json>([&](Completion<nlohmann::json> done) {
    query(resource, std::move(spec), std::move(done));
  });
}

Result<int64_t> Store::count_sync(Resource resource, ResultSpec spec) {
  return wait_for<int64_t>([&](Completion<int64_t> done) {
    count(resource, std::move(spec), std::move(done));
  });
}

}  // namespace kiln::store
