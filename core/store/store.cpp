#include "store/store.h"

#include "store/sqlite_store.h"

namespace kiln::store {

Result<StoreLocation> parse_store_url(std::string_view url,
                                      const std::filesystem::path& base_dir) {
  auto bad = [&](std::string why) -> Result<StoreLocation> {
    return {Status::error(StatusCode::kInvalidArgument,
                          "store URL '" + std::string(url) + "': " + std::move(why)),
            {}};
  };
  if (url.starts_with("postgresql:") || url.starts_with("postgres:")) {
    return {Status::error(StatusCode::kUnsupported,
                          "store URL '" + std::string(url) +
                              "': PostgreSQL stores are not supported yet; use "
                              "sqlite:state.sqlite"),
            {}};
  }
  constexpr std::string_view kScheme = "sqlite:";
  if (!url.starts_with(kScheme)) {
    return bad("unknown scheme; expected sqlite:FILE or sqlite::memory:");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (rest == ":memory:" || rest == "//" || rest == "///:memory:") {
    return {{}, {StoreLocation::Backend::kSqliteMemory, {}}};
  }
  // SQLAlchemy's spelling, as in a Buildbot master.cfg: sqlite:///relative
  // and sqlite:////absolute.
  if (rest.starts_with("///")) {
    rest.remove_prefix(3);
  } else if (rest.starts_with("//")) {
    return bad("a host is not allowed; write sqlite:FILE or sqlite:///FILE");
  }
  if (rest.empty()) return bad("no file named");
  std::filesystem::path path(rest);
  if (path.is_relative()) path = base_dir / path;
  return {{}, {StoreLocation::Backend::kSqliteFile, path.lexically_normal()}};
}

Result<std::unique_ptr<Store>> open_store(OpenOptions options) {
  auto location = parse_store_url(options.url, options.base_dir);
  if (!location.ok()) return {location.status, nullptr};
  return open_sqlite_store(location.value, std::move(options));
}

Status Store::wait() {
  return wait_for<void>([&](Completion<void> done) { flush(std::move(done)); });
}

Result<std::string> Store::get_state_sync(std::string kind, std::string name,
                                          std::string key) {
  return wait_for<std::string>([&](Completion<std::string> done) {
    get_state(std::move(kind), std::move(name), std::move(key), std::move(done));
  });
}

Status Store::put_state_sync(std::string kind, std::string name, std::string key,
                             std::string value_json) {
  return wait_for<void>([&](Completion<void> done) {
    put_state(std::move(kind), std::move(name), std::move(key),
              std::move(value_json), std::move(done));
  });
}

Result<int64_t> Store::register_master_sync(std::string name, int64_t now) {
  return wait_for<int64_t>([&](Completion<int64_t> done) {
    register_master(std::move(name), now, std::move(done));
  });
}

Status Store::set_master_active_sync(int64_t masterid, bool active, int64_t now) {
  return wait_for<void>([&](Completion<void> done) {
    set_master_active(masterid, active, now, std::move(done));
  });
}

Result<std::vector<MasterRecord>> Store::list_masters_sync() {
  return wait_for<std::vector<MasterRecord>>(
      [&](Completion<std::vector<MasterRecord>> done) { list_masters(std::move(done)); });
}

}  // namespace kiln::store
