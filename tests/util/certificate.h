#pragma once
// A certificate for "localhost" signed by itself, made with the openssl
// command, for tests of TLS clients against real servers: cert.pem doubles
// as the CA file that trusts it; key.pem is its key.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace kiln::testing {

inline void make_certificate(const std::filesystem::path& dir) {
  const std::string command = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
                              "-addext subjectAltName=DNS:localhost -keyout '" +
                              (dir / "key.pem").string() + "' -out '" + (dir / "cert.pem").string() +
                              "' >/dev/null 2>&1";
  REQUIRE(std::system(command.c_str()) == 0);
}

}  // namespace kiln::testing
