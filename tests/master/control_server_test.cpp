#include "master/control_server.h"
#include "util/event_loop.h"

#include "store/temp_dir.h"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <thread>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

using boost::asio::local::stream_protocol;
using kiln::master::ControlReply;
using kiln::master::ControlServer;
using kiln::testing::TempDir;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A ControlServer on a loop running in its own thread, as in the master.
struct Running {
  kiln::util::EventLoop loop;
  std::atomic<int> requests{0};
  ControlServer server;
  std::thread thread;

  explicit Running(kiln::master::ControlHandler handler) : server(loop.io(), std::move(handler)) {}

  // Default handler: answers {"echo": request, "seen": n}, half of the time
  // later through the loop, as the engine answers after a store call.
  Running()
      : server(loop.io(), [this](const json& request, ControlReply reply) {
          const int n = ++requests;
          json response{{"echo", request}, {"seen", n}};
          if (n % 2 == 0) {
            loop.post([reply, response] { reply(response); });
          } else {
            reply(response);
          }
        }) {}

  std::string start(const fs::path& dir) {
    std::string error = server.start(dir);
    if (error.empty()) thread = std::thread([this] { loop.run(); });
    return error;
  }

  void stop_server() {
    std::promise<void> stopped;
    loop.post([&] {
      server.stop();
      stopped.set_value();
    });
    stopped.get_future().wait();
  }

  ~Running() {
    if (thread.joinable()) {
      stop_server();
      loop.stop();
      thread.join();
    }
  }
};

// A blocking client with a receive timeout, so a missing answer fails the
// test instead of hanging it.
struct RawClient {
  boost::asio::io_context io;
  stream_protocol::socket socket{io};
  boost::asio::streambuf input;

  explicit RawClient(const fs::path& path) {
    socket.connect(stream_protocol::endpoint(path.string()));
    timeval tv{2, 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  boost::system::error_code send(const std::string& bytes) {
    boost::system::error_code ec;
    boost::asio::write(socket, boost::asio::buffer(bytes), ec);
    return ec;
  }

  // One line without its '\n', or nullopt at end of stream or on error.
  std::optional<std::string> read_line() {
    boost::system::error_code ec;
    size_t n = boost::asio::read_until(socket, input, '\n', ec);
    if (ec) return std::nullopt;
    std::string line(boost::asio::buffers_begin(input.data()),
                     boost::asio::buffers_begin(input.data()) + static_cast<std::ptrdiff_t>(n - 1));
    input.consume(n);
    return line;
  }

  json request(const json& r) {
    REQUIRE(!send(r.dump() + "\n"));
    auto line = read_line();
    REQUIRE(line);
    return json::parse(*line);
  }
};

}  // namespace

TEST_CASE("requests on one connection are answered in order, one JSON line each") {
  TempDir dir;
  Running running;
  REQUIRE(running.start(dir.path()) == "");
  REQUIRE(running.server.socket_path() == dir / "kiln.sock");

  RawClient client(dir / "kiln.sock");
  REQUIRE(client.request({{"op", "status"}}) == json{{"echo", {{"op", "status"}}}, {"seen", 1}});
  // Two requests in one write: the second waits for the first's answer.
  REQUIRE(!client.send("{\"op\":\"a\"}\n\n{\"op\":\"b\"}\r\n"));
  REQUIRE(json::parse(*client.read_line()) == json{{"echo", {{"op", "a"}}}, {"seen", 2}});
  REQUIRE(json::parse(*client.read_line()) == json{{"echo", {{"op", "b"}}}, {"seen", 3}});

  RawClient second(dir / "kiln.sock");
  REQUIRE(second.request({{"op", "x"}}).at("seen") == 4);
}

TEST_CASE("the control socket file is readable and writable by its owner only") {
  TempDir dir;
  Running running;
  REQUIRE(running.start(dir.path()) == "");
  struct stat st {};
  REQUIRE(::stat((dir / "kiln.sock").c_str(), &st) == 0);
  REQUIRE(S_ISSOCK(st.st_mode));
  REQUIRE((st.st_mode & 07777) == 0600);
}

TEST_CASE("malformed JSON is answered with an error and the connection stays usable") {
  TempDir dir;
  Running running;
  REQUIRE(running.start(dir.path()) == "");
  RawClient client(dir / "kiln.sock");

  REQUIRE(!client.send("{\"op\": nope\n"));
  auto error = json::parse(*client.read_line());
  REQUIRE_THAT(error.at("error").get<std::string>(), Catch::StartsWith("malformed request"));

  REQUIRE(!client.send("[1, 2]\n"));
  REQUIRE_THAT(json::parse(*client.read_line()).at("error").get<std::string>(),
               Catch::Contains("JSON object"));

  REQUIRE(client.request({{"op", "after"}}).at("echo") == json{{"op", "after"}});
  REQUIRE(running.requests == 1);
}

TEST_CASE("a request line over 1 MiB is refused and its connection closed") {
  TempDir dir;
  Running running;
  REQUIRE(running.start(dir.path()) == "");

  // Just under the limit is served.
  RawClient ok_client(dir / "kiln.sock");
  const std::string big(ControlServer::kMaxLineBytes - 64, 'x');
  REQUIRE(ok_client.request({{"op", "big"}, {"blob", big}}).at("seen") == 1);

  RawClient client(dir / "kiln.sock");
  // The server stops reading at the limit, so the end of this write may
  // meet a closed socket: that error is expected and ignored.
  client.send(std::string(ControlServer::kMaxLineBytes + 100, 'y') + "\n");
  auto line = client.read_line();
  REQUIRE(line);
  REQUIRE_THAT(json::parse(*line).at("error").get<std::string>(),
               Catch::Contains("longer than 1048576 bytes"));
  REQUIRE_FALSE(client.read_line());
  REQUIRE(running.requests == 1);
}

TEST_CASE("a handler that throws is answered with an error, and the connection goes on") {
  TempDir dir;
  Running running([](const json& request, ControlReply reply) {
    if (request.at("op") == "boom") throw std::runtime_error("kaboom");
    reply(json{{"ok", true}});
  });
  REQUIRE(running.start(dir.path()) == "");
  RawClient client(dir / "kiln.sock");
  REQUIRE(client.request({{"op", "boom"}}) == json{{"error", "internal error: kaboom"}});
  REQUIRE(client.request({{"op", "fine"}}) == json{{"ok", true}});
}

TEST_CASE("a stale socket file left by a crashed master is replaced") {
  TempDir dir;
  {
    // Bound but never listening, then abandoned: connecting is refused.
    boost::asio::io_context io;
    stream_protocol::acceptor stale(io);
    stale.open();
    stale.bind(stream_protocol::endpoint((dir / "kiln.sock").string()));
  }
  REQUIRE(fs::is_socket(dir / "kiln.sock"));
  Running running;
  REQUIRE(running.start(dir.path()) == "");
  RawClient client(dir / "kiln.sock");
  REQUIRE(client.request({{"op", "x"}}).at("seen") == 1);
}

TEST_CASE("a socket another master still listens on is not taken over") {
  TempDir dir;
  Running first;
  REQUIRE(first.start(dir.path()) == "");
  Running second;
  REQUIRE_THAT(second.start(dir.path()), Catch::Contains("another master is already listening"));
  RawClient client(dir / "kiln.sock");
  REQUIRE(client.request({{"op", "x"}}).at("seen") == 1);
  REQUIRE(second.requests == 0);
}

TEST_CASE("a file in the socket's place that is not a socket is left alone") {
  TempDir dir;
  kiln::testing::write_file(dir / "kiln.sock", "notes");
  Running running;
  REQUIRE_THAT(running.start(dir.path()), Catch::Contains("is not a socket"));
  REQUIRE(kiln::testing::read_file(dir / "kiln.sock") == "notes");
}

TEST_CASE("stopping closes open connections and removes the socket file") {
  TempDir dir;
  Running running;
  REQUIRE(running.start(dir.path()) == "");
  RawClient client(dir / "kiln.sock");
  REQUIRE(client.request({{"op", "x"}}).at("seen") == 1);

  running.stop_server();
  REQUIRE_FALSE(fs::exists(dir / "kiln.sock"));
  REQUIRE_FALSE(client.read_line());
  boost::asio::io_context io;
  stream_protocol::socket late(io);
  boost::system::error_code ec;
  late.connect(stream_protocol::endpoint((dir / "kiln.sock").string()), ec);
  REQUIRE(ec);
}

TEST_CASE("a master folder whose socket path is too long for a Unix socket is refused clearly") {
  TempDir dir;
  fs::path deep = dir.path() / std::string(60, 'a') / std::string(60, 'b');
  fs::create_directories(deep);
  Running running;
  std::string error = running.start(deep);
  REQUIRE_THAT(error, Catch::Contains((deep / "kiln.sock").string()));
  REQUIRE_THAT(error, Catch::Contains("at most 107"));
  REQUIRE_FALSE(fs::exists(deep / "kiln.sock"));
}
