#pragma once
// The IRC bot reporter (type `irc`, Buildbot's words.IRC): its settings,
// the people and channels it talks to ("contacts") with the events each
// wants to hear about, and the commands they can give. The connection's
// thread hands every line to the loop; everything here runs on the loop
// thread and never blocks it (the data API and the control calls answer
// asynchronously).

#include "irc_connection.h"

#include <kiln/sdk/components.hpp>
#include <kiln/sdk/notifier.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace kiln::irc {

namespace sdk = kiln::sdk;
using nlohmann::json;

// The events `notify` knows: started, finished, success, warnings, failure,
// exception and the xToY transitions (x and Y one of success, warnings,
// failure, exception; Y capitalised).
bool is_notify_event(const std::string& event);
const std::vector<std::string>& result_events();

// Where a reply goes: a channel, or a person (private messages).
struct Contact {
  std::string name;  // "#chan" or a nick
  bool channel = false;
  std::set<std::string> events;
  bool events_chosen = false;  // set by `notify on|off`, kept in the plugin's state
};

class IrcBot : public sdk::Reporter {
 public:
  IrcBot(sdk::Context ctx, const json& config);
  ~IrcBot() override;

  static sdk::Status validate(const json& config);
  sdk::Status start() override;
  void stop() override;

 private:
  // Connection events, on the loop thread.
  void on_registered(const std::string& nick);
  void on_message(const IrcMessage& m);
  void on_private_or_channel(const std::string& from, const std::string& target, const std::string& text);

  // Saying things.
  void say(const Contact& to, const std::string& text);
  void say(const std::string& contact, const std::string& text);
  Contact& contact(const std::string& name);

  // The plugin's state: the events contacts chose with `notify` and the
  // channels joined with `join`, so a restart keeps both (irc.cpp).
  void restore_state(const json& saved);
  void save_state();

  // Commands (irc_commands.cpp). `to` is the contact the reply goes to,
  // `who` the nick that asked.
  void command(const std::string& to, const std::string& who, const std::string& text);
  void command_list(const std::string& to, const std::vector<std::string>& args);
  void command_status(const std::string& to, const std::vector<std::string>& args);
  void command_last(const std::string& to, const std::vector<std::string>& args);
  void command_watch(const std::string& to, const std::vector<std::string>& args);
  void command_join(const std::string& to, const std::vector<std::string>& args);
  void command_leave(const std::string& to, const std::vector<std::string>& args);
  void command_notify(const std::string& to, const std::vector<std::string>& args);
  void command_help(const std::string& to, const std::vector<std::string>& args);
  void command_force(const std::string& to, const std::string& who, const std::vector<std::string>& args);
  void command_stop(const std::string& to, const std::string& who, const std::vector<std::string>& args);
  std::string usage(const std::string& command) const;
  std::vector<std::string> command_names() const;

  // The builders this bot speaks for (the builders/tags filter), sorted.
  void with_builders(std::function<void(std::vector<json>)> then);
  // One of them by name, or a reply saying there is none.
  void with_builder(const std::string& to, const std::string& name, std::function<void(json)> then);
  void describe_status(const json& builder, std::function<void(std::string)> then);
  void describe_last(const json& builder, std::function<void(std::string)> then);
  // `status` and `last`: one builder, or all of them (no argument, "all").
  using Describe = void (IrcBot::*)(const json& builder, std::function<void(std::string)> then);
  void describe_builders(const std::string& to, const std::vector<std::string>& args, Describe describe);
  void running_builds(const json& builder, std::function<void(std::vector<json>)> then);
  // Whether the authz_policy (if any) lets `who` do `action` on `builder`.
  bool allowed(const std::string& who, const std::string& action, const std::string& builder);

  // Engine events.
  void on_build_started(const json& event);
  void on_build_finished(int64_t buildid);
  void with_builder_of(int64_t builderid, std::function<void(const json&)> then);
  std::string build_words(const json& report, const std::string& builder) const;
  std::string revisions_of(const json& changes, const json& sourcestamps) const;
  std::string finished_text(const json& report) const;
  static std::string age(int64_t seconds);

  json config_;
  sdk::NotifierOptions filter_;
  IrcSettings settings_;
  std::vector<std::pair<std::string, std::string>> configured_channels_;  // name, key
  std::vector<std::string> default_events_;
  std::string nickserv_password_;
  bool notice_on_channel_ = false;
  bool use_revisions_ = false;
  bool allow_force_ = false;
  std::string authz_policy_;
  std::string master_url_;

  std::string nick_;
  bool connected_ = false;
  std::map<std::string, std::string> channels_;  // joined or to join (lower-case name -> key)
  std::map<std::string, std::pair<std::string, std::string>> joined_by_command_;  // lower-case -> name, key
  bool state_restored_ = false;
  bool state_dirty_ = false;
  std::map<std::string, Contact> contacts_;      // lower-case name -> contact
  std::map<int64_t, std::set<std::string>> watchers_;  // buildid -> contacts
  std::map<int64_t, std::set<std::string>> forced_;    // bsid -> contacts that forced it
  std::map<int64_t, json> builders_by_id_;
  std::unique_ptr<IrcConnection> connection_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace kiln::irc
