#pragma once
// How a step's result moves its build's result, with Buildbot's flags and
// defaults (BuildStep: flunkOnFailure and warnOnWarnings on, the rest off).

#include <nlohmann/json.hpp>

namespace kiln::engine {

struct StepResultFlags {
  bool halt_on_failure = false;
  bool flunk_on_failure = true;
  bool warn_on_failure = false;
  bool flunk_on_warnings = false;
  bool warn_on_warnings = true;

  // From a step's core-owned keys (unset keys keep the defaults above).
  static StepResultFlags from_common(const nlohmann::json& common);
};

struct BuildProgress {
  int results = 0;  // the build's result so far
  bool halt = false;  // later steps run only when always_run
};

// The worse of two results in Buildbot's order: SKIPPED < SUCCESS <
// WARNINGS < FAILURE < EXCEPTION < RETRY < CANCELLED.
int worst_result(int a, int b);

// Folds one step's result into the build's.
BuildProgress apply_step_result(BuildProgress build, int step_result, const StepResultFlags& flags);

// "success", "warnings", ... for messages.
const char* result_name(int result);

}  // namespace kiln::engine
