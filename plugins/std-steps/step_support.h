#pragma once
// What the standard steps share: the facts of one step run (the core-owned
// keys in ctx.info()["common"]), Buildbot's result names and ordering, its
// summary texts, and CommandStep, the base of the steps that run one worker
// command into a "stdio" log.

#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::std_steps {

namespace sdk = kiln::sdk;
using nlohmann::json;

// Buildbot's worst_status: SKIPPED < SUCCESS < WARNINGS < FAILURE <
// EXCEPTION < RETRY < CANCELLED.
kiln_result worst_status(kiln_result a, kiln_result b);
// Buildbot's statusToString: "success", "warnings", "failure", ...
const char* result_word(kiln_result result);
// "SUCCESS" -> KILN_SUCCESS, as decode_rc writes them.
std::optional<kiln_result> result_from_name(std::string_view name);

// The host's facts about one step run. Missing facts read as empty objects,
// so a host without context_info still runs steps with Buildbot's defaults.
struct RunInfo {
  json info = json::object();
  json common = json::object();

  static RunInfo read(const sdk::Context& ctx);

  // common.workdir, else `fallback`.
  std::string workdir(std::string_view fallback = "build") const;
  // common.env (an object; empty when absent).
  json env() const;
  // common.decode_rc ({"0": "SUCCESS", ...}; null or absent means {0:
  // SUCCESS}); codes not listed are FAILURE, as in Buildbot.
  kiln_result decode_rc(int rc) const;
  // common.description_done joined with spaces, when given.
  std::optional<std::string> description_done() const;
  // A key of common, or null.
  json common_value(std::string_view key) const;
};

// Buildbot's command_to_string: "'make test'", "'make -j4 ...'"; empty for
// an empty command.
std::string command_summary(const json& command);
// Buildbot's getResultSummary: "<base>" for SUCCESS, else "<base> (failure)",
// plus " (timed out)" when the worker timed the command out.
std::string result_summary(const std::string& base, kiln_result result, bool timed_out = false);

// A "mode" value: null, an integer, or an octal string ("0755"). Returns
// the integer (or null), or an invalid-config status naming `key`.
sdk::Result<json> file_mode(const json& value, std::string_view key);

// One worker command whose output goes to the step's "stdio" log (and to an
// observer), with the logfiles the command watches as logs of their own.
// An interrupt interrupts the command; its completion then reads CANCELLED.
class CommandStep : public sdk::Step {
 public:
  using Observer = std::function<void(kiln_stream stream, std::string_view data)>;
  using Completion = std::function<void(const sdk::CommandResult& result)>;

  CommandStep(sdk::Context ctx, const json& config);

  void interrupt(std::string_view reason) override;

 protected:
  const RunInfo& run_info() const { return info_; }
  bool interrupted() const { return interrupted_; }
  bool timed_out() const { return timed_out_; }

  // Adds the stdio log, then starts the command. `observer` sees stdout and
  // stderr (not header) bytes as they arrive; it may be empty.
  sdk::Status start_command(std::string_view name, const json& args, Observer observer,
                            Completion on_complete);
  // Header text in the stdio log (Buildbot's addHeader).
  void header(std::string_view text);

  // The result of a finished command before any step-specific judgement:
  // CANCELLED after an interrupt, RETRY when the worker was lost, FAILURE
  // when it could not run, else decode_rc of its exit code.
  kiln_result command_result(const sdk::CommandResult& result);

 private:
  void on_update(const json& update);

  RunInfo info_;
  uint64_t stdio_ = 0;
  std::optional<uint64_t> command_id_;
  std::map<std::string, uint64_t> logfiles_;
  bool interrupted_ = false;
  bool timed_out_ = false;
};

}  // namespace kiln::std_steps
