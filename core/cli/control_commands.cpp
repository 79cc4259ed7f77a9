// The commands that talk to a running master through its control socket:
// `kiln data`, `force`, `sendchange` (or, with --master, to a sendchange
// listener over HTTP), `stop-build`, `cancel`, `rebuild`, `status`,
// `reconfig`. Each translates its arguments (control_client.h),
// sends one request and prints the answer; an {"error": ...} answer goes
// to stderr with exit status 1.

#include "cli/commands.h"
#include "cli/control_client.h"
#include "cli/listener_client.h"

#include <cstdio>
#include <ctime>
#include <functional>

namespace kiln::cli {

using nlohmann::json;

namespace {

bool is_error(const json& response) {
  return response.is_object() && response.contains("error") && response["error"].is_string();
}

// Translates, sends, and prints with `print` unless the master answered an
// error. Connection failures throw ControlError, which cli.cpp prints.
int run_call(const char* name, ControlCall (*translate)(const Args&), const Args& args,
             const std::function<int(const json& response, const json& request)>& print) {
  ControlCall call;
  try {
    call = translate(args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "kiln %s: %s (see `kiln %s --help`)\n", name, e.what(), name);
    return 2;
  }
  json response = control_request(call.master_dir, call.request);
  if (is_error(response)) {
    std::fprintf(stderr, "kiln %s: %s\n", name, response["error"].get<std::string>().c_str());
    return 1;
  }
  return print(response, call.request);
}

int print_line(const std::string& line) {
  std::printf("%s\n", line.c_str());
  return 0;
}

std::string message_or(const json& response, const std::string& fallback) {
  if (response.is_object() && response.contains("message") && response["message"].is_string()) {
    return response["message"].get<std::string>();
  }
  return fallback;
}

}  // namespace

int data_command(const Args& args) {
  return run_call("data", data_call, args, [](const json& response, const json&) {
    // A data_get answer is the data itself: an object or an array.
    return print_line(response.dump(2, ' ', false, json::error_handler_t::replace));
  });
}

int force_command(const Args& args) {
  return run_call("force", force_call, args, [](const json& response, const json&) {
    return print_line(format_buildset(response));
  });
}

int sendchange_command(const Args& args) {
  SendchangeCall call;
  try {
    call = sendchange_args(args);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "kiln sendchange: %s (see `kiln sendchange --help`)\n", e.what());
    return 2;
  }
  auto print = [](const json& response) {
    if (response.contains("ignored")) {
      return print_line("change not added: " + response.value("ignored", std::string()));
    }
    return print_line("change " + response.value("changeid", json()).dump() + " added");
  };
  if (call.master.empty()) {
    const json response = control_request(call.control.master_dir, call.control.request);
    if (is_error(response)) {
      std::fprintf(stderr, "kiln sendchange: %s\n", response["error"].get<std::string>().c_str());
      return 1;
    }
    return print(response);
  }
  // Buildbot's `sendchange --master`: to a listener over HTTP.
  HttpAnswer answer = post_change(call.master, call.auth, call.control.request["change"]);
  const json body = json::parse(answer.body, nullptr, false);
  if (answer.status == 200 && body.is_object()) return print(body);
  std::string why = body.is_object() && body.contains("error") && body["error"].is_string()
                        ? body["error"].get<std::string>()
                        : answer.body;
  std::fprintf(stderr, "kiln sendchange: %s refused the change (HTTP %u): %s\n",
               call.master.c_str(), answer.status, why.c_str());
  return 1;
}

int stop_build_command(const Args& args) {
  return run_call(
      "stop-build", stop_build_call, args, [](const json& response, const json& request) {
        return print_line(
            message_or(response, request["path"].get<std::string>() + ": stop requested"));
      });
}

int cancel_command(const Args& args) {
  return run_call("cancel", cancel_call, args, [](const json& response, const json& request) {
    return print_line(message_or(response, request["path"].get<std::string>() + " cancelled"));
  });
}

int rebuild_command(const Args& args) {
  return run_call("rebuild", rebuild_call, args, [](const json& response, const json&) {
    return print_line(format_buildset(response));
  });
}

int status_command(const Args& args) {
  return run_call("status", status_call, args, [](const json& response, const json&) {
    std::fputs(format_status(response, static_cast<int64_t>(std::time(nullptr))).c_str(), stdout);
    return 0;
  });
}

int poll_command(const Args& args) {
  return run_call("poll", poll_call, args, [](const json& response, const json&) {
    std::string names;
    for (const auto& n : response.value("polled", json::array())) {
      names += (names.empty() ? "" : ", ") + (n.is_string() ? n.get<std::string>() : n.dump());
    }
    std::printf("%s\n", names.empty() ? "no change source polls" : ("polling: " + names).c_str());
    const json errors = response.value("errors", json::object());
    for (const auto& [name, why] : errors.items()) {
      std::fprintf(stderr, "kiln poll: %s: %s\n", name.c_str(),
                   why.is_string() ? why.get<std::string>().c_str() : why.dump().c_str());
    }
    return errors.empty() ? 0 : 1;
  });
}

int reconfig_command(const Args& args) {
  return run_call("reconfig", reconfig_call, args, [](const json& response, const json&) {
    const json changes = response.value("changes", json::array());
    for (const auto& c : changes) {
      std::printf("%s\n", c.is_string() ? c.get<std::string>().c_str() : c.dump().c_str());
    }
    if (response.value("ok", true) == false) {
      for (const auto& e : response.value("errors", json::array())) {
        std::fprintf(stderr, "%s\n",
                     e.is_string() ? e.get<std::string>().c_str() : e.dump().c_str());
      }
      std::fprintf(stderr, changes.empty()
                               ? "kiln reconfig: configuration not accepted; the master keeps "
                                 "running the previous one.\n"
                               : "kiln reconfig: the new configuration is in place, but the "
                                 "components above failed; see DIR/kiln.log.\n");
      return 1;
    }
    if (changes.empty()) return print_line("reconfigured: nothing changed");
    return print_line("reconfigured");
  });
}

}  // namespace kiln::cli
