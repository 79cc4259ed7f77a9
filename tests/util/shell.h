#pragma once
// Running shell command lines from tests that drive real programs (git,
// svn, hg): the output, quoting for the shell, and trimming.

#include <catch2/catch.hpp>

#include <array>
#include <cstdio>
#include <string>

namespace kiln::testing {

// Runs a shell command line; returns its stdout (stderr goes to the test's
// output) and fails the test when it exits non-zero.
inline std::string sh(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int rc = ::pclose(pipe);
  INFO(command);
  REQUIRE(rc == 0);
  return out;
}

// One shell word: 'text', with any ' inside escaped.
inline std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

inline std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace kiln::testing
