#pragma once
// The `user` request of the control socket, shared by a running master
// (control op "user", on its loop) and by `kiln user` when no master runs
// (the CLI opens the store itself): one JSON request, one store call, one
// JSON answer. Passwords arrive already hashed (store::hash_password runs
// in the CLI), so the master's loop never spends crypt's CPU time and no
// plain password crosses the socket.
//
//   {"op": "user", "action": "add", "identifier": "alice",
//    "info": {"git": "Alice <a@example.org>", "email": "a@example.org"},
//    "username": "alice", "password_hash": "$y$..."}           -> {"uid": 3}
//   {"op": "user", "action": "update", "uid": 3 | "identifier": "alice",
//    "set_identifier": "al", "info": {"irc": "al", "email": ""},
//    "username": "", "password_hash": "$y$..."}                -> {"uid": 3}
//   {"op": "user", "action": "remove", "uid" | "identifier"}   -> {"uid": 3}
//   {"op": "user", "action": "show"[, "uid" | "match": "..."]} -> {"users": [
//      {"uid", "identifier", "username", "password": bool, "info": {...}}]}
//
// Errors: {"error": "message", "code": "invalid_argument" | "not_found" |
// ...}; `kiln user` exits 2 for the first two (the user's input was wrong).

#include "store/store.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace kiln::master {

// The attribute types --info accepts: the VCS whose `who` formats Buildbot
// parses (git, svn, hg, cvs, darcs, bzr, p4), "author" (what Kiln records
// for a change's author until a change carries its VCS), email, irc and
// full_name.
const std::vector<std::string>& user_attribute_types();

// Answers through `reply`, exactly once, from the store's completion (on
// the loop when the store posts there; on the store thread when it has no
// loop).
void handle_user_request(store::Store& store, const nlohmann::json& request,
                         std::function<void(nlohmann::json)> reply);

// "invalid_argument", "not_found", ... for the "code" of an error answer.
std::string status_code_name(store::StatusCode code);

}  // namespace kiln::master
