#include "master/control_server.h"

#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <map>
#include <optional>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace kiln::master {

namespace fs = std::filesystem;
using boost::asio::local::stream_protocol;
using nlohmann::json;

struct ControlServer::State {
  State(boost::asio::io_context& io_, ControlHandler handler_)
      : io(io_), handler(std::move(handler_)) {}

  boost::asio::io_context& io;
  ControlHandler handler;
  fs::path path;
  std::optional<stream_protocol::acceptor> acceptor;
  std::map<Connection*, std::weak_ptr<Connection>> connections;
  bool listening = false;

  void accept_next(const std::shared_ptr<State>& self);
};

// One client. Requests are handled one at a time, so responses leave in the
// order their requests came, with no queue of pending writes.
struct ControlServer::Connection : std::enable_shared_from_this<Connection> {
  Connection(std::shared_ptr<State> state_, stream_protocol::socket socket_)
      : state(std::move(state_)), socket(std::move(socket_)), input(kMaxLineBytes + 1) {}

  std::shared_ptr<State> state;
  stream_protocol::socket socket;
  boost::asio::streambuf input;  // its max_size enforces the line limit
  std::string output;
  bool closed = false;

  void read_next() {
    if (closed) return;
    boost::asio::async_read_until(socket, input, '\n',
                                  [self = shared_from_this()](const boost::system::error_code& ec,
                                                              size_t n) { self->on_line(ec, n); });
  }

  void on_line(const boost::system::error_code& ec, size_t n) {
    if (closed) return;
    if (ec == boost::asio::error::not_found) {
      return send(json{{"error", "request line longer than " + std::to_string(kMaxLineBytes) +
                                     " bytes; closing the connection"}},
                  true);
    }
    if (ec) return close();  // end of stream, or stop()
    std::string line(boost::asio::buffers_begin(input.data()),
                     boost::asio::buffers_begin(input.data()) + static_cast<std::ptrdiff_t>(n));
    input.consume(n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) return read_next();

    json request;
    try {
      request = json::parse(line);
    } catch (const json::exception& e) {
      return send(json{{"error", std::string("malformed request: ") + e.what()}}, false);
    }
    if (!request.is_object()) {
      return send(json{{"error", "malformed request: a request is a JSON object"}}, false);
    }
    handle(request);
  }

  void handle(const json& request) {
    // The pending reply is what keeps the connection open while the
    // handler works: a handler that drops it unanswered closes it. The
    // answer may come from another thread, or after stop() closed the
    // socket (send() then does nothing).
    auto replied = std::make_shared<std::atomic<bool>>(false);
    ControlReply reply = [self = shared_from_this(), replied](json response) {
      if (replied->exchange(true)) return;
      boost::asio::post(self->state->io, [self, response = std::move(response)]() mutable {
        self->send(std::move(response), false);
      });
    };
    try {
      state->handler(request, reply);
    } catch (const std::exception& e) {
      reply(json{{"error", std::string("internal error: ") + e.what()}});
    }
  }

  void send(const json& response, bool close_after) {
    if (closed) return;
    output = response.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    boost::asio::async_write(
        socket, boost::asio::buffer(output),
        [self = shared_from_this(), close_after](const boost::system::error_code& ec, size_t) {
          if (ec || close_after) return self->close();
          self->read_next();
        });
  }

  void close() {
    if (closed) return;
    closed = true;
    boost::system::error_code ignored;
    socket.shutdown(stream_protocol::socket::shutdown_both, ignored);
    socket.close(ignored);
    state->connections.erase(this);
  }
};

namespace {

// The socket file is 0600 already; this also turns away a client of another
// user in the instant between bind() and chmod().
bool same_user(stream_protocol::socket& socket) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return false;
  }
  return cred.uid == ::geteuid() || cred.uid == 0;
}

}  // namespace

void ControlServer::State::accept_next(const std::shared_ptr<State>& self) {
  acceptor->async_accept(
      [self](const boost::system::error_code& ec, stream_protocol::socket socket) {
        if (!self->listening) return;
        if (ec) {
          spdlog::warn("control socket: accept failed: {}", ec.message());
        } else if (!same_user(socket)) {
          spdlog::warn("control socket: refused a connection from another user");
        } else {
          auto connection = std::make_shared<Connection>(self, std::move(socket));
          self->connections[connection.get()] = connection;
          connection->read_next();
        }
        self->accept_next(self);
      });
}

ControlServer::ControlServer(boost::asio::io_context& io, ControlHandler handler)
    : state_(std::make_shared<State>(io, std::move(handler))) {}

ControlServer::~ControlServer() {
  stop();
}

fs::path ControlServer::socket_path_of(const fs::path& master_dir) {
  return master_dir / "kiln.sock";
}

const fs::path& ControlServer::socket_path() const {
  return state_->path;
}

std::string ControlServer::start(const fs::path& master_dir) {
  if (state_->listening) return "the control socket is already listening";
  const fs::path path = socket_path_of(master_dir);
  const std::string text = path.string();
  constexpr size_t kMaxPath = sizeof(sockaddr_un{}.sun_path) - 1;
  if (text.size() > kMaxPath) {
    return "control socket path " + text + " is " + std::to_string(text.size()) +
           " bytes long, but a Unix socket path may have at most " + std::to_string(kMaxPath) +
           "; move the master to a folder with a shorter path";
  }
  const stream_protocol::endpoint endpoint(text);

  std::error_code fs_ec;
  const auto status = fs::symlink_status(path, fs_ec);
  if (fs::exists(status)) {
    if (!fs::is_socket(status)) {
      return text + " exists and is not a socket; remove it if it is not needed";
    }
    // A master that crashed leaves its socket file; one that runs answers.
    stream_protocol::socket probe(state_->io);
    boost::system::error_code ec;
    probe.connect(endpoint, ec);
    if (!ec) return "another master is already listening on " + text;
    fs::remove(path, fs_ec);
    if (fs_ec) return "cannot remove the stale control socket " + text + ": " + fs_ec.message();
  }

  boost::system::error_code ec;
  stream_protocol::acceptor acceptor(state_->io);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (ec) return "cannot create the control socket " + text + ": " + ec.message();
  if (::chmod(text.c_str(), 0600) != 0) {
    std::error_code chmod_ec(errno, std::generic_category());
    fs::remove(path, fs_ec);
    return "cannot restrict the control socket " + text + " to its owner: " + chmod_ec.message();
  }
  acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (ec) {
    fs::remove(path, fs_ec);
    return "cannot listen on the control socket " + text + ": " + ec.message();
  }
  state_->path = path;
  state_->acceptor.emplace(std::move(acceptor));
  state_->listening = true;
  state_->accept_next(state_);
  return {};
}

void ControlServer::stop() {
  if (!state_->listening) return;
  state_->listening = false;
  boost::system::error_code ignored;
  state_->acceptor->close(ignored);
  state_->acceptor.reset();
  // close() erases from the map, so walk a copy.
  auto connections = state_->connections;
  for (auto& [raw, weak] : connections) {
    if (auto connection = weak.lock()) connection->close();
  }
  state_->connections.clear();
  std::error_code fs_ec;
  fs::remove(state_->path, fs_ec);
}

}  // namespace kiln::master
