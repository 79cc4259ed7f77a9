// The mail reporter against a real SMTP server (aiosmtpd) on loopback, with
// an in-process master running real builds on a local worker: what each
// mode mails, to whom, with which subject, body and attachments; STARTTLS
// and AUTH; an unreachable or silent server; configuration errors.

#include "mail/mail_support.h"
#include "plugin/plugin_test_support.h"
#include "schedulers/scheduler_master.h"
#include "util/config_errors.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace {

using kiln::mail::test::free_port;
using kiln::mail::test::SinkOptions;
using kiln::mail::test::SmtpSink;
using kiln::testing::SchedulerMaster;
using kiln::testing::run_build_with_rc;
using kiln::testing::TempDir;
using nlohmann::json;

// Builder `unit` (tag fast) runs a shell step whose exit code is the
// build's `rc` property; `other` always passes.
std::string master_yaml(const std::string& reporters) {
  return R"yaml(
master: {title: Mail Test, url: "http://ci.example.org/"}
workers: [{name: local-1, type: local, max_builds: 2}]
builders:
  - name: unit
    workers: [local-1]
    tags: [fast]
    collapse_requests: false
    steps:
      - {type: shell, name: test, command: ["sh", "-c", "echo first line; echo second line; echo exit %(prop:rc:-0)s; exit %(prop:rc:-0)s"]}
  - name: other
    workers: [local-1]
    collapse_requests: false
    steps: [{type: shell, name: run, command: "true"}]
reporters:
)yaml" + reporters;
}

std::string mail_reporter(const std::string& name, uint16_t port, const std::string& extra) {
  return "  - {type: mail, name: " + name + ", fromaddr: \"CI <ci@example.org>\", relayhost: 127.0.0.1, smtp_port: " +
         std::to_string(port) + ", timeout: 10, retry_delay: 5, " + extra + "}\n";
}


std::vector<int> numbers_in(const std::vector<json>& messages) {
  std::vector<int> out;
  for (const auto& msg : messages) {
    const std::string subject = msg["subject"];
    out.push_back(std::stoi(subject.substr(subject.rfind('#') + 1)));
  }
  return out;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST_CASE("a failing build mails its blamelist and the extra recipients with the build, changes, log tail and logs") {
  const uint16_t port = free_port();
  SmtpSink sink(port);
  SchedulerMaster m(master_yaml(mail_reporter(
      "mail", port,
      "mode: failing, lookup: example.org, extra_recipients: [\"List <list@example.org>\"], add_logs: true, "
      "extra_headers: {X-Build: \"%(builder)s-{{number}}\"}, subject: \"%(result)s: {{builder}} #{{number}}\"")));
  m.start();
  const int64_t c1 = m.add_change({{"author", "Ann Author <ann@example.org>"}, {"files", {"src/a.c", "doc/b.md"}},
                                   {"comments", "Fix the frobnicator"}, {"revision", "abc123"}, {"branch", "main"}});
  const int64_t c2 = m.add_change({{"author", "bob"}, {"files", {"src/c.c"}}, {"comments", "Tune it"},
                                   {"revision", "def456"}, {"branch", "main"}});
  json stamp = {{"branch", "main"},
                {"revision", "def456"},
                {"changeids", {c1, c2}},
                {"patch", {{"level", 1}, {"body", "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"}}}};
  json build = run_build_with_rc(m, "unit", 3, {{"reason", "forced by ann"}, {"sourcestamps", json::array({stamp})}});
  REQUIRE(build["results"] == KILN_FAILURE);
  run_build_with_rc(m, "unit", 0);  // passes: mode failing sends nothing for it
  REQUIRE(m.run_until([&] { return !sink.messages().empty(); }));
  m.settle();

  auto messages = sink.messages();
  REQUIRE(messages.size() == 1);
  const json& msg = messages[0];
  INFO(msg.dump(2));
  auto rcpt = msg["rcpt_tos"].get<std::vector<std::string>>();
  std::sort(rcpt.begin(), rcpt.end());
  CHECK(rcpt == std::vector<std::string>{"ann@example.org", "bob@example.org", "list@example.org"});
  CHECK(msg["mail_from"] == "ci@example.org");
  CHECK(msg["headers"]["From"] == "CI <ci@example.org>");
  CHECK(msg["subject"] == "failure: unit #1");
  CHECK(msg["headers"]["X-Build"] == "unit-1");
  CHECK(msg["content_type"] == "text/plain");
  const std::string body = msg["body"];
  CHECK(contains(body, "detected a failed build on builder unit"));
  CHECK(contains(body, "http://ci.example.org/#/builders/"));
  CHECK(contains(body, "/builds/1"));
  CHECK(contains(body, "Worker: local-1"));
  CHECK(contains(body, "Build Reason: forced by ann"));
  CHECK(contains(body, "[branch main] def456 (plus patch)"));
  CHECK(contains(body, "Blamelist: Ann Author <ann@example.org>, bob"));
  CHECK(contains(body, "Fix the frobnicator"));
  CHECK(contains(body, "    src/a.c\n    doc/b.md"));
  CHECK(contains(body, "test ( failure )"));
  CHECK(contains(body, "second line\nexit 3"));

  std::map<std::string, json> attachments;
  for (const auto& a : msg["attachments"]) attachments[a["filename"]] = a;
  REQUIRE(attachments.count("test.stdio.txt") == 1);
  CHECK(contains(attachments["test.stdio.txt"]["content"], "first line\nsecond line\nexit 3\n"));
  REQUIRE(attachments.count("source.patch") == 1);
  CHECK(attachments["source.patch"]["content"] == "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n");
  CHECK(attachments["source.patch"]["content_type"] == "text/x-diff");
}

TEST_CASE("each mode mails the builds it is meant for, judged against the builder's previous build") {
  const uint16_t port = free_port();
  SmtpSink sink(port);
  std::string reporters;
  for (const char* mode : {"all", "failing", "passing", "problem", "change", "warnings"}) {
    reporters += mail_reporter(std::string("mail-") + mode, port,
                               std::string("mode: ") + mode + ", send_to_interested_users: false, extra_recipients: [" +
                                   mode + "@example.org], subject: \"{{result}} #{{number}}\"");
  }
  // Both modes in one reporter: a list.
  reporters += mail_reporter("mail-both", port,
                             "mode: [problem, passing], send_to_interested_users: false, extra_recipients: "
                             "[both@example.org], subject: \"{{result}} #{{number}}\"");
  SchedulerMaster m(master_yaml(reporters));
  m.start();
  // success, failure, failure, success, failure, warnings-free success
  for (int rc : {0, 1, 1, 0, 1, 0}) run_build_with_rc(m, "unit", rc);
  const std::map<std::string, std::vector<int>> expected = {
      {"all", {1, 2, 3, 4, 5, 6}}, {"failing", {2, 3, 5}}, {"passing", {1, 4, 6}}, {"problem", {2, 5}},
      {"change", {1, 2, 4, 5, 6}}, {"warnings", {2, 3, 5}}, {"both", {1, 2, 4, 5, 6}}};
  size_t total = 0;
  for (const auto& [_, numbers] : expected) total += numbers.size();
  REQUIRE(m.run_until([&] { return sink.messages().size() >= total; }));
  m.settle();
  for (const auto& [mode, numbers] : expected) {
    INFO("mode " << mode);
    CHECK(numbers_in(sink.messages_to(mode + "@example.org")) == numbers);
  }
  CHECK(sink.messages().size() == total);
}

TEST_CASE("builders and tags filters leave other builders' builds unmailed") {
  const uint16_t port = free_port();
  SmtpSink sink(port);
  SchedulerMaster m(master_yaml(
      mail_reporter("by-tag", port, "tags: [fast], send_to_interested_users: false, extra_recipients: [tag@example.org]") +
      mail_reporter("by-name", port,
                    "builders: [other], send_to_interested_users: false, extra_recipients: [name@example.org], "
                    "subject: \"Résultat – {{result}} on {{builder}}, a long subject that must be split into several "
                    "encoded words\"")));
  m.start();
  run_build_with_rc(m, "other", 0);
  run_build_with_rc(m, "unit", 0);
  REQUIRE(m.run_until([&] { return sink.messages().size() >= 2; }));
  m.settle();
  auto tag = sink.messages_to("tag@example.org");
  auto name = sink.messages_to("name@example.org");
  REQUIRE(tag.size() == 1);
  REQUIRE(name.size() == 1);
  CHECK(contains(tag[0]["subject"], "on unit"));
  // Not ASCII: RFC 2047 encoded words, decoded back by the mail client.
  CHECK(name[0]["subject"] ==
        "Résultat – success on other, a long subject that must be split into several encoded words");
  CHECK(tag[0]["subject"] == "Buildbot success in Mail Test on unit");
}

TEST_CASE("interested users come from user objects without a lookup, and owners are added") {
  const uint16_t port = free_port();
  SmtpSink sink(port);
  SchedulerMaster m(master_yaml(mail_reporter("mail", port, "mode: all")));
  m.start();
  // Git-style authors carry their address; a bare name has none and no
  // user object gives one, so it is left out.
  const int64_t c1 = m.add_change({{"author", "Ann <ann@example.org>"}, {"files", {"a"}}, {"comments", "x"}});
  const int64_t c2 = m.add_change({{"author", "carol"}, {"files", {"b"}}, {"comments", "y"}});
  run_build_with_rc(m, "unit", 0,
            {{"sourcestamps", {{{"changeids", {c1, c2}}}}},
             {"properties", {{"owners", {"Olga <olga@example.org>"}}}}});
  REQUIRE(m.run_until([&] { return !sink.messages().empty(); }));
  auto rcpt = sink.messages()[0]["rcpt_tos"].get<std::vector<std::string>>();
  std::sort(rcpt.begin(), rcpt.end());
  CHECK(rcpt == std::vector<std::string>{"ann@example.org", "olga@example.org"});
}

TEST_CASE("a template file in the master folder replaces the body, HTML escaped") {
  const uint16_t port = free_port();
  SmtpSink sink(port);
  TempDir files("kiln-mail-tpl");
  kiln::testing::write_file(files / "body.html",
                            "<p>{{builder}} #{{number}} is {{result}}</p>\n{{#changes}}<i>{{comments}}</i>{{/changes}}\n"
                            "{{#logs}}{{name}};{{/logs}}\n");
  SchedulerMaster m(master_yaml(mail_reporter(
      "mail", port,
      "send_to_interested_users: false, extra_recipients: [x@example.org], template_type: html, template_file: " +
          (files / "body.html").string())));
  m.start();
  const int64_t c = m.add_change({{"author", "a"}, {"files", {"f"}}, {"comments", "use <b> & co — naïve"}});
  run_build_with_rc(m, "unit", 0, {{"sourcestamps", {{{"changeids", {c}}}}}});
  REQUIRE(m.run_until([&] { return !sink.messages().empty(); }));
  const json msg = sink.messages()[0];
  CHECK(msg["content_type"] == "text/html");
  CHECK(msg["body"] == "<p>unit #1 is success</p>\n<i>use &lt;b&gt; &amp; co — naïve</i>\nstdio;\n");
}

TEST_CASE("STARTTLS and AUTH PLAIN or LOGIN reach a server that requires them") {
  TempDir certs("kiln-mail-tls");
  kiln::mail::test::make_certificate(certs.path());
  const bool only_login = GENERATE(false, true);
  INFO("only AUTH LOGIN offered: " << only_login);
  const uint16_t port = free_port();
  SmtpSink sink(port, SinkOptions{certs / "cert.pem", certs / "key.pem", "kiln:s3cret", only_login});
  SchedulerMaster m(master_yaml(
      "  - {type: mail, fromaddr: ci@example.org, relayhost: localhost, smtp_port: " + std::to_string(port) +
      ", use_tls: true, tls_ca_file: " + (certs / "cert.pem").string() +
      ", smtp_user: kiln, smtp_password: s3cret, send_to_interested_users: false, extra_recipients: [t@example.org]}\n"));
  m.start();
  run_build_with_rc(m, "unit", 0);
  REQUIRE(m.run_until([&] { return !sink.messages().empty(); }));
  const json msg = sink.messages()[0];
  CHECK(msg["tls"] == true);
  CHECK(msg["authenticated"] == true);
  CHECK(msg["rcpt_tos"] == json::array({"t@example.org"}));
}

TEST_CASE("use_smtps speaks TLS from the first byte to an SMTPS server and authenticates over it") {
  TempDir certs("kiln-mail-tls");
  kiln::mail::test::make_certificate(certs.path());
  const uint16_t port = free_port();
  SinkOptions options{certs / "cert.pem", certs / "key.pem", "kiln:s3cret", false};
  options.smtps = true;
  SmtpSink sink(port, options);
  SchedulerMaster m(master_yaml(
      "  - {type: mail, fromaddr: ci@example.org, relayhost: localhost, smtp_port: " + std::to_string(port) +
      ", use_smtps: true, tls_ca_file: " + (certs / "cert.pem").string() +
      ", smtp_user: kiln, smtp_password: s3cret, send_to_interested_users: false, extra_recipients: [t@example.org]}\n"));
  m.start();
  run_build_with_rc(m, "unit", 0);
  REQUIRE(m.run_until([&] { return !sink.messages().empty(); }));
  const json msg = sink.messages()[0];
  CHECK(msg["tls"] == true);
  CHECK(msg["authenticated"] == true);
  CHECK(msg["rcpt_tos"] == json::array({"t@example.org"}));
}

TEST_CASE("use_smtps against a plain SMTP server fails the TLS handshake and says so") {
  const uint16_t port = free_port();
  SmtpSink sink(port);
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(
      "  - {type: mail, fromaddr: ci@example.org, relayhost: 127.0.0.1, smtp_port: " + std::to_string(port) +
      ", use_smtps: true, tls_verify: false, timeout: 5, retry_attempts: 1, send_to_interested_users: false, "
      "extra_recipients: [t@example.org]}\n"));
  m.start();
  run_build_with_rc(m, "unit", 0);
  REQUIRE(m.run_until([&] { return contains(log.text(), "mail for build unit #1"); }));
  INFO(log.text());
  CHECK(contains(log.text(), "the TLS handshake"));
  CHECK(sink.messages().empty());
}

TEST_CASE("a wrong password or an untrusted certificate is logged and not retried") {
  TempDir certs("kiln-mail-tls");
  kiln::mail::test::make_certificate(certs.path());
  const uint16_t port = free_port();
  SmtpSink sink(port, SinkOptions{certs / "cert.pem", certs / "key.pem", "kiln:s3cret", false});
  const bool trusted = GENERATE(true, false);
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(
      "  - {type: mail, fromaddr: ci@example.org, relayhost: localhost, smtp_port: " + std::to_string(port) +
      ", use_tls: true, retry_delay: 1, " + (trusted ? "tls_ca_file: " + (certs / "cert.pem").string() + ", " : "") +
      "smtp_user: kiln, smtp_password: wrong, send_to_interested_users: false, extra_recipients: [t@example.org]}\n"));
  m.start();
  run_build_with_rc(m, "unit", 0);
  REQUIRE(m.run_until([&] { return contains(log.text(), "not retrying"); }));
  m.advance_s(10);
  INFO(log.text());
  CHECK(contains(log.text(), trusted ? "AUTH PLAIN" : "certificate"));
  CHECK(!contains(log.text(), "could not deliver"));
  CHECK(sink.messages().empty());
}

TEST_CASE("an unreachable SMTP server delays no build, and the mail is retried until it is delivered") {
  const uint16_t port = free_port();  // nothing listens here yet
  kiln::plugin::test::LogCapture log;
  SchedulerMaster m(master_yaml(mail_reporter(
      "mail", port, "send_to_interested_users: false, extra_recipients: [r@example.org], retry_attempts: 5, "
      "subject: \"{{builder}} #{{number}}\"")));
  m.start();
  run_build_with_rc(m, "unit", 0);
  REQUIRE(m.run_until([&] { return contains(log.text(), "could not deliver mail for build unit #1"); }));
  // Builds go on while the mail waits for its retry.
  CHECK(run_build_with_rc(m, "unit", 1)["results"] == KILN_FAILURE);
  CHECK(contains(log.text(), "retrying in 5.0 s"));

  SmtpSink sink(port);
  m.advance_s(5);   // first retries: build 1's mail (and build 2's first attempt fails or succeeds)
  m.advance_s(10);  // the doubled delay for whatever failed twice
  // The server has a message before the client hears its answer and logs
  // the delivery: wait for both.
  REQUIRE(m.run_until([&] {
    return sink.messages().size() >= 2 && contains(log.text(), "delivered mail for build unit #1");
  }));
  auto numbers = numbers_in(sink.messages());
  std::sort(numbers.begin(), numbers.end());
  CHECK(numbers == std::vector<int>{1, 2});
}

TEST_CASE("a server that accepts and never answers holds up neither builds nor shutdown") {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor silent(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  const uint16_t port = silent.local_endpoint().port();
  auto m = std::make_unique<SchedulerMaster>(master_yaml(
      "  - {type: mail, fromaddr: ci@example.org, relayhost: 127.0.0.1, smtp_port: " + std::to_string(port) +
      ", timeout: 600, send_to_interested_users: false, extra_recipients: [r@example.org]}\n"));
  m->start();
  run_build_with_rc(*m, "unit", 0);
  // The kernel completes the mail's connection (the listen backlog); no
  // greeting ever comes.
  for (int rc : {0, 1, 0}) run_build_with_rc(*m, "unit", rc);
  CHECK(m->finished_builds().size() == 4);
  m.reset();  // stops the reporter while its send waits on the silent server
}

// Config errors, as `kiln checkconfig` reports them.
std::string config_errors(const std::string& reporter) { return kiln::testing::config_errors(master_yaml(reporter)); }

TEST_CASE("mail configuration errors name the key and what is wrong") {
  const std::string base = "  - {type: mail, fromaddr: ci@example.org, ";
  struct Case {
    std::string yaml, message;
  };
  const std::vector<Case> cases = {
      {base + "subject: \"{{result}} on {{buildr}}\"}", "subject: line 1, column 15: unknown field 'buildr'; did you mean 'builder'?"},
      {base + "subject: \"{{#changes}}x\"}", "subject: line 1, column 1: section 'changes' is never closed"},
      {base + "builders: [unit], tags: [fast]}", "give builders or tags, not both"},
      {base + "smtp_user: u}", "smtp_user is set without smtp_password"},
      {base + "use_tls: true, use_smtps: true}", "give use_tls (STARTTLS on a plain connection) or use_smtps (TLS from the start), not both"},
      {base + "extra_headers: {\"Bad Name\": x}}", "extra_headers: 'Bad Name' is not a header name"},
      {base + "extra_headers: {Subject: x}}", "extra_headers: 'Subject' is set by the mail reporter itself"},
      {base + "extra_recipients: [nobody]}", "extra_recipients[0]: 'nobody' is not an email address"},
      {base + "send_to_interested_users: false}", "nobody would get mail"},
      {base + "lookup: a@b.org}", "lookup: 'a@b.org' is not a domain"},
      {base + "mode: sometimes}", "mode: unknown mode 'sometimes'"},
      {"  - {type: mail}\n", "fromaddr"},
  };
  for (const auto& c : cases) {
    const std::string errors = config_errors(c.yaml + (c.yaml.back() == '\n' ? "" : "\n"));
    INFO(c.yaml << "\n" << errors);
    CHECK(contains(errors, "master.yaml:"));
    CHECK(contains(errors, c.message));
    CHECK(!contains(errors, "mail: mail:"));
  }
}

TEST_CASE("a body template given as template through a file reference is checked by checkconfig and used for the mail") {
  TempDir files("kiln-mail-tpl");
  kiln::testing::write_file(files / "bad.txt", "Build {{number}}\n{{#changes}}\n  {{autor}}\n{{/changes}}\n");
  const std::string errors = config_errors("  - {type: mail, fromaddr: ci@example.org, template: \"${file:" +
                                           (files / "bad.txt").string() + "}\"}\n");
  INFO(errors);
  CHECK(contains(errors, "master.yaml:"));
  CHECK(contains(errors, "template: line 3, column 3: unknown field 'autor'; did you mean 'author'?"));
  CHECK(contains(config_errors("  - {type: mail, fromaddr: ci@example.org, template: x, template_file: y}\n"),
                 "give template or template_file, not both"));

  // ${file:} drops one trailing newline; the template keeps the other.
  kiln::testing::write_file(files / "good.txt", "{{builder}} #{{number}}: {{result}}\n\n");
  const uint16_t port = free_port();
  SmtpSink sink(port);
  SchedulerMaster m(master_yaml(mail_reporter("mail", port, "send_to_interested_users: false, extra_recipients: [x@example.org], "
                                                            "template: \"${file:" + (files / "good.txt").string() + "}\"")));
  m.start();
  run_build_with_rc(m, "unit", 1);
  REQUIRE(m.run_until([&] { return !sink.messages().empty(); }));
  CHECK(sink.messages()[0]["body"] == "unit #1: failure\n");
}

TEST_CASE("a template file with an unknown field stops the master from starting, naming the file, line and column") {
  TempDir files("kiln-mail-tpl");
  kiln::testing::write_file(files / "body.txt", "Build {{number}}\n{{#changes}}\n  {{autor}}\n{{/changes}}\n");
  SchedulerMaster m(master_yaml("  - {type: mail, fromaddr: ci@example.org, template_file: " +
                                (files / "body.txt").string() + "}\n"));
  const std::string error = m.engine().start();
  INFO(error);
  CHECK(contains(error, "template_file " + (files / "body.txt").string() +
                            ": line 3, column 3: unknown field 'autor'; did you mean 'author'?"));
}

}  // namespace

namespace {

const std::vector<std::filesystem::path> kPolicyPlugins = {std::string(KILN_TEST_PLUGIN_DIR) + "/mail_policies"};
constexpr const char* kPolicies = R"yaml(
policies:
  - {name: book, type: test-address-book}
  - {name: short, type: test-short-message}
)yaml";

TEST_CASE("a lookup policy maps authors and owners to addresses, and a message_formatter policy writes the mail") {
  const uint16_t port = free_port();
  SmtpSink sink(port);
  SchedulerMaster m(master_yaml(mail_reporter("mail", port, "lookup_policy: book, message_formatter: short")) + kPolicies,
                    kiln::testing::kJan31_2330, kPolicyPlugins);
  m.start();
  const int64_t c1 = m.add_change({{"author", "dana"}, {"files", {"a"}}, {"comments", "x"}});
  const int64_t c2 = m.add_change({{"author", "nobody"}, {"files", {"b"}}, {"comments", "y"}});
  run_build_with_rc(m, "unit", 1, {{"sourcestamps", {{{"changeids", {c1, c2}}}}}, {"properties", {{"owner", "erin"}}}});
  REQUIRE(m.run_until([&] { return !sink.messages().empty(); }));
  const json msg = sink.messages()[0];
  auto rcpt = msg["rcpt_tos"].get<std::vector<std::string>>();
  std::sort(rcpt.begin(), rcpt.end());
  CHECK(rcpt == std::vector<std::string>{"dana@users.example.net", "erin@users.example.net"});
  CHECK(msg["subject"] == "[all] unit #1");
  CHECK(msg["body"] == "STATUS: failure\n");
}

TEST_CASE("a lookup_policy that names no policy stops the master from starting") {
  SchedulerMaster m(master_yaml("  - {type: mail, fromaddr: ci@example.org, lookup_policy: bok}\n") + kPolicies,
                    kiln::testing::kJan31_2330, kPolicyPlugins);
  const std::string error = m.engine().start();
  INFO(error);
  CHECK(contains(error, "lookup_policy: no policy named 'bok'"));
}

TEST_CASE("buildset_summary sends one mail per buildset, covering the builds its mode wants") {
  const uint16_t port = free_port();
  SmtpSink sink(port);
  SchedulerMaster m(master_yaml(mail_reporter(
      "mail", port,
      "buildset_summary: true, mode: failing, send_to_interested_users: false, extra_recipients: [s@example.org], "
      "subject: \"buildset {{bsid}}: {{buildset_result}}\"")));
  m.start();
  const size_t before = m.finished_builds().size();
  // A passing buildset first: mode failing wants none of its builds, and a
  // mail for it would arrive before the next one's.
  m.submit({{"builders", {"unit", "other"}}, {"reason", "both"}, {"properties", {{"rc", 0}}}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= before + 2; }));
  m.settle();
  m.submit({{"builders", {"unit", "other"}}, {"reason", "both"}, {"properties", {{"rc", 2}}}});
  REQUIRE(m.run_until([&] { return m.finished_builds().size() >= before + 4; }));
  m.settle();
  REQUIRE(m.run_until([&] { return !sink.messages().empty(); }));
  m.settle();
  const auto messages = sink.messages();
  REQUIRE(messages.size() == 1);
  CHECK(messages[0]["subject"] == "buildset 2: failure");
  const std::string body = messages[0]["body"];
  INFO(body);
  CHECK(contains(body, "new failure on builder unit"));
  // `other` passed, so mode failing leaves it out of the summary.
  CHECK(!contains(body, "on builder other"));
}

}  // namespace
