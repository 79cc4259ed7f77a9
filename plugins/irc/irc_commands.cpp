// The IRC bot's commands (Buildbot 0.8.5's words.py IRCContact): parsing
// the words, asking the data API and the control calls, and the replies,
// including the helpful ones for unknown builders and missing arguments.

#include "irc_bot.h"

#include <algorithm>
#include <sstream>

namespace kiln::irc {
namespace {

std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string joined(const std::vector<std::string>& words, size_t from = 0, const char* sep = " ") {
  std::string out;
  for (size_t i = from; i < words.size(); ++i) out += (i > from ? sep : "") + words[i];
  return out;
}

struct CommandHelp {
  const char* name;
  const char* usage;
  bool needs_force;
};

constexpr CommandHelp kCommands[] = {
    {"list", "list builders - List the configured builders", false},
    {"status", "status [BUILDER|all] - What a builder is doing now (all builders without an argument)", false},
    {"last", "last [BUILDER|all] - The result of a builder's last build", false},
    {"watch", "watch BUILDER - Announce the results of the builds running now on BUILDER when they finish", false},
    {"join", "join CHANNEL [KEY] - Join a channel", false},
    {"leave", "leave CHANNEL - Leave a channel", false},
    {"notify", "notify on|off|list [EVENT ...] - Announce events here: started, finished, success, warnings, "
               "failure, exception, or xToY such as successToFailure",
     false},
    {"help", "help [COMMAND] - Describe a command ('help commands' lists them)", false},
    {"source", "source - Where the master's pages and the bot's source are", false},
    {"version", "version - The bot's and the plugin ABI's version", false},
    {"force", "force build [--branch=BRANCH] [--revision=REVISION] [--props=NAME=VALUE,...] BUILDER REASON - Start a build",
     true},
    {"stop", "stop build BUILDER REASON - Stop the builds running on BUILDER", true},
};

}  // namespace

std::vector<std::string> IrcBot::command_names() const {
  std::vector<std::string> out;
  for (const auto& c : kCommands) {
    if (!c.needs_force || allow_force_) out.push_back(c.name);
  }
  return out;
}

std::string IrcBot::usage(const std::string& command) const {
  for (const auto& c : kCommands) {
    if (command == c.name && (!c.needs_force || allow_force_)) return std::string("Usage: ") + c.usage;
  }
  return {};
}

void IrcBot::command(const std::string& to, const std::string& who, const std::string& text) {
  std::vector<std::string> words = words_of(text);
  if (words.empty()) return;
  std::string name = words[0];
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::vector<std::string> args(words.begin() + 1, words.end());
  context().debug("IRC command from " + who + " in " + to + ": " + text);
  if (name == "list") return command_list(to, args);
  if (name == "status") return command_status(to, args);
  if (name == "last") return command_last(to, args);
  if (name == "watch") return command_watch(to, args);
  if (name == "join") return command_join(to, args);
  if (name == "leave") return command_leave(to, args);
  if (name == "notify") return command_notify(to, args);
  if (name == "help") return command_help(to, args);
  if (name == "source") {
    return say(to, master_url_.empty() ? "This master has no URL configured (master.url in master.yaml)"
                                       : "My master is at " + master_url_);
  }
  if (name == "version") {
    return say(to, "kiln-irc 0.1.0 on the Kiln plugin ABI " + sdk::detail::abi_string(sdk::Host::abi_version()));
  }
  if (name == "force" || name == "stop") {
    if (!allow_force_) return say(to, "Sorry, this bot does not " + name + " builds (allow_force is off)");
    return name == "force" ? command_force(to, who, args) : command_stop(to, who, args);
  }
  say(to, "Unrecognized command '" + words[0] + "'; try 'help commands'");
}

void IrcBot::command_help(const std::string& to, const std::vector<std::string>& args) {
  if (args.empty()) {
    return say(to, "Get help on what? (try 'help COMMAND', or 'help commands' for the list)");
  }
  if (args[0] == "commands") return say(to, "Commands: " + joined(command_names(), 0, ", "));
  const std::string text = usage(args[0]);
  say(to, text.empty() ? "No such command '" + args[0] + "'; try 'help commands'" : text);
}

void IrcBot::with_builders(std::function<void(std::vector<json>)> then) {
  context().data_get("builders", nullptr, [this, then = std::move(then)](sdk::Result<json> builders) {
    std::vector<json> out;
    if (builders.ok()) {
      for (const auto& b : *builders) {
        if (filter_.selects(b.value("name", ""), b.value("tags", json::array()))) out.push_back(b);
        builders_by_id_[b.value("builderid", int64_t{0})] = b;
      }
    }
    std::sort(out.begin(), out.end(), [](const json& a, const json& b) { return a["name"] < b["name"]; });
    then(std::move(out));
  });
}

void IrcBot::with_builder(const std::string& to, const std::string& name, std::function<void(json)> then) {
  with_builders([this, to, name, then = std::move(then)](std::vector<json> builders) {
    for (auto& b : builders) {
      if (b.value("name", "") == name) return then(std::move(b));
    }
    std::string names;
    for (const auto& b : builders) names += (names.empty() ? "" : ", ") + b.value("name", "");
    say(to, "No such builder '" + name + "'" + (names.empty() ? std::string() : "; the builders are: " + names));
  });
}

void IrcBot::command_list(const std::string& to, const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "builders") return say(to, usage("list"));
  with_builders([this, to](std::vector<json> builders) {
    std::string names;
    for (const auto& b : builders) names += " " + b.value("name", "");
    say(to, builders.empty() ? "No builders are configured" : "Configured builders:" + names);
  });
}

void IrcBot::running_builds(const json& builder, std::function<void(std::vector<json>)> then) {
  context().data_get("builders/" + builder["builderid"].dump() + "/builds",
                     {{"filters", {{"complete", "eq", {false}}}}, {"order", {"number"}}},
                     [then = std::move(then)](sdk::Result<json> builds) {
                       std::vector<json> out;
                       if (builds.ok()) out.assign(builds->begin(), builds->end());
                       then(std::move(out));
                     });
}

void IrcBot::describe_last(const json& builder, std::function<void(std::string)> then) {
  const std::string name = builder.value("name", "");
  context().data_get("builders/" + builder["builderid"].dump() + "/builds",
                     {{"filters", {{"complete", "eq", {true}}}}, {"order", {"-number"}}, {"limit", 1}},
                     [this, name, then = std::move(then)](sdk::Result<json> builds) {
                       if (!builds.ok() || builds->empty()) return then("(no builds of " + name + " have finished)");
                       const json& b = (*builds)[0];
                       std::string text = "last build [" + name + " #" + b["number"].dump() + "]: " +
                                          sdk::notifier::result_name(b.value("results", -1));
                       auto now = context().now_ms();
                       if (now.ok() && b.value("complete_at", json()).is_number()) {
                         text += " (finished " +
                                 age(static_cast<int64_t>(*now / 1000) - b["complete_at"].get<int64_t>()) + ")";
                       }
                       then(text);
                     });
}

void IrcBot::describe_status(const json& builder, std::function<void(std::string)> then) {
  const std::string name = builder.value("name", "");
  running_builds(builder, [this, builder, name, then = std::move(then)](std::vector<json> running) {
    if (running.empty()) {
      return describe_last(builder, [name, then](std::string last) { then(name + ": idle, " + last); });
    }
    // The step each running build is in.
    auto words = std::make_shared<std::vector<std::string>>(running.size());
    auto left = std::make_shared<size_t>(running.size());
    for (size_t i = 0; i < running.size(); ++i) {
      const std::string number = running[i]["number"].dump();
      context().data_get("builds/" + running[i]["buildid"].dump() + "/steps", nullptr,
                         [words, left, i, number, name, then](sdk::Result<json> steps) {
                           std::string step;
                           if (steps.ok()) {
                             for (const auto& s : *steps) {
                               if (!s.value("complete", false) && s.value("started_at", json()).is_number()) {
                                 step = s.value("name", "");
                               }
                             }
                           }
                           (*words)[i] = "#" + number + (step.empty() ? "" : " [" + step + "]");
                           if (--*left == 0) then(name + ": building " + joined(*words, 0, ", "));
                         });
    }
  });
}

void IrcBot::describe_builders(const std::string& to, const std::vector<std::string>& args, Describe describe) {
  if (!args.empty() && args[0] != "all") {
    with_builder(to, args[0], [this, to, describe](json builder) {
      (this->*describe)(builder, [this, to](std::string line) { say(to, line); });
    });
    return;
  }
  with_builders([this, to, describe](std::vector<json> builders) {
    if (builders.empty()) return say(to, "No builders are configured");
    // One line per builder, in name order, once all are known.
    auto lines = std::make_shared<std::vector<std::string>>(builders.size());
    auto left = std::make_shared<size_t>(builders.size());
    for (size_t i = 0; i < builders.size(); ++i) {
      (this->*describe)(builders[i], [this, to, lines, left, i](std::string line) {
        (*lines)[i] = std::move(line);
        if (--*left == 0) {
          for (const auto& l : *lines) say(to, l);
        }
      });
    }
  });
}

void IrcBot::command_status(const std::string& to, const std::vector<std::string>& args) {
  describe_builders(to, args, &IrcBot::describe_status);
}

void IrcBot::command_last(const std::string& to, const std::vector<std::string>& args) {
  describe_builders(to, args, &IrcBot::describe_last);
}

void IrcBot::command_watch(const std::string& to, const std::vector<std::string>& args) {
  if (args.empty()) return say(to, usage("watch"));
  with_builder(to, args[0], [this, to](json builder) {
    const std::string name = builder.value("name", "");
    running_builds(builder, [this, to, name](std::vector<json> running) {
      if (running.empty()) return say(to, "There are no builds running on " + name + " right now");
      for (const auto& b : running) {
        watchers_[b["buildid"].get<int64_t>()].insert(irc_lower(to));
        say(to, "Watching build " + name + " #" + b["number"].dump() + " until it finishes...");
      }
    });
  });
}

void IrcBot::command_join(const std::string& to, const std::vector<std::string>& args) {
  if (args.empty()) return say(to, usage("join"));
  if (!is_channel_name(args[0])) return say(to, "'" + args[0] + "' is not a channel name (try #" + args[0] + ")");
  const std::string key = args.size() > 1 ? args[1] : "";
  const bool configured = std::any_of(configured_channels_.begin(), configured_channels_.end(),
                                     [&](const auto& c) { return irc_equal(c.first, args[0]); });
  channels_[irc_lower(args[0])] = key;
  contact(args[0]);
  if (!configured) {
    joined_by_command_[irc_lower(args[0])] = {args[0], key};
    save_state();
  }
  if (connection_) connection_->send("JOIN " + args[0] + (key.empty() ? "" : " " + key));
  say(to, "Joining " + args[0]);
}

void IrcBot::command_leave(const std::string& to, const std::vector<std::string>& args) {
  if (args.empty()) return say(to, usage("leave"));
  if (!channels_.erase(irc_lower(args[0]))) return say(to, "I am not in " + args[0]);
  if (joined_by_command_.erase(irc_lower(args[0]))) save_state();
  say(to, "Leaving " + args[0]);
  if (connection_) connection_->send("PART " + args[0] + " :asked to leave");
}

void IrcBot::command_notify(const std::string& to, const std::vector<std::string>& args) {
  Contact& c = contact(to);
  auto list = [&] {
    std::vector<std::string> events(c.events.begin(), c.events.end());
    say(to, events.empty() ? std::string("No events are being notified here")
                           : "The following events are being notified: " + joined(events, 0, ", "));
  };
  if (args.empty()) return say(to, usage("notify"));
  if (args[0] == "list") return list();
  if (args[0] != "on" && args[0] != "off") return say(to, "notify on, off or list, not '" + args[0] + "'; " + usage("notify"));
  if (args.size() < 2) return say(to, "Which events? " + usage("notify"));
  for (size_t i = 1; i < args.size(); ++i) {
    if (!is_notify_event(args[i])) {
      return say(to, "Unknown event '" + args[i] +
                         "'; the events are started, finished, success, warnings, failure, exception and xToY "
                         "(x and Y each one of success, warnings, failure, exception; e.g. successToFailure)");
    }
  }
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[0] == "on") {
      c.events.insert(args[i]);
    } else {
      c.events.erase(args[i]);
    }
  }
  c.events_chosen = true;
  save_state();
  list();
}

bool IrcBot::allowed(const std::string& who, const std::string& action, const std::string& builder) {
  if (authz_policy_.empty()) return true;
  json args = {{"user", {{"username", who}, {"email", ""}, {"groups", json::array()}}},
               {"action", action},
               {"path", "builders/" + builder + "/" + action}};
  auto answer = context().call_policy(authz_policy_, args);
  if (!answer.ok()) {
    context().warn("authz_policy '" + authz_policy_ + "': " + answer.status().message());
    return false;
  }
  return answer->is_boolean() && answer->get<bool>();
}

void IrcBot::command_force(const std::string& to, const std::string& who, const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "build") return say(to, usage("force"));
  std::string branch, revision;
  json properties = json::object();
  size_t i = 1;
  for (; i < args.size() && args[i].rfind("--", 0) == 0; ++i) {
    const std::string& a = args[i];
    const size_t eq = a.find('=');
    const std::string option = a.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : a.substr(eq + 1);
    if (eq == std::string::npos || value.empty()) return say(to, "Option " + option + " needs a value: " + option + "=...");
    if (option == "--branch") {
      branch = value;
    } else if (option == "--revision") {
      revision = value;
    } else if (option == "--props") {
      std::istringstream in(value);
      for (std::string pair; std::getline(in, pair, ',');) {
        const size_t peq = pair.find('=');
        if (peq == std::string::npos || peq == 0) {
          return say(to, "--props takes NAME=VALUE pairs separated by commas, not '" + pair + "'");
        }
        properties[pair.substr(0, peq)] = pair.substr(peq + 1);
      }
    } else {
      return say(to, "Unknown option " + option + "; " + usage("force"));
    }
  }
  if (i >= args.size()) return say(to, "Force which builder? " + usage("force"));
  const std::string builder_name = args[i];
  const std::string reason = joined(args, i + 1);
  if (reason.empty()) return say(to, "Give a reason after the builder: force build " + builder_name + " REASON");
  with_builder(to, builder_name, [=, this](json builder) mutable {
    const std::string name = builder.value("name", "");
    if (!allowed(who, "force", name)) return say(to, who + ": you may not force builds of " + name);
    properties["owner"] = who;
    properties["reason"] = reason;
    json request = {{"builders", {name}},
                    {"reason", "forced by IRC user " + who + " (in " + to + "): " + reason},
                    {"sourcestamps", {{{"codebase", ""},
                                       {"branch", branch.empty() ? json() : json(branch)},
                                       {"revision", revision.empty() ? json() : json(revision)}}}},
                    {"properties", properties}};
    sdk::Status issued = context().buildset_add(request, [this, to, name](sdk::Result<json> answer) {
      if (!answer.ok()) return say(to, "Cannot force a build of " + name + ": " + answer.status().message());
      forced_[answer->value("bsid", int64_t{0})].insert(irc_lower(to));
      say(to, "Force build of " + name + " requested; I'll give a shout when it finishes");
    });
    if (!issued.ok()) say(to, "Cannot force a build of " + name + ": " + issued.message());
  });
}

void IrcBot::command_stop(const std::string& to, const std::string& who, const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "build") return say(to, usage("stop"));
  if (args.size() < 2) return say(to, "Stop which builder? " + usage("stop"));
  const std::string reason = joined(args, 2);
  if (reason.empty()) return say(to, "Give a reason after the builder: stop build " + args[1] + " REASON");
  with_builder(to, args[1], [this, to, who, reason](json builder) {
    const std::string name = builder.value("name", "");
    if (!allowed(who, "stop", name)) return say(to, who + ": you may not stop builds of " + name);
    running_builds(builder, [this, to, who, reason, name](std::vector<json> running) {
      if (running.empty()) return say(to, "There are no builds running on " + name);
      for (const auto& b : running) {
        const std::string number = b["number"].dump();
        context().data_control("builds/" + b["buildid"].dump(), "stop",
                               {{"reason", "stopped by IRC user " + who + ": " + reason}},
                               [this, to, name, number](sdk::Result<json> answer) {
                                 say(to, answer.ok() ? "Build " + name + " #" + number + " interrupted"
                                                     : "Cannot stop " + name + " #" + number + ": " +
                                                           answer.status().message());
                               });
      }
    });
  });
}

}  // namespace kiln::irc
