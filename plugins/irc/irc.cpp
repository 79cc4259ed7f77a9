// kiln-irc: Buildbot's IRC bot as reporter type `irc`. This file owns the
// settings and their checks, the connection's life (started in start(),
// ended in stop()), the contacts and their notify events, and turning the
// engine's build events into announcements; the commands are in
// irc_commands.cpp.

#include "irc_bot.h"

#include <kiln/sdk/plugin.hpp>

#include <algorithm>
#include <random>

namespace kiln::irc {
namespace {

constexpr const char* kSchema = R"json({"type": "object", "additionalProperties": false,
  "required": ["host", "nick"], "properties": {
    "host": {"type": "string", "minLength": 1, "description": "The IRC server"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 6667,
      "description": "Its port (6697 is usual for TLS)"},
    "nick": {"type": "string", "minLength": 1, "maxLength": 30, "description": "The bot's nickname"},
    "password": {"type": ["string", "null"], "default": null,
      "description": "Sent to NickServ (IDENTIFY) to claim the nick; use ${env:...} or ${file:...}"},
    "server_password": {"type": ["string", "null"], "default": null,
      "description": "The server's connection password (PASS), if it has one"},
    "realname": {"type": "string", "default": "Kiln IRC bot", "description": "The bot's real name field"},
    "channels": {"type": "array", "default": [],
      "items": {"type": ["string", "object"], "additionalProperties": false, "required": ["channel"],
        "properties": {"channel": {"type": "string"}, "password": {"type": "string"}}},
      "description": "Channels to join: \"#name\", or {channel: \"#name\", password: KEY}"},
    "tls": {"type": "boolean", "default": false, "description": "Speak TLS to the server (Buildbot's useSSL)"},
    "tls_verify": {"type": "boolean", "default": true, "description": "Check the server's certificate and name"},
    "tls_ca_file": {"type": ["string", "null"], "default": null,
      "description": "PEM file of the certificates to trust instead of the system's (relative to the master folder)"},
    "notify_events": {"type": "array", "items": {"type": "string"}, "default": [],
      "description": "Events announced on the configured channels: started, finished, success, warnings, failure, exception, xToY (e.g. successToFailure)"},
    "notice_on_channel": {"type": "boolean", "default": false,
      "description": "Speak to channels with NOTICE instead of PRIVMSG"},
    "use_revisions": {"type": "boolean", "default": false,
      "description": "Name builds by the revisions they contain instead of their numbers"},
    "builders": {"type": "array", "items": {"type": "string"}, "default": [],
      "description": "Only these builders (empty: every builder). Use builders or tags, not both"},
    "tags": {"type": "array", "items": {"type": "string"}, "default": [],
      "description": "Only builders with one of these tags (Buildbot's categories)"},
    "allow_force": {"type": "boolean", "default": false,
      "description": "Offer the force build and stop build commands"},
    "authz_policy": {"type": ["string", "null"], "default": null,
      "description": "Name of an authz_check policy asked whether a nick may force or stop a build"},
    "lost_delay": {"type": ["number", "null"], "minimum": 0, "maximum": 3600, "default": null,
      "description": "Seconds before reconnecting after a lost connection (default: random, 1 to 5)"},
    "failed_delay": {"type": ["number", "null"], "minimum": 0, "maximum": 3600, "default": null,
      "description": "Seconds before retrying a connection that failed (default: random, 45 to 60)"},
    "timeout": {"type": "number", "minimum": 0.1, "maximum": 3600, "default": 60,
      "description": "Seconds to wait for the server's welcome, and of silence before the bot pings it"}
  }})json";

// Buildbot's ThrottledClientFactory picks its delays at random once, so
// that several bots losing one server do not all come back together.
double delay_or_random(const json& value, int low, int high) {
  if (value.is_number()) return value.get<double>();
  std::random_device seed;
  std::mt19937 random(seed());
  return std::uniform_int_distribution<int>(low, high)(random);
}

std::pair<std::string, std::string> channel_entry(const json& c) {
  if (c.is_string()) return {c.get<std::string>(), ""};
  return {c.value("channel", ""), c.value("password", "")};
}

bool valid_nick(const std::string& nick) {
  if (nick.empty() || std::isdigit(static_cast<unsigned char>(nick[0])) || nick[0] == '-') return false;
  return std::all_of(nick.begin(), nick.end(), [](unsigned char c) {
    return std::isalnum(c) || std::string_view("-_[]\\`^{}|").find(static_cast<char>(c)) != std::string_view::npos;
  });
}

std::string capitalised(std::string word) {
  if (!word.empty()) word[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(word[0])));
  return word;
}

}  // namespace

const std::vector<std::string>& result_events() {
  static const std::vector<std::string> kResults = {"success", "warnings", "failure", "exception"};
  return kResults;
}

bool is_notify_event(const std::string& event) {
  if (event == "started" || event == "finished") return true;
  const auto& results = result_events();
  if (std::find(results.begin(), results.end(), event) != results.end()) return true;
  const size_t to = event.find("To");
  if (to == std::string::npos) return false;
  const std::string from = event.substr(0, to);
  const std::string into = event.substr(to + 2);
  return std::find(results.begin(), results.end(), from) != results.end() &&
         std::any_of(results.begin(), results.end(), [&](const std::string& r) { return capitalised(r) == into; });
}

IrcBot::IrcBot(sdk::Context ctx, const json& config) : Reporter(std::move(ctx), config), config_(this->config()) {
  filter_ = sdk::NotifierOptions::from_config(config_);
  settings_.host = config_.at("host").get<std::string>();
  settings_.port = static_cast<uint16_t>(config_.value("port", 6667));
  settings_.nick = config_.at("nick").get<std::string>();
  settings_.tls = config_.value("tls", false);
  settings_.tls_verify = config_.value("tls_verify", true);
  if (config_.value("server_password", json()).is_string()) settings_.server_password = config_["server_password"];
  settings_.realname = config_.value("realname", std::string("Kiln IRC bot"));
  settings_.lost_delay_s = delay_or_random(config_.value("lost_delay", json()), 1, 5);
  settings_.failed_delay_s = delay_or_random(config_.value("failed_delay", json()), 45, 60);
  settings_.timeout_s = config_.value("timeout", 60.0);
  if (config_.value("password", json()).is_string()) nickserv_password_ = config_["password"];
  for (const auto& c : config_.value("channels", json::array())) configured_channels_.push_back(channel_entry(c));
  for (const auto& e : config_.value("notify_events", json::array())) default_events_.push_back(e.get<std::string>());
  notice_on_channel_ = config_.value("notice_on_channel", false);
  use_revisions_ = config_.value("use_revisions", false);
  allow_force_ = config_.value("allow_force", false);
  if (config_.value("authz_policy", json()).is_string()) authz_policy_ = config_["authz_policy"];
}

IrcBot::~IrcBot() { stop(); }

sdk::Status IrcBot::validate(const json& c) {
  if (!c.value("builders", json::array()).empty() && !c.value("tags", json::array()).empty()) {
    return {KILN_ERR_INVALID_CONFIG, "give builders or tags, not both"};
  }
  const std::string nick = c.value("nick", "");
  if (!valid_nick(nick)) {
    return {KILN_ERR_INVALID_CONFIG, "nick: '" + nick +
                                         "' is not an IRC nickname (letters, digits and -_[]\\`^{}|, not starting with a digit or '-')"};
  }
  const json channels = c.value("channels", json::array());
  for (size_t i = 0; i < channels.size(); ++i) {
    auto [name, key] = channel_entry(channels[i]);
    if (!is_channel_name(name)) {
      return {KILN_ERR_INVALID_CONFIG, "channels[" + std::to_string(i) + "]: '" + name +
                                           "' is not a channel name (it starts with '#' or '&' and has no spaces or commas)"};
    }
    if (key.find_first_of(" ,\r\n") != std::string::npos) {
      return {KILN_ERR_INVALID_CONFIG, "channels[" + std::to_string(i) + "].password: a channel key has no spaces or commas"};
    }
  }
  const json events = c.value("notify_events", json::array());
  for (size_t i = 0; i < events.size(); ++i) {
    if (!is_notify_event(events[i].get<std::string>())) {
      return {KILN_ERR_INVALID_CONFIG,
              "notify_events[" + std::to_string(i) + "]: unknown event '" + events[i].get<std::string>() +
                  "' (started, finished, success, warnings, failure, exception, or xToY such as successToFailure)"};
    }
  }
  if (channels.empty() && !events.empty()) {
    return {KILN_ERR_INVALID_CONFIG, "notify_events are announced on the configured channels, and channels is empty"};
  }
  if (c.value("authz_policy", json()).is_string() && !c.value("allow_force", false)) {
    return {KILN_ERR_INVALID_CONFIG, "authz_policy is set but allow_force is false: there is nothing to authorize"};
  }
  return {};
}

sdk::Status IrcBot::start() {
  auto info = context().info();
  std::string master_dir;
  if (info.ok()) {
    master_dir = info->value("master_dir", "");
    master_url_ = info->value("master_url", "");
  }
  if (config_.value("tls_ca_file", json()).is_string()) {
    settings_.tls_ca_file = config_["tls_ca_file"].get<std::string>();
    if (!settings_.tls_ca_file.empty() && settings_.tls_ca_file.front() != '/' && !master_dir.empty()) {
      settings_.tls_ca_file = master_dir + "/" + settings_.tls_ca_file;
    }
  }
  if (!authz_policy_.empty()) {
    auto probe = context().call_policy(authz_policy_, json::object());
    if (probe.status().code() == KILN_ERR_NOT_FOUND) {
      return {KILN_ERR_INVALID_CONFIG, "authz_policy: no policy named '" + authz_policy_ + "'"};
    }
  }
  for (const auto& [name, key] : configured_channels_) {
    channels_[irc_lower(name)] = key;
    Contact& c = contact(name);
    c.events.insert(default_events_.begin(), default_events_.end());
  }
  context().state_get("irc", [this, alive = std::weak_ptr<bool>(alive_)](sdk::Result<json> saved) {
    if (!alive.lock()) return;
    if (saved.ok()) restore_state(*saved);
    state_restored_ = true;
    if (state_dirty_) save_state();
  });
  auto started = context().subscribe("builds/+/new", [this](std::string_view, const json& e) { on_build_started(e); });
  if (!started.ok()) return started.status();
  auto finished = context().subscribe("builds/+/finished", [this](std::string_view, const json& e) {
    on_build_finished(e.value("buildid", int64_t{0}));
  });
  if (!finished.ok()) return finished.status();

  // The connection's thread posts each event to the loop; `alive_` drops
  // those that arrive after stop().
  sdk::Context ctx = context();
  std::weak_ptr<bool> alive = alive_;
  IrcHandler handler;
  handler.registered = [this, ctx, alive](const std::string& nick) {
    ctx.post([this, alive, nick] {
      if (alive.lock()) on_registered(nick);
    });
  };
  handler.message = [this, ctx, alive](const IrcMessage& m) {
    ctx.post([this, alive, m] {
      if (alive.lock()) on_message(m);
    });
  };
  handler.disconnected = [this, ctx, alive](const std::string& why, double retry_in_s) {
    ctx.post([this, alive, why, retry_in_s] {
      if (!alive.lock()) return;
      connected_ = false;
      context().warn("IRC " + settings_.host + ":" + std::to_string(settings_.port) + ": " + why +
                     "; reconnecting in " + std::to_string(retry_in_s).substr(0, std::to_string(retry_in_s).find('.') + 2) + " s");
    });
  };
  connection_ = std::make_unique<IrcConnection>(settings_, std::move(handler));
  return {};
}

void IrcBot::stop() {
  alive_ = std::make_shared<bool>(true);  // callbacks holding the old flag are dropped
  connection_.reset();
  connected_ = false;
}

Contact& IrcBot::contact(const std::string& name) {
  const std::string key = irc_lower(name);
  auto it = contacts_.find(key);
  if (it == contacts_.end()) {
    Contact c;
    c.name = name;
    c.channel = is_channel_name(name);
    it = contacts_.emplace(key, std::move(c)).first;
  }
  return it->second;
}

void IrcBot::restore_state(const json& saved) {
  if (!saved.is_object()) return;
  size_t contacts = 0;
  const json contacts_saved = saved.value("contacts", json::object());
  for (const auto& [key, entry] : contacts_saved.items()) {
    if (!entry.is_object() || !entry.value("name", json()).is_string()) continue;
    Contact& c = contact(entry["name"].get<std::string>());
    if (c.events_chosen) continue;  // changed again since this start
    c.events.clear();
    for (const auto& e : entry.value("events", json::array())) {
      if (e.is_string() && is_notify_event(e.get<std::string>())) c.events.insert(e.get<std::string>());
    }
    c.events_chosen = true;
    ++contacts;
  }
  size_t channels = 0;
  const json joined_saved = saved.value("joined", json::object());
  for (const auto& [key, entry] : joined_saved.items()) {
    const std::string name = entry.value("name", "");
    if (!is_channel_name(name) || channels_.count(irc_lower(name))) continue;
    const std::string channel_key = entry.value("key", "");
    channels_[irc_lower(name)] = channel_key;
    joined_by_command_[irc_lower(name)] = {name, channel_key};
    contact(name);
    if (connection_ && connected_) connection_->send("JOIN " + name + (channel_key.empty() ? "" : " " + channel_key));
    ++channels;
  }
  if (contacts + channels > 0) {
    context().info("restored the notify events of " + std::to_string(contacts) + (contacts == 1 ? " contact" : " contacts") +
                   " and " + std::to_string(channels) + (channels == 1 ? " channel" : " channels") +
                   " joined by command from the previous run");
  }
}

void IrcBot::save_state() {
  if (!state_restored_) {
    state_dirty_ = true;  // saved once what the previous run left is in
    return;
  }
  state_dirty_ = false;
  json contacts = json::object();
  for (const auto& [key, c] : contacts_) {
    if (c.events_chosen) contacts[key] = {{"name", c.name}, {"events", std::vector<std::string>(c.events.begin(), c.events.end())}};
  }
  json joined = json::object();
  for (const auto& [key, entry] : joined_by_command_) joined[key] = {{"name", entry.first}, {"key", entry.second}};
  context().state_put("irc", {{"contacts", std::move(contacts)}, {"joined", std::move(joined)}});
}

void IrcBot::on_registered(const std::string& nick) {
  nick_ = nick;
  connected_ = true;
  context().info("connected to IRC " + settings_.host + ":" + std::to_string(settings_.port) + " as " + nick);
  if (!nickserv_password_.empty()) connection_->send("PRIVMSG NickServ :IDENTIFY " + nickserv_password_);
  for (const auto& [name, key] : channels_) {
    connection_->send("JOIN " + contact(name).name + (key.empty() ? "" : " " + key));
  }
}

void IrcBot::on_message(const IrcMessage& m) {
  if (!connection_) return;
  if (m.command == "PRIVMSG" && m.params.size() >= 2) {
    on_private_or_channel(m.nick(), m.params[0], m.params[1]);
  } else if (m.command == "KICK" && m.params.size() >= 2 && irc_equal(m.params[1], nick_)) {
    context().warn("kicked from " + m.params[0] + " by " + m.nick() + (m.params.size() > 2 ? ": " + m.params[2] : ""));
    channels_.erase(irc_lower(m.params[0]));
  } else if (m.command == "475" || m.command == "471" || m.command == "473" || m.command == "474") {
    // Bad channel key, full, invite only, banned.
    context().warn("cannot join " + m.param(1) + ": " + m.param(2));
  } else if (m.command == "ERROR") {
    context().warn("IRC server says: " + m.param(0));
  }
}

void IrcBot::on_private_or_channel(const std::string& from, const std::string& target, const std::string& text) {
  if (!text.empty() && text.front() == '\x01') return;  // CTCP (ACTION, VERSION, ...)
  if (irc_equal(target, nick_)) {
    command(from, from, text);
    return;
  }
  // In a channel, only what is addressed to us: "nick: command" or "nick, command".
  if (text.size() <= nick_.size() || !irc_equal(text.substr(0, nick_.size()), nick_)) return;
  const char sep = text[nick_.size()];
  if (sep != ':' && sep != ',') return;
  command(target, from, text.substr(nick_.size() + 1));
}

void IrcBot::say(const std::string& to, const std::string& text) { say(contact(to), text); }

void IrcBot::say(const Contact& to, const std::string& text) {
  if (!connection_ || !connected_) return;
  const std::string verb = to.channel && notice_on_channel_ ? "NOTICE " : "PRIVMSG ";
  // 512 bytes a line, less the prefix the server adds for the receivers.
  const size_t room = 400 - std::min<size_t>(to.name.size() + nick_.size(), 200);
  for (const auto& line : irc_lines(text, room)) connection_->send(verb + to.name + " :" + line);
}

// --- engine events ---------------------------------------------------------

void IrcBot::with_builder_of(int64_t builderid, std::function<void(const json&)> then) {
  if (auto it = builders_by_id_.find(builderid); it != builders_by_id_.end()) return then(it->second);
  context().data_get("builders/" + std::to_string(builderid), nullptr,
                     [this, builderid, then = std::move(then)](sdk::Result<json> builder) {
                       if (!builder.ok()) return;
                       builders_by_id_[builderid] = *builder;
                       then(*builder);
                     });
}

std::string IrcBot::revisions_of(const json& changes, const json& sourcestamps) const {
  std::vector<std::string> revisions;
  auto add = [&](const json& r) {
    if (!r.is_string() || r.get<std::string>().empty()) return;
    std::string rev = r.get<std::string>();
    // Hashes are shortened (Buildbot: to 7), so several fit on a line.
    if (rev.size() >= 40 && rev.find_first_not_of("0123456789abcdef") == std::string::npos) rev.resize(7);
    if (std::find(revisions.begin(), revisions.end(), rev) == revisions.end()) revisions.push_back(rev);
  };
  for (const auto& c : changes) add(c.value("revision", json()));
  if (revisions.empty()) {
    for (const auto& ss : sourcestamps) add(ss.value("revision", json()));
  }
  std::string out;
  for (const auto& r : revisions) out += (out.empty() ? "" : ", ") + r;
  return out;
}

std::string IrcBot::build_words(const json& report, const std::string& builder) const {
  if (use_revisions_) {
    return "build containing revision(s) [" +
           revisions_of(report.value("changes", json::array()), report.value("sourcestamps", json::array())) +
           "] on " + builder;
  }
  return "build #" + report.value("number", json(0)).dump() + " of " + builder;
}

void IrcBot::on_build_started(const json& event) {
  const bool anyone = std::any_of(contacts_.begin(), contacts_.end(),
                                  [](const auto& c) { return c.second.events.count("started") > 0; });
  if (!anyone || !connected_) return;
  const int64_t buildid = event.value("buildid", int64_t{0});
  with_builder_of(event.value("builderid", int64_t{0}), [this, event, buildid](const json& builder) {
    const std::string name = builder.value("name", "");
    if (!filter_.selects(name, builder.value("tags", json::array()))) return;
    context().data_get("builds/" + std::to_string(buildid) + "/changes", nullptr,
                       [this, event, name](sdk::Result<json> changes) {
                         json list = changes.ok() ? *changes : json::array();
                         std::string text;
                         if (use_revisions_) {
                           text = build_words({{"changes", list}}, name) + " started";
                         } else {
                           text = build_words(event, name) + " started";
                           const std::string revs = revisions_of(list, json::array());
                           if (!revs.empty()) text += ", including [" + revs + "]";
                         }
                         for (const auto& [key, c] : contacts_) {
                           if (c.events.count("started")) say(c, text);
                         }
                       });
  });
}

std::string IrcBot::finished_text(const json& report) const {
  const std::string result = report.value("result", "unknown");
  std::string text = build_words(report, report.value("builder", "")) + " is complete: " + capitalised(result) +
                     " [" + report.value("state_string", "") + "]";
  if (!master_url_.empty()) text += "  Build details are at " + report.value("build_url", "");
  return text;
}

void IrcBot::on_build_finished(int64_t buildid) {
  sdk::notifier::BuildReader::Request request;
  request.buildid = buildid;
  request.log_lines = 0;
  request.master_url = master_url_;
  sdk::notifier::BuildReader::read(context(), request, [this, buildid](sdk::Result<json> read) {
    if (!read.ok()) {
      context().warn("cannot announce build " + std::to_string(buildid) + ": " + read.status().message());
      return;
    }
    const json& report = *read;
    const std::string text = finished_text(report);
    std::set<std::string> told;
    // Watchers and those who forced the build hear of it whatever the filter.
    auto tell_once = [&](const std::string& key, const std::string& what) {
      if (told.insert(key).second) say(contacts_.count(key) ? contacts_.at(key).name : key, what);
    };
    if (auto it = watchers_.find(buildid); it != watchers_.end()) {
      for (const auto& key : it->second) tell_once(key, "Hey! " + text);
      watchers_.erase(it);
    }
    const int64_t bsid = report.value("bsid", int64_t{0});
    if (auto it = forced_.find(bsid); it != forced_.end()) {
      for (const auto& key : it->second) tell_once(key, "Hey! " + text);
      forced_.erase(it);
    }
    if (!filter_.selects(report.value("builder", ""), report.value("tags", json::array()))) return;
    const std::string result = report.value("result", "");
    std::string transition;
    if (report.contains("previous_result") && report["previous_result"].is_string()) {
      transition = report["previous_result"].get<std::string>() + "To" + capitalised(result);
    }
    for (const auto& [key, c] : contacts_) {
      const bool wants = c.events.count("finished") || c.events.count(result) ||
                         (!transition.empty() && c.events.count(transition));
      if (wants) tell_once(key, text);
    }
  });
}

std::string IrcBot::age(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 120) return std::to_string(seconds) + " seconds ago";
  if (seconds < 2 * 3600) return std::to_string(seconds / 60) + " minutes ago";
  if (seconds < 2 * 86400) return std::to_string(seconds / 3600) + " hours ago";
  return std::to_string(seconds / 86400) + " days ago";
}

}  // namespace kiln::irc

KILN_PLUGIN("kiln-irc", "0.1.0", "An IRC bot that announces builds and takes commands (Buildbot's words.IRC)", "MIT",
            kiln::sdk::component<kiln::irc::IrcBot>(KILN_KIND_REPORTER, "irc", "0.1.0",
                                                    "Announces builds on IRC and answers commands", kiln::irc::kSchema));
