// The WebSocket upgrade as the plugin answers it, spoken by hand: the
// credentials are checked before the 101, as Buildbot's master does.

#include "bbw_support.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

namespace {

using namespace bbw_test;
namespace asio = boost::asio;

// Sends an upgrade request like autobahn's (build1#3) and returns the
// response head.
std::string upgrade(uint16_t port, const std::string& authorization) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  std::string request =
      "GET / HTTP/1.1\r\nUser-Agent: AutobahnPython/22.7.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
      "\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n";
  if (!authorization.empty()) request += "Authorization: " + authorization + "\r\n";
  request += "Sec-WebSocket-Key: m5v08APU6eoW8aWstmMp+w==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  asio::write(socket, asio::buffer(request));
  asio::streambuf head;
  asio::read_until(socket, head, "\r\n\r\n");
  return std::string(asio::buffers_begin(head.data()), asio::buffers_end(head.data()));
}

std::string status_line(const std::string& head) { return head.substr(0, head.find("\r\n")); }

}  // namespace

TEST_CASE("the upgrade is refused with 401 for a wrong password or unknown worker and 400 for a bad credential") {
  const uint16_t port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  EngineFixture f("workers:\n  - {name: w1, type: buildbot-worker, password: 'pa:ss', listen: \"" + listen +
                  "\"}\n  - {name: w2, type: buildbot-worker, password: other, listen: \"" + listen + "\"}\n");
  REQUIRE(f.start().empty());

  // base64("w1:wrong"), base64("nobody:pa:ss"), base64("w2:pa:ss")
  CHECK(status_line(upgrade(port, "Basic dzE6d3Jvbmc=")).rfind("HTTP/1.1 401", 0) == 0);
  CHECK(status_line(upgrade(port, "Basic bm9ib2R5OnBhOnNz")).rfind("HTTP/1.1 401", 0) == 0);
  CHECK(status_line(upgrade(port, "Basic dzI6cGE6c3M=")).rfind("HTTP/1.1 401", 0) == 0);
  CHECK(status_line(upgrade(port, "")).rfind("HTTP/1.1 401", 0) == 0);
  CHECK(status_line(upgrade(port, "Basic ***")).rfind("HTTP/1.1 400", 0) == 0);
  CHECK(status_line(upgrade(port, "Digest dzE6cGE6c3M=")).rfind("HTTP/1.1 400", 0) == 0);

  // The right name and password (split at the first ':') switch protocols,
  // with nothing the worker's client would reject.
  const std::string head = upgrade(port, "Basic dzE6cGE6c3M=");  // w1:pa:ss
  CHECK(status_line(head) == "HTTP/1.1 101 Switching Protocols");
  CHECK(head.find("Sec-WebSocket-Accept: i1HmCGkvDdus6SIRyKod5QhDfsk=") != std::string::npos);
  CHECK(head.find("Sec-WebSocket-Extensions") == std::string::npos);
  CHECK(head.find("Sec-WebSocket-Protocol") == std::string::npos);
}
