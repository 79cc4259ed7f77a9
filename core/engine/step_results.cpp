#include "engine/step_results.h"

#include <kiln/plugin_api.h>

namespace kiln::engine {

namespace {
int severity(int result) {
  switch (result) {
    case KILN_SKIPPED: return 0;
    case KILN_SUCCESS: return 1;
    case KILN_WARNINGS: return 2;
    case KILN_FAILURE: return 3;
    case KILN_EXCEPTION: return 4;
    case KILN_RETRY: return 5;
    case KILN_CANCELLED: return 6;
  }
  return 4;  // an unknown code counts as an exception
}
}  // namespace

StepResultFlags StepResultFlags::from_common(const nlohmann::json& common) {
  StepResultFlags f;
  auto read = [&](const char* key, bool& into) {
    if (common.contains(key) && common[key].is_boolean()) into = common[key].get<bool>();
  };
  read("halt_on_failure", f.halt_on_failure);
  read("flunk_on_failure", f.flunk_on_failure);
  read("warn_on_failure", f.warn_on_failure);
  read("flunk_on_warnings", f.flunk_on_warnings);
  read("warn_on_warnings", f.warn_on_warnings);
  return f;
}

int worst_result(int a, int b) { return severity(a) >= severity(b) ? a : b; }

BuildProgress apply_step_result(BuildProgress build, int step_result, const StepResultFlags& flags) {
  switch (step_result) {
    case KILN_SUCCESS:
    case KILN_SKIPPED:
      break;
    case KILN_WARNINGS:
      if (flags.flunk_on_warnings) {
        build.results = worst_result(build.results, KILN_FAILURE);
      } else if (flags.warn_on_warnings) {
        build.results = worst_result(build.results, KILN_WARNINGS);
      }
      break;
    case KILN_FAILURE:
      if (flags.flunk_on_failure) {
        build.results = worst_result(build.results, KILN_FAILURE);
      } else if (flags.warn_on_failure) {
        build.results = worst_result(build.results, KILN_WARNINGS);
      }
      if (flags.halt_on_failure) build.halt = true;
      break;
    default:  // EXCEPTION, RETRY, CANCELLED end the build
      build.results = worst_result(build.results, step_result);
      build.halt = true;
      break;
  }
  return build;
}

const char* result_name(int result) {
  static const char* const kNames[] = {"success", "warnings",  "failure", "skipped",
                                       "exception", "retry", "cancelled"};
  return result >= 0 && result <= 6 ? kNames[result] : "unknown";
}

}  // namespace kiln::engine
