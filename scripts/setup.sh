#!/usr/bin/env bash
# Installs, from Debian 12's packages, whatever Kiln needs to build and test
# that this machine lacks. Does nothing (and asks for nothing) when all is there.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git
  # libraries
  libboost-dev libboost-filesystem-dev libboost-system-dev
  libyaml-cpp-dev nlohmann-json3-dev libspdlog-dev libsqlite3-dev
  libmsgpack-cxx-dev libzstd-dev libssl-dev libcrypt-dev
  # tests
  catch2 json-schema-test-suite sqlite3
)
# Real programs the integration tests drive: version control for the pollers
# and source steps, Buildbot's own worker for protocol compatibility, an
# SMTP server for the mail reporter.
test_packages=(
  subversion mercurial
  buildbot-worker python3-autobahn python3-msgpack
  # the mail reporter's SMTP server, and its test certificates
  python3-aiosmtpd openssl
  # the IRC bot's server
  ngircd
  # the web pages' tests drive a real headless browser (chromedriver)
  chromium chromium-driver
  # bench_web_api's load generator
  wrk
)
if [ "${1:-}" = "--test" ]; then
  shift
  packages+=("${test_packages[@]}" ${KILN_TEST_PACKAGES:-})
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
