#pragma once
// The master as the HTTP side sees it: the ABI's data_get, data_control
// change_add and policy_call, called on the HTTP thread and answered on it. web.cpp
// implements it by posting to the engine's loop and posting the answer
// back, so neither thread ever waits for the other.

#include "http_types.h"

#include <kiln/plugin_api.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace kiln::web {

struct Answer {
  kiln_status status = KILN_OK;
  nlohmann::json value;  // the result when status is KILN_OK
  std::string error;     // the reason otherwise
  bool ok() const { return status == KILN_OK; }
};
using AnswerFn = std::function<void(Answer)>;

class Backend {
 public:
  virtual ~Backend() = default;
  // A data-API read: path "builders/3/builds", query as data_get's.
  virtual void get(std::string path, nlohmann::json query, AnswerFn done) = 0;
  // A control action: path "builds/12", action "stop", args an object.
  virtual void control(std::string path, std::string action, nlohmann::json args,
                       AnswerFn done) = 0;
  // The ABI's change_add: answers {"changeid": N}.
  virtual void add_change(nlohmann::json change, AnswerFn done) = 0;
  // The ABI's policy_call of a named policy function (authz_check).
  virtual void policy(std::string name, nlohmann::json args, AnswerFn done) = 0;

  // Whole answers kept for reuse while the data has not changed (the read
  // cache of web.cpp): what changes with each data-API event, read before
  // asking; the answer kept for `key`, valid while that lasts. A backend
  // without a cache keeps nothing.
  virtual uint64_t data_version() const { return 0; }
  virtual std::optional<Response> kept_response(const std::string& /*key*/) { return std::nullopt; }
  virtual void keep_response(const std::string& /*key*/, uint64_t /*version*/, const Response& /*r*/) {}
};

}  // namespace kiln::web
