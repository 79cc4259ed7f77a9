#pragma once
// A loopback TCP port nothing listens on right now, for tests that start a
// server (or want none) there.
//
// Not the kernel's pick (bind to port 0): that comes from the ephemeral
// range, where any outgoing connection of a test running in parallel may
// take it between our release and the server's bind. Ports below that range
// are never given to outgoing connections, so the only risk left is another
// test process choosing the same one, made unlikely by a random pick.
// And whether something listens on a port now.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <mutex>
#include <random>
#include <set>

namespace kiln::testing {

inline uint16_t free_port() {
  static std::mutex mutex;
  static std::set<uint16_t> handed_out;  // never twice in one process
  static std::mt19937 random(std::random_device{}() ^ static_cast<unsigned>(::getpid()));
  std::lock_guard lock(mutex);

  unsigned ephemeral_low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
  const unsigned low = 10000;
  boost::asio::io_context io;
  if (ephemeral_low > low + 1000) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      const auto port = static_cast<uint16_t>(low + random() % (ephemeral_low - low));
      if (handed_out.count(port) != 0) continue;
      boost::system::error_code ec;
      boost::asio::ip::tcp::acceptor a(io);
      a.open(boost::asio::ip::tcp::v4(), ec);
      if (!ec) a.bind({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
      if (ec) continue;
      handed_out.insert(port);
      return port;
    }
  }
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

inline bool listening(uint16_t port) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket s(io);
  boost::system::error_code ec;
  s.connect({boost::asio::ip::make_address("127.0.0.1"), port}, ec);
  return !ec;
}

}  // namespace kiln::testing
