#include "master/user_requests.h"

#include <algorithm>
#include <optional>
#include <stdexcept>

namespace kiln::master {

using nlohmann::json;

namespace {

// A malformed request; answered as invalid_argument.
struct BadRequest : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

json error_answer(store::StatusCode code, const std::string& message) {
  return json{{"error", message}, {"code", status_code_name(code)}};
}

std::optional<std::string> optional_string(const json& request, const char* key) {
  if (!request.contains(key) || request[key].is_null()) return std::nullopt;
  if (!request[key].is_string()) throw BadRequest(std::string("'") + key + "' must be a string");
  return request[key].get<std::string>();
}

bool known_type(const std::string& type) {
  const auto& types = user_attribute_types();
  return std::find(types.begin(), types.end(), type) != types.end();
}

std::map<std::string, std::string> info_of(const json& request) {
  std::map<std::string, std::string> info;
  if (!request.contains("info") || request["info"].is_null()) return info;
  if (!request["info"].is_object()) throw BadRequest("'info' must be an object {type: value}");
  for (const auto& [type, value] : request["info"].items()) {
    if (!known_type(type)) {
      std::string list;
      for (const auto& t : user_attribute_types()) list += (list.empty() ? "" : ", ") + t;
      throw BadRequest("unknown attribute type '" + type + "' (expected one of " + list + ")");
    }
    if (!value.is_string()) throw BadRequest("info '" + type + "' must be a string");
    info[type] = value.get<std::string>();
  }
  return info;
}

store::UserChanges changes_of(const json& request) {
  store::UserChanges c;
  c.attributes = info_of(request);
  c.bb_username = optional_string(request, "username");
  c.bb_password_hash = optional_string(request, "password_hash");
  return c;
}

store::UserRef ref_of(const json& request) {
  store::UserRef ref;
  if (request.contains("uid") && !request["uid"].is_null()) {
    if (!request["uid"].is_number_integer() || request["uid"].get<int64_t>() <= 0) {
      throw BadRequest("'uid' must be a positive integer");
    }
    ref.uid = request["uid"].get<int64_t>();
  }
  if (auto identifier = optional_string(request, "identifier")) ref.identifier = *identifier;
  if (ref.uid == 0 && ref.identifier.empty()) {
    throw BadRequest("name the user by 'uid' or 'identifier'");
  }
  if (ref.uid != 0 && !ref.identifier.empty()) {
    throw BadRequest("name the user by 'uid' or 'identifier', not both");
  }
  return ref;
}

json user_json(const store::UserRecord& u) {
  return json{{"uid", u.uid},
              {"identifier", u.identifier},
              {"username", u.bb_username ? json(*u.bb_username) : json()},
              {"password", u.has_password},
              {"info", u.attributes}};
}

using Reply = std::function<void(json)>;

// The store's answer, or the error it gave.
template <class T, class OnValue>
auto answer(Reply reply, OnValue on_value) {
  return [reply = std::move(reply), on_value = std::move(on_value)](store::Outcome<T> r) {
    const store::Status& status = [&]() -> const store::Status& {
      if constexpr (std::is_void_v<T>) {
        return r;
      } else {
        return r.status;
      }
    }();
    if (!status.ok()) return reply(error_answer(status.code, status.message));
    if constexpr (std::is_void_v<T>) {
      reply(on_value());
    } else {
      reply(on_value(std::move(r.value)));
    }
  };
}

void dispatch(store::Store& store, const json& request, Reply reply) {
  const std::string action = request.value("action", "");
  if (action == "add") {
    store::UserChanges user = changes_of(request);
    user.identifier = optional_string(request, "identifier");
    if (!user.identifier) throw BadRequest("a new user needs an 'identifier'");
    store.add_user(std::move(user),
                   answer<int64_t>(std::move(reply), [](int64_t uid) { return json{{"uid", uid}}; }));
  } else if (action == "update") {
    store::UserRef ref = ref_of(request);
    store::UserChanges changes = changes_of(request);
    changes.identifier = optional_string(request, "set_identifier");
    if (!changes.identifier && !changes.bb_username && !changes.bb_password_hash &&
        changes.attributes.empty()) {
      throw BadRequest("nothing to update: give info, a new identifier, a username or a password");
    }
    // The answer names the user by id, which a rename may not keep stable
    // for the caller otherwise.
    store.update_user(ref, std::move(changes),
                      answer<void>(std::move(reply), [ref] {
                        return ref.uid != 0 ? json{{"uid", ref.uid}}
                                            : json{{"identifier", ref.identifier}};
                      }));
  } else if (action == "remove") {
    store::UserRef ref = ref_of(request);
    store.remove_user(ref, answer<void>(std::move(reply), [ref] {
                        return json{{"removed", ref.describe()}};
                      }));
  } else if (action == "show") {
    if (request.contains("uid") || request.contains("identifier")) {
      store.get_user(ref_of(request),
                     answer<store::UserRecord>(std::move(reply), [](store::UserRecord u) {
                       return json{{"users", json::array({user_json(u)})}};
                     }));
      return;
    }
    store.list_users(optional_string(request, "match").value_or(""),
                     answer<std::vector<store::UserRecord>>(
                         std::move(reply), [](std::vector<store::UserRecord> users) {
                           json out = json::array();
                           for (const auto& u : users) out.push_back(user_json(u));
                           return json{{"users", std::move(out)}};
                         }));
  } else {
    throw BadRequest("unknown user action '" + action + "' (expected add, update, remove, show)");
  }
}

}  // namespace

const std::vector<std::string>& user_attribute_types() {
  static const std::vector<std::string> types = {"author", "bzr", "cvs",  "darcs", "email",
                                                 "full_name", "git", "hg", "irc", "p4",
                                                 "svn"};
  return types;
}

std::string status_code_name(store::StatusCode code) {
  switch (code) {
    case store::StatusCode::kOk: return "ok";
    case store::StatusCode::kInvalidArgument: return "invalid_argument";
    case store::StatusCode::kNotFound: return "not_found";
    case store::StatusCode::kNotADatabase: return "not_a_database";
    case store::StatusCode::kSchemaTooOld: return "schema_too_old";
    case store::StatusCode::kSchemaTooNew: return "schema_too_new";
    case store::StatusCode::kUnsupported: return "unsupported";
    case store::StatusCode::kIo: return "io";
    case store::StatusCode::kInternal: return "internal";
  }
  return "internal";
}

void handle_user_request(store::Store& store, const json& request, Reply reply) {
  try {
    dispatch(store, request, reply);
  } catch (const BadRequest& e) {
    reply(error_answer(store::StatusCode::kInvalidArgument, e.what()));
  } catch (const json::exception& e) {
    reply(error_answer(store::StatusCode::kInvalidArgument, e.what()));
  }
}

}  // namespace kiln::master
