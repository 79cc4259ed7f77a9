// ${env:..}, ${file:..} and ${matrix:..} inside one string.

#include "config/substitution.h"
#include "config_test_support.h"

#include <catch2/catch.hpp>

using namespace kiln::config;
using namespace kiln::config::testing;

TEST_CASE("the matrix pass leaves secrets and escapes for the secret pass") {
  std::map<std::string, nlohmann::json> values{{"os", "debian"}, {"n", 4}};
  Substituted first = substitute_matrix("${matrix:os}/${env:KILN_T}/$${matrix:os}/${matrix:n}", values);
  REQUIRE(first.errors.empty());
  CHECK(first.text == "debian/${env:KILN_T}/$${matrix:os}/4");
  CHECK_FALSE(first.whole);

  ScopedEnv env("KILN_T", "v");
  Substituted second = substitute_secrets(first.text, {});
  REQUIRE(second.errors.empty());
  CHECK(second.text == "debian/v/${matrix:os}/4");
  CHECK(second.secrets == std::vector<std::string>{"v"});
}

TEST_CASE("a whole reference is flagged so a plain scalar can keep the value's type") {
  Substituted whole = substitute_matrix("${matrix:n}", {{"n", 4}});
  CHECK(whole.whole);
  CHECK(whole.whole_value == 4);
  ScopedEnv env("KILN_T", "x");
  CHECK(substitute_secrets("${env:KILN_T}", {}).whole);
  CHECK_FALSE(substitute_secrets("a${env:KILN_T}", {}).whole);
  CHECK_FALSE(substitute_secrets("${env:KILN_T}${env:KILN_T}", {}).whole);
}

TEST_CASE("a near miss of a substitution is a typo, a shell variable is not") {
  Substituted typo = substitute_secrets("${evn:HOME}", {});
  REQUIRE(typo.errors.size() == 1);
  CHECK(typo.errors[0].find("did you mean '${env:...}'") != std::string::npos);
  for (const char* shell : {"${HOME}", "${x:-1}", "${PATH:+y}", "${f}", "$$", "${"}) {
    Substituted kept = substitute_secrets(shell, {});
    CHECK(kept.errors.empty());
    CHECK(kept.text == shell);
  }
}

TEST_CASE("an unclosed or empty reference is an error") {
  CHECK(substitute_secrets("${env:X", {}).errors.at(0) == "'${env:' is not closed by '}'");
  CHECK(substitute_secrets("${file:}", {}).errors.at(0) == "'${file:}' names nothing");
}
