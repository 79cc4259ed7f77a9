// The IRC bot against a real IRC server (ngIRCd) on loopback, with test
// clients that join channels and talk to it, and an in-process master
// running real builds on a local worker: registration (NickServ, channel
// keys, a taken nick), the commands and their replies to bad input, the
// notify events, watch / force / stop, TLS, and reconnecting after the
// server drops the bot or is not there.

#include "irc/irc_support.h"
#include "plugin/plugin_test_support.h"
#include "schedulers/scheduler_master.h"
#include "util/certificate.h"
#include "util/config_errors.h"

#include <algorithm>
#include <string>
#include <vector>

namespace {

using kiln::irc::test::contains;
using kiln::irc::test::IrcClient;
using kiln::irc::test::IrcServer;
using kiln::irc::test::Line;
using kiln::irc::test::ServerOptions;
using kiln::testing::SchedulerMaster;
using kiln::testing::run_build_with_rc;
using kiln::testing::TempDir;
using nlohmann::json;

// Builder `unit` (tag fast) runs a shell step that waits for the file its
// `gate` property names, when it has one, and exits with its `rc`
// property; `other` always passes.
std::string master_yaml(const std::string& reporters) {
  return R"yaml(
master: {title: IRC Test, url: "http://ci.example.org/"}
workers: [{name: local-1, type: local, max_builds: 2}]
builders:
  - name: unit
    workers: [local-1]
    tags: [fast]
    collapse_requests: false
    steps:
      - {type: shell, name: test, command: ["sh", "-c", "g='%(prop:gate:-)s'; if [ -n \"$g\" ]; then while [ ! -f \"$g\" ]; do sleep 0.05; done; fi; exit %(prop:rc:-0)s"]}
  - name: other
    workers: [local-1]
    collapse_requests: false
    steps: [{type: shell, name: run, command: "true"}]
reporters:
)yaml" + reporters;
}

std::string bot(uint16_t port, const std::string& extra, const std::string& host = "127.0.0.1") {
  return "  - {type: irc, name: bot, host: " + host + ", port: " + std::to_string(port) +
         ", nick: kilnbot, lost_delay: 0.2, failed_delay: 0.3, timeout: 20" + (extra.empty() ? "" : ", " + extra) + "}\n";
}


// Whether build `number` (of the first builder to run) is in its step.
bool step_started(SchedulerMaster& m, size_t number) {
  json builds = m.get("builds");
  if (builds.size() < number) return false;
  json steps = m.get("builds/" + builds[number - 1]["buildid"].dump() + "/steps");
  return !steps.empty() && steps[0]["started_at"].is_number();
}

bool joined(const IrcClient& c, const std::string& nick, const std::string& channel, size_t from = 0) {
  return c.find([&](const Line& l) { return l.command == "JOIN" && l.from == nick && l.text() == channel; }, from)
      .has_value();
}

// Says `command` to the bot in `where` (a channel, or the bot itself for
// a private message) and waits for a reply that contains `part`; returns
// the reply.
std::string ask(SchedulerMaster& m, IrcClient& c, const std::string& where, const std::string& command,
                const std::string& part, const std::string& bot_nick = "kilnbot") {
  const size_t mark = c.mark();
  const bool in_channel = where[0] == '#';
  c.say(where, in_channel ? bot_nick + ": " + command : command);
  const std::string to = in_channel ? where : c.nick();
  std::optional<std::string> reply;
  const bool answered = m.run_until([&] { return (reply = c.heard(bot_nick, to, part, mark)).has_value(); });
  INFO(command << " -> " << c.transcript(mark));
  REQUIRE(answered);
  return *reply;
}

TEST_CASE("the bot identifies to NickServ, joins its channels with their keys and answers list, status, last, help, source and version") {
  IrcServer server(ServerOptions{{{"#secret", "sesame"}}, {}, {}});
  IrcClient nickserv(server.port(), "NickServ");
  IrcClient alice(server.port(), "alice");
  alice.join("#ci");
  alice.join("#secret", "sesame");
  SchedulerMaster m(master_yaml(bot(server.port(), R"(password: hunter2, channels: ["#ci", {channel: "#secret", password: sesame}])")));
  m.start();
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci") && joined(alice, "kilnbot", "#secret"); }));
  REQUIRE(m.run_until([&] { return !nickserv.said("kilnbot", "NickServ").empty(); }));
  CHECK(nickserv.said("kilnbot", "NickServ") == std::vector<std::string>{"IDENTIFY hunter2"});

  run_build_with_rc(m, "unit", 0);
  run_build_with_rc(m, "unit", 1);
  const size_t start = alice.mark();
  CHECK(ask(m, alice, "#ci", "list builders", "builders") == "Configured builders: other unit");
  CHECK(contains(ask(m, alice, "#ci", "status unit", "unit:"), "unit: idle, last build [unit #2]: failure (finished "));
  CHECK(ask(m, alice, "#secret", "last other", "other") == "(no builds of other have finished)");
  // Private messages get private answers; "status" alone covers all builders.
  ask(m, alice, "kilnbot", "status", "other: idle");
  CHECK(contains(ask(m, alice, "kilnbot", "last all", "unit"), "last build [unit #2]: failure"));
  CHECK(ask(m, alice, "kilnbot", "help commands", "Commands") ==
        "Commands: list, status, last, watch, join, leave, notify, help, source, version");
  CHECK(ask(m, alice, "kilnbot", "help watch", "Usage") ==
        "Usage: watch BUILDER - Announce the results of the builds running now on BUILDER when they finish");
  CHECK(ask(m, alice, "#ci", "source", "master") == "My master is at http://ci.example.org/");
  CHECK(contains(ask(m, alice, "#ci", "version", "kiln-irc"), "kiln-irc 0.1.0 on the Kiln plugin ABI 1."));
  // Without allow_force, force and stop are refused, and not listed.
  CHECK(ask(m, alice, "#ci", "force build unit now", "Sorry") == "Sorry, this bot does not force builds (allow_force is off)");
  CHECK(ask(m, alice, "#ci", "help force", "command") == "No such command 'force'; try 'help commands'");

  // Channel talk not addressed to the bot gets no answer: one reply in #ci
  // per command asked there.
  alice.say("#ci", "kilnbot is a fine bot");
  alice.say("#ci", "hello everyone");
  ask(m, alice, "#ci", "list builders", "builders");
  CHECK(alice.said("kilnbot", "#ci", start).size() == 7);
}

TEST_CASE("commands with unknown builders or missing arguments get a helpful reply") {
  IrcServer server;
  IrcClient alice(server.port(), "alice");
  alice.join("#ci");
  SchedulerMaster m(master_yaml(bot(server.port(), R"(channels: ["#ci"], allow_force: true)")));
  m.start();
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci"); }));
  struct Case {
    std::string command, reply;
  };
  const std::vector<Case> cases = {
      {"frobnicate now", "Unrecognized command 'frobnicate'; try 'help commands'"},
      {"status nosuch", "No such builder 'nosuch'; the builders are: other, unit"},
      {"last nosuch", "No such builder 'nosuch'; the builders are: other, unit"},
      {"watch", "Usage: watch BUILDER - Announce the results of the builds running now on BUILDER when they finish"},
      {"watch unit", "There are no builds running on unit right now"},
      {"list", "Usage: list builders - List the configured builders"},
      {"join", "Usage: join CHANNEL [KEY] - Join a channel"},
      {"join general", "'general' is not a channel name (try #general)"},
      {"leave #elsewhere", "I am not in #elsewhere"},
      {"notify", "Usage: notify on|off|list [EVENT ...]"},
      {"notify on", "Which events? Usage: notify on|off|list"},
      {"notify maybe started", "notify on, off or list, not 'maybe'"},
      {"notify on sometimes", "Unknown event 'sometimes'; the events are started, finished, success"},
      {"notify on successToBroken", "Unknown event 'successToBroken'"},
      {"help", "Get help on what? (try 'help COMMAND', or 'help commands' for the list)"},
      {"help frob", "No such command 'frob'; try 'help commands'"},
      {"force", "Usage: force build [--branch=BRANCH]"},
      {"force build", "Force which builder? Usage: force build"},
      {"force build nosuch because", "No such builder 'nosuch'; the builders are: other, unit"},
      {"force build unit", "Give a reason after the builder: force build unit REASON"},
      {"force build --branch unit x", "Option --branch needs a value: --branch=..."},
      {"force build --props=nothing unit x", "--props takes NAME=VALUE pairs separated by commas, not 'nothing'"},
      {"force build --colour=red unit x", "Unknown option --colour; Usage: force build"},
      {"stop build", "Stop which builder? Usage: stop build BUILDER REASON"},
      {"stop build unit", "Give a reason after the builder: stop build unit REASON"},
      {"stop build unit enough", "There are no builds running on unit"},
  };
  for (const auto& c : cases) {
    const std::string reply = ask(m, alice, "kilnbot", c.command, c.reply.substr(0, 12));
    INFO(c.command);
    CHECK(contains(reply, c.reply));
  }
  // None of that started a build.
  CHECK(m.get("builds").empty());
}

TEST_CASE("notify events announce started and finished builds and the xToY transitions, on channels and in private") {
  IrcServer server;
  IrcClient alice(server.port(), "alice");
  alice.join("#ci");
  SchedulerMaster m(master_yaml(bot(server.port(), R"(channels: ["#ci"], notify_events: [started, failure])")));
  m.start();
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci"); }));
  CHECK(ask(m, alice, "kilnbot", "notify on successToFailure failureToSuccess", "notified") ==
        "The following events are being notified: failureToSuccess, successToFailure");
  CHECK(ask(m, alice, "#ci", "notify list", "notified") == "The following events are being notified: failure, started");

  const size_t start = alice.mark();
  const int64_t change = m.add_change({{"author", "ann"}, {"files", {"a.c"}}, {"comments", "x"}, {"revision", "r42"}});
  run_build_with_rc(m, "unit", 0, {{"sourcestamps", {{{"changeids", {change}}}}}});
  run_build_with_rc(m, "unit", 1);
  run_build_with_rc(m, "unit", 0);
  run_build_with_rc(m, "unit", 0);
  const std::string url = "http://ci.example.org/#/builders/1/builds/";
  std::vector<std::string> expected_channel = {"build #1 of unit started, including [r42]", "build #2 of unit started",
                                               "build #2 of unit is complete: Failure [build failure]  Build details are at " + url + "2",
                                               "build #3 of unit started", "build #4 of unit started"};
  std::vector<std::string> expected_private = {"build #2 of unit is complete: Failure [build failure]  Build details are at " + url + "2",
                                               "build #3 of unit is complete: Success [build success]  Build details are at " + url + "3"};
  REQUIRE(m.run_until([&] {
    return alice.said("kilnbot", "#ci", start).size() >= expected_channel.size() &&
           alice.said("kilnbot", "alice", start).size() >= expected_private.size();
  }));
  m.settle();
  INFO(alice.transcript(start));
  CHECK(alice.said("kilnbot", "#ci", start) == expected_channel);
  CHECK(alice.said("kilnbot", "alice", start) == expected_private);

  CHECK(ask(m, alice, "#ci", "notify off started failure", "notified") == "No events are being notified here");
  const size_t quiet = alice.mark();
  run_build_with_rc(m, "unit", 2);
  CHECK(ask(m, alice, "#ci", "notify list", "notified") == "No events are being notified here");
  CHECK(alice.said("kilnbot", "#ci", quiet).size() == 1);
}

TEST_CASE("notify settings and channels joined by command survive a restart of the master") {
  IrcServer server;
  IrcClient alice(server.port(), "alice");
  alice.join("#ci");
  alice.join("#extra");
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(bot(server.port(), R"(channels: ["#ci"], notify_events: [started])")));
  m.start();
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci"); }));
  CHECK(ask(m, alice, "#ci", "notify on finished", "notified") == "The following events are being notified: finished, started");
  CHECK(ask(m, alice, "#ci", "notify off started", "notified") == "The following events are being notified: finished");
  CHECK(ask(m, alice, "kilnbot", "notify on failure", "notified") == "The following events are being notified: failure");
  CHECK(ask(m, alice, "#ci", "join #extra", "Joining") == "Joining #extra");
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#extra"); }));
  CHECK(ask(m, alice, "#extra", "notify on started", "notified") == "The following events are being notified: started");
  m.settle();

  // The new connection may reach the server before the old one's QUIT
  // does; the bot then registers as kilnbot_ (a taken nick). Whichever it
  // got, it is the one that joins #ci after the restart.
  auto rejoined_as = [&](size_t from) {
    std::string nick;
    const bool rejoined = m.run_until([&] {
      auto join = alice.find([&](const Line& l) { return l.command == "JOIN" && l.text() == "#ci" && l.from.rfind("kilnbot", 0) == 0; }, from);
      if (join) nick = join->from;
      return join.has_value();
    });
    INFO(alice.transcript(from) << server.log());
    REQUIRE(rejoined);
    return nick;
  };
  const size_t before = alice.mark();
  m.restart();
  const std::string bot_nick = rejoined_as(before);
  REQUIRE(m.run_until([&] { return joined(alice, bot_nick, "#extra", before); }));
  INFO(log.text());
  CHECK(contains(log.text(), "restored the notify events of 3 contacts and 1 channel joined by command from the previous run"));
  CHECK(ask(m, alice, "#ci", "notify list", "notified", bot_nick) == "The following events are being notified: finished");
  const size_t start = alice.mark();
  run_build_with_rc(m, "unit", 1);
  const std::string done = "build #1 of unit is complete: Failure [build failure]  Build details are at http://ci.example.org/#/builders/1/builds/1";
  REQUIRE(m.run_until([&] {
    return !alice.said(bot_nick, "#ci", start).empty() && !alice.said(bot_nick, "alice", start).empty() &&
           !alice.said(bot_nick, "#extra", start).empty();
  }));
  m.settle();
  INFO(alice.transcript(start));
  CHECK(alice.said(bot_nick, "#ci", start) == std::vector<std::string>{done});  // not "started" any more
  CHECK(alice.said(bot_nick, "alice", start) == std::vector<std::string>{done});
  CHECK(alice.said(bot_nick, "#extra", start) == std::vector<std::string>{"build #1 of unit started"});

  // Leaving a channel joined by command forgets it.
  CHECK(ask(m, alice, "#ci", "leave #extra", "Leaving", bot_nick) == "Leaving #extra");
  m.settle();
  const size_t again = alice.mark();
  m.restart();
  const std::string third_nick = rejoined_as(again);
  ask(m, alice, "#ci", "notify list", "notified", third_nick);
  CHECK(!joined(alice, third_nick, "#extra", again));
}

TEST_CASE("the tags filter, use_revisions and notice_on_channel shape what the bot says") {
  IrcServer server;
  IrcClient alice(server.port(), "alice");
  alice.join("#ci");
  SchedulerMaster m(master_yaml(bot(server.port(), R"(channels: ["#ci"], notify_events: [finished], tags: [fast], use_revisions: true, notice_on_channel: true)")));
  m.start();
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci"); }));
  const size_t start = alice.mark();
  run_build_with_rc(m, "other", 0);
  const std::string hash = "0123456789abcdef0123456789abcdef01234567";
  const int64_t c1 = m.add_change({{"author", "ann"}, {"files", {"a"}}, {"comments", "x"}, {"revision", hash}});
  const int64_t c2 = m.add_change({{"author", "bob"}, {"files", {"b"}}, {"comments", "y"}, {"revision", "1234"}});
  run_build_with_rc(m, "unit", 1, {{"sourcestamps", {{{"changeids", {c1, c2}}}}}});
  REQUIRE(m.run_until([&] { return !alice.said("kilnbot", "#ci", start, "NOTICE").empty(); }));
  m.settle();
  INFO(alice.transcript(start));
  CHECK(alice.said("kilnbot", "#ci", start, "NOTICE") ==
        std::vector<std::string>{"build containing revision(s) [0123456, 1234] on unit is complete: Failure [build failure]  "
                                 "Build details are at http://ci.example.org/#/builders/1/builds/1"});
  CHECK(alice.said("kilnbot", "#ci", start).empty());  // no PRIVMSG to the channel
  const size_t asked = alice.mark();
  alice.say("#ci", "kilnbot: list builders");
  REQUIRE(m.run_until([&] { return !alice.said("kilnbot", "#ci", asked, "NOTICE").empty(); }));
  CHECK(alice.said("kilnbot", "#ci", asked, "NOTICE")[0] == "Configured builders: unit");
  CHECK(contains(ask(m, alice, "kilnbot", "status other", "No such"), "No such builder 'other'; the builders are: unit"));
}

TEST_CASE("watch, status of a running build, force build with branch, revision and properties, and stop build") {
  IrcServer server;
  IrcClient alice(server.port(), "alice");
  alice.join("#ci");
  TempDir gates("kiln-irc-gates");
  SchedulerMaster m(master_yaml(bot(server.port(), R"(channels: ["#ci"], allow_force: true)") +
                                "schedulers: [{name: force, type: force, builders: [unit]}]\n"));
  m.start();
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci"); }));

  const std::string gate = (gates / "open-1").string();
  m.submit({{"builders", {"unit"}}, {"reason", "gated"}, {"properties", {{"gate", gate}}}});
  REQUIRE(m.run_until([&] { return step_started(m, 1); }));
  CHECK(ask(m, alice, "#ci", "status unit", "unit:") == "unit: building #1 [test]");
  CHECK(ask(m, alice, "#ci", "watch unit", "Watching") == "Watching build unit #1 until it finishes...");
  const size_t watching = alice.mark();
  kiln::testing::write_file(gate, "");
  REQUIRE(m.run_until([&] { return alice.heard("kilnbot", "#ci", "Hey!", watching).has_value(); }));
  CHECK(*alice.heard("kilnbot", "#ci", "Hey!", watching) ==
        "Hey! build #1 of unit is complete: Success [build success]  Build details are at http://ci.example.org/#/builders/1/builds/1");

  CHECK(ask(m, alice, "#ci", "force build --branch=dev --revision=abc9 --props=rc=3,colour=blue unit the tests look flaky",
            "Force build") == "Force build of unit requested; I'll give a shout when it finishes");
  REQUIRE(m.run_until([&] { return alice.heard("kilnbot", "#ci", "Hey! build #2", watching).has_value(); }));
  CHECK(contains(*alice.heard("kilnbot", "#ci", "Hey! build #2", watching), "is complete: Failure [build failure]"));
  json props = m.get("builds/2/properties");
  CHECK(props["owner"][0] == "alice");
  CHECK(props["colour"][0] == "blue");
  CHECK(props["rc"][0] == "3");
  json buildset = m.buildset(m.new_buildsets().back());
  CHECK(buildset["reason"] == "forced by IRC user alice (in #ci): the tests look flaky");
  CHECK(buildset["sourcestamps"][0]["branch"] == "dev");
  CHECK(buildset["sourcestamps"][0]["revision"] == "abc9");

  // A build that would wait for ever, stopped from IRC.
  const size_t stopping = alice.mark();
  ask(m, alice, "kilnbot", "force build --props=gate=" + (gates / "never").string() + " unit hold on", "Force build");
  REQUIRE(m.run_until([&] { return step_started(m, 3); }));
  CHECK(ask(m, alice, "#ci", "stop build unit it is stuck", "interrupted") == "Build unit #3 interrupted");
  REQUIRE(m.run_until([&] { return alice.heard("kilnbot", "alice", "Hey! build #3", stopping).has_value(); }));
  CHECK(contains(*alice.heard("kilnbot", "alice", "Hey! build #3", stopping), "is complete: Cancelled"));
  CHECK(m.get("builds/3")["results"] == KILN_CANCELLED);
}

TEST_CASE("with an authz_policy, only the nicks it allows may force or stop builds") {
  IrcServer server;
  IrcClient alice(server.port(), "alice");
  IrcClient ops(server.port(), "ops");
  alice.join("#ci");
  ops.join("#ci");
  SchedulerMaster m(master_yaml(bot(server.port(), R"(channels: ["#ci"], allow_force: true, authz_policy: gate)")) +
                        "policies: [{name: gate, type: test-ops-only}]\n",
                    kiln::testing::kJan31_2330, {std::string(KILN_TEST_PLUGIN_DIR) + "/mail_policies"});
  m.start();
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci"); }));
  CHECK(ask(m, alice, "#ci", "force build unit please", "may not") == "alice: you may not force builds of unit");
  CHECK(ask(m, alice, "#ci", "stop build unit please", "may not") == "alice: you may not stop builds of unit");
  CHECK(m.get("builds").empty());
  CHECK(ask(m, ops, "#ci", "force build unit release check", "Force build") ==
        "Force build of unit requested; I'll give a shout when it finishes");
  REQUIRE(m.run_until([&] { return ops.heard("kilnbot", "#ci", "Hey! build #1").has_value(); }));
  CHECK(m.get("builds/1/properties")["owner"][0] == "ops");
}

TEST_CASE("join and leave move the bot between channels, with a key when one is given") {
  IrcServer server(ServerOptions{{{"#locked", "k3y"}}, {}, {}});
  IrcClient alice(server.port(), "alice");
  alice.join("#ci");
  alice.join("#locked", "k3y");
  SchedulerMaster m(master_yaml(bot(server.port(), R"(channels: ["#ci"])")));
  m.start();
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci"); }));
  CHECK(ask(m, alice, "#ci", "join #locked k3y", "Joining") == "Joining #locked");
  REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#locked"); }));
  CHECK(ask(m, alice, "#locked", "list builders", "builders") == "Configured builders: other unit");
  CHECK(ask(m, alice, "#ci", "leave #locked", "Leaving") == "Leaving #locked");
  REQUIRE(m.run_until([&] {
    return alice.find([](const Line& l) { return l.command == "PART" && l.from == "kilnbot" && !l.params.empty() && l.params[0] == "#locked"; })
        .has_value();
  }));
}

TEST_CASE("the bot retries a server that is not there after failed_delay, and reconnects after lost_delay when dropped") {
  const uint16_t port = kiln::testing::free_port();
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(bot(port, R"(channels: ["#ci"])")));
  m.start();
  REQUIRE(m.run_until([&] { return contains(log.text(), "cannot connect"); }));
  CHECK(contains(log.text(), "reconnecting in 0.3 s"));
  // Builds go on meanwhile.
  CHECK(run_build_with_rc(m, "unit", 0)["results"] == KILN_SUCCESS);

  IrcServer server(ServerOptions{}, port);
  // Someone else holds the nick: the bot takes the next one.
  auto squatter = std::make_unique<IrcClient>(server.port(), "kilnbot");
  auto alice = std::make_unique<IrcClient>(server.port(), "alice");
  alice->join("#ci");
  REQUIRE(m.run_until([&] { return joined(*alice, "kilnbot_", "#ci"); }));
  CHECK(ask(m, *alice, "#ci", "version", "kiln-irc", "kilnbot_").rfind("kiln-irc", 0) == 0);

  // The server goes away and comes back: the bot is back in its channel.
  squatter.reset();
  alice.reset();
  server.stop();
  REQUIRE(m.run_until([&] { return contains(log.text(), "reconnecting in 0.2 s"); }));
  server.start();
  alice = std::make_unique<IrcClient>(server.port(), "alice");
  alice->join("#ci");
  // The bot may be in #ci before alice: ask NAMES until it is listed.
  size_t names_asked = 0;
  REQUIRE(m.run_until([&] {
    if (joined(*alice, "kilnbot", "#ci")) return true;
    size_t answers = 0;
    for (const auto& l : alice->lines()) {
      std::string names = " " + l.text() + " ";
      std::replace(names.begin(), names.end(), '@', ' ');
      if (l.command == "353" && contains(names, " kilnbot ")) return true;
      if (l.command == "366") ++answers;
    }
    if (answers > names_asked) {
      names_asked = answers;
      alice->send("NAMES #ci");
    }
    return false;
  }));
  CHECK(ask(m, *alice, "#ci", "list builders", "builders") == "Configured builders: other unit");
}

TEST_CASE("over TLS the bot joins when it trusts the server's certificate, and logs why not when it does not") {
  TempDir certs("kiln-irc-tls");
  kiln::testing::make_certificate(certs.path());
  IrcServer server(ServerOptions{{}, certs / "cert.pem", certs / "key.pem"});
  IrcClient alice(server.port(), "alice");
  alice.join("#ci");
  const bool trusted = GENERATE(true, false);
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(bot(server.tls_port(),
                                    std::string("tls: true, channels: [\"#ci\"]") +
                                        (trusted ? ", tls_ca_file: " + (certs / "cert.pem").string() : ""),
                                    "localhost")));
  m.start();
  if (trusted) {
    REQUIRE(m.run_until([&] { return joined(alice, "kilnbot", "#ci"); }));
    CHECK(ask(m, alice, "#ci", "list builders", "builders") == "Configured builders: other unit");
  } else {
    REQUIRE(m.run_until([&] { return contains(log.text(), "TLS handshake"); }));
    CHECK(contains(log.text(), "is the server's certificate trusted? see tls_ca_file"));
    CHECK(!joined(alice, "kilnbot", "#ci"));
  }
}

TEST_CASE("IRC configuration errors name the key and what is wrong") {
  const std::string base = "  - {type: irc, host: irc.example.org, nick: kilnbot, ";
  struct Case {
    std::string yaml, message;
  };
  const std::vector<Case> cases = {
      {base + "channels: [general]}", "channels[0]: 'general' is not a channel name"},
      {base + "channels: [{channel: \"#a\", password: \"two words\"}]}", "channels[0].password: a channel key has no spaces"},
      {base + "channels: [{chanel: \"#a\"}]}", "chanel"},
      {base + "channels: [\"#a\"], notify_events: [started, sometimes]}", "notify_events[1]: unknown event 'sometimes'"},
      {base + "notify_events: [started]}", "notify_events are announced on the configured channels, and channels is empty"},
      {base + "builders: [unit], tags: [fast]}", "give builders or tags, not both"},
      {base + "authz_policy: p}", "authz_policy is set but allow_force is false"},
      {base + "port: 70000}", "port"},
      {"  - {type: irc, host: irc.example.org, nick: \"9lives\"}", "nick: '9lives' is not an IRC nickname"},
      {"  - {type: irc, nick: kilnbot}", "host"},
  };
  for (const auto& c : cases) {
    const std::string errors = kiln::testing::config_errors(master_yaml(c.yaml + "\n"));
    INFO(c.yaml << "\n" << errors);
    CHECK(contains(errors, "master.yaml:"));
    CHECK(contains(errors, c.message));
  }
}

}  // namespace
