// The notifier SDK's pure parts: the message template language, the modes
// and the address rules (kiln/sdk/notifier.hpp, message_template.hpp).

#include <kiln/sdk/notifier.hpp>

#include <catch2/catch.hpp>

namespace {

using kiln::sdk::MessageTemplate;
using kiln::sdk::TemplateError;
using nlohmann::json;
namespace notifier = kiln::sdk::notifier;

std::string render(const std::string& text, const json& context, const json& fields = nullptr,
                   MessageTemplate::Escape escape = MessageTemplate::Escape::kNone) {
  return MessageTemplate(text, fields, escape).render(context);
}

std::string error_of(const std::string& text, const json& fields) {
  try {
    MessageTemplate(text, fields);
  } catch (const TemplateError& e) {
    return e.what();
  }
  return "";
}

TEST_CASE("templates print fields, lists, sections, inverted sections and Buildbot's %(name)s") {
  const json context = {{"builder", "unit"},
                        {"blamelist", {"ann", "bob"}},
                        {"changes", {{{"author", "ann"}, {"files", {"a.c", "b.c"}}}, {{"author", "bob"}, {"files", json::array()}}}},
                        {"prop", {{"branch", "main"}}},
                        {"patch", nullptr}};
  CHECK(render("{{builder}}: {{blamelist}}", context) == "unit: ann, bob");
  CHECK(render("{{#changes}}[{{author}}{{#files}} {{.}}{{/files}}{{^files}} none{{/files}} on {{builder}}]{{/changes}}",
               context) == "[ann a.c b.c on unit][bob none on unit]");
  CHECK(render("%(builder)s on %(prop:branch)s", context) == "unit on main");
  CHECK(render("{{#patch}}patched{{/patch}}{{^patch}}clean{{/patch}}", context) == "clean");
  CHECK(render("a\n{{#changes}}\n- {{author}}\n{{/changes}}\nb\n", context) == "a\n- ann\n- bob\nb\n");
  CHECK(render("{{! a note }}{{missing}}x", context) == "x");
}

TEST_CASE("HTML templates escape fields unless asked not to") {
  const json context = {{"comments", "<b> & \"q\""}};
  CHECK(render("{{comments}}|{{{comments}}}|{{&comments}}", context, nullptr, MessageTemplate::Escape::kHtml) ==
        "&lt;b&gt; &amp; &quot;q&quot;|<b> & \"q\"|<b> & \"q\"");
}

TEST_CASE("a template naming an unknown field or left unclosed fails with its line and column") {
  const json& fields = notifier::message_fields();
  CHECK(error_of("ok {{builder}}\n  {{bulider}}", fields) ==
        "line 2, column 3: unknown field 'bulider'; did you mean 'builder'?");
  CHECK(error_of("{{#changes}}{{files}} {{autor}}{{/changes}}", fields) ==
        "line 1, column 23: unknown field 'autor'; did you mean 'author'?");
  CHECK(error_of("{{#changes}}x", fields) == "line 1, column 1: section 'changes' is never closed with '{{/changes}}'");
  CHECK(error_of("{{#steps}}{{/logs}}", fields) == "line 1, column 11: '{{/logs}}' closes section 'steps'");
  CHECK(error_of("{{builder", fields) == "line 1, column 1: '{{' is never closed");
  CHECK(error_of("{{prop.anything}} %(prop:x)s {{patch.level}}", fields).empty());
  CHECK(error_of("{{patch.size}}", fields) == "line 1, column 1: unknown field 'patch.size' ('size' is not in 'patch')");
  CHECK(error_of("{{author}}", fields).rfind("line 1, column 1: unknown field 'author'", 0) == 0);
}

TEST_CASE("modes judge a result against the previous finished build's") {
  const std::optional<int> none;
  CHECK(notifier::mode_wants("all", KILN_SUCCESS, none));
  CHECK(notifier::mode_wants("problem", KILN_FAILURE, KILN_SUCCESS));
  CHECK(notifier::mode_wants("problem", KILN_FAILURE, none));
  CHECK_FALSE(notifier::mode_wants("problem", KILN_FAILURE, KILN_FAILURE));
  CHECK_FALSE(notifier::mode_wants("problem", KILN_WARNINGS, KILN_SUCCESS));
  CHECK(notifier::mode_wants("change", KILN_SUCCESS, KILN_FAILURE));
  CHECK(notifier::mode_wants("change", KILN_SUCCESS, none));
  CHECK_FALSE(notifier::mode_wants("change", KILN_WARNINGS, KILN_WARNINGS));
  CHECK(notifier::mode_wants("warnings", KILN_WARNINGS, none));
  CHECK(notifier::mode_wants("warnings", KILN_FAILURE, none));
  CHECK_FALSE(notifier::mode_wants("warnings", KILN_SUCCESS, none));
  CHECK(notifier::mode_wants("exception", KILN_EXCEPTION, none));
  CHECK_FALSE(notifier::mode_wants("failing", KILN_EXCEPTION, none));
  CHECK(notifier::detected_status(KILN_SUCCESS, KILN_FAILURE) == "restored build");
  CHECK(notifier::detected_status(KILN_FAILURE, KILN_SUCCESS) == "new failure");
}

TEST_CASE("addresses are found in authors, and filters select builders by name or tag") {
  CHECK(notifier::address_in("Ann Author <ann@example.org>") == "ann@example.org");
  CHECK(notifier::address_in(" bob@example.org ") == "bob@example.org");
  CHECK_FALSE(notifier::address_in("carol"));
  CHECK_FALSE(notifier::address_in("not an @ address"));

  auto options = kiln::sdk::NotifierOptions::from_config({{"tags", {"fast"}}, {"mode", {"problem", "passing"}}});
  CHECK(options.selects("unit", json::array({"slow", "fast"})));
  CHECK_FALSE(options.selects("unit", json::array()));
  CHECK(options.wanted_by(KILN_SUCCESS, KILN_FAILURE) == "passing");
  CHECK(options.wanted_by(KILN_FAILURE, KILN_FAILURE).empty());
  CHECK_FALSE(kiln::sdk::NotifierOptions::check({{"tags", {"a"}}, {"builders", {"b"}}}).ok());
  CHECK(kiln::sdk::NotifierOptions::check({{"mode", "sometimes"}}).message().find("unknown mode 'sometimes'") !=
        std::string::npos);
}

}  // namespace
