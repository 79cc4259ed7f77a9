// IrcConnection: one io_context on one thread; each connection attempt has
// a generation number so that callbacks of an abandoned attempt find out
// and do nothing. Timers bound the connect + welcome phase and, once
// registered, a silent server (PING after `timeout` of silence, give up
// after another).

#include "irc_connection.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <openssl/ssl.h>

#include <chrono>
#include <deque>
#include <istream>
#include <thread>

namespace kiln::irc {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// A line longer than this is not IRC (512 with tags aside).
constexpr size_t kMaxLineBytes = 16 * 1024;

std::chrono::milliseconds seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, s) * 1000));
}

// CR, LF and NUL would end the line early and let text say commands.
std::string one_line(std::string line) {
  for (char& c : line) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  return line;
}

}  // namespace

struct IrcConnection::Impl : std::enable_shared_from_this<Impl> {
  Impl(IrcSettings s, IrcHandler h)
      : settings(std::move(s)), handler(std::move(h)), work(asio::make_work_guard(io)), resolver(io),
        phase_timer(io), idle_timer(io), retry_timer(io) {}

  IrcSettings settings;
  IrcHandler handler;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  tcp::resolver resolver;
  std::unique_ptr<ssl::context> tls_context;
  std::unique_ptr<ssl::stream<tcp::socket>> stream;
  asio::streambuf input;
  std::deque<std::string> output;
  bool writing = false;
  bool registered = false;
  bool pinged = false;
  bool stopping = false;
  uint64_t generation = 0;
  std::string nick;
  int nick_attempt = 0;
  asio::steady_timer phase_timer, idle_timer, retry_timer;
  std::thread thread;

  template <class F>
  void with_stream(F&& f) {
    if (settings.tls) {
      f(*stream);
    } else {
      f(stream->next_layer());
    }
  }

  void connect() {
    if (stopping) return;
    const uint64_t gen = ++generation;
    registered = false;
    pinged = false;
    writing = false;
    output.clear();
    input.consume(input.size());
    nick = settings.nick;
    nick_attempt = 0;
    if (settings.tls && !tls_context) {
      tls_context = std::make_unique<ssl::context>(ssl::context::tls_client);
      tls_context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                               ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      error_code ec;
      if (!settings.tls_ca_file.empty()) {
        tls_context->load_verify_file(settings.tls_ca_file, ec);
      } else {
        tls_context->set_default_verify_paths(ec);
      }
      if (ec) {
        tls_context.reset();
        return fail(gen, "tls_ca_file '" + settings.tls_ca_file + "': " + ec.message());
      }
    }
    if (!tls_context) tls_context = std::make_unique<ssl::context>(ssl::context::tls_client);
    stream = std::make_unique<ssl::stream<tcp::socket>>(io, *tls_context);
    phase_timer.expires_after(seconds(settings.timeout_s));
    phase_timer.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (!ec) self->fail(gen, "no welcome from the server within " + std::to_string(self->settings.timeout_s) + " s");
    });
    resolver.async_resolve(settings.host, std::to_string(settings.port),
                           [self = shared_from_this(), gen](error_code ec, tcp::resolver::results_type results) {
                             if (gen != self->generation) return;
                             if (ec) return self->fail(gen, "cannot resolve '" + self->settings.host + "': " + ec.message());
                             asio::async_connect(self->stream->next_layer(), results,
                                                 [self, gen](error_code ec2, const tcp::endpoint&) {
                                                   if (gen != self->generation) return;
                                                   if (ec2) return self->fail(gen, "cannot connect: " + ec2.message());
                                                   self->connected(gen);
                                                 });
                           });
  }

  void connected(uint64_t gen) {
    if (!settings.tls) return begin_registration(gen);
    SSL_set_tlsext_host_name(stream->native_handle(), settings.host.c_str());
    if (settings.tls_verify) {
      stream->set_verify_mode(ssl::verify_peer);
      stream->set_verify_callback(ssl::host_name_verification(settings.host));
    } else {
      stream->set_verify_mode(ssl::verify_none);
    }
    stream->async_handshake(ssl::stream_base::client, [self = shared_from_this(), gen](error_code ec) {
      if (gen != self->generation) return;
      if (ec) {
        return self->fail(gen, "TLS handshake: " + ec.message() +
                                   (self->settings.tls_verify ? " (is the server's certificate trusted? see tls_ca_file)" : ""));
      }
      self->begin_registration(gen);
    });
  }

  void begin_registration(uint64_t gen) {
    if (!settings.server_password.empty()) write("PASS " + settings.server_password);
    write("NICK " + nick);
    write("USER " + settings.nick + " 0 * :" + settings.realname);
    read(gen);
  }

  void read(uint64_t gen) {
    with_stream([&](auto& s) {
      asio::async_read_until(s, input, '\n', [self = shared_from_this(), gen](error_code ec, size_t n) {
        if (gen != self->generation) return;
        if (ec) return self->fail(gen, ec == asio::error::eof ? "the server closed the connection" : ec.message());
        std::string line(asio::buffers_begin(self->input.data()), asio::buffers_begin(self->input.data()) + n);
        self->input.consume(n);
        self->on_line(gen, line);
        if (gen != self->generation) return;
        if (self->input.size() > kMaxLineBytes) return self->fail(gen, "a line from the server is too long");
        self->read(gen);
      });
    });
  }

  void watch_idle(uint64_t gen) {
    idle_timer.expires_after(seconds(settings.timeout_s));
    idle_timer.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->generation) return;
      if (self->pinged) return self->fail(gen, "the server has not answered for " + std::to_string(2 * self->settings.timeout_s) + " s");
      self->pinged = true;
      self->write("PING :kiln");
      self->watch_idle(gen);
    });
  }

  void on_line(uint64_t gen, const std::string& line) {
    IrcMessage m = IrcMessage::parse(line);
    if (m.command.empty()) return;
    if (registered) {
      pinged = false;
      watch_idle(gen);
    }
    if (m.command == "PING") {
      write("PONG :" + m.param(0));
      return;
    }
    if (m.command == "001") {
      registered = true;
      phase_timer.cancel();
      if (!m.params.empty()) nick = m.params[0];
      watch_idle(gen);
      if (handler.registered) handler.registered(nick);
      return;
    }
    if (!registered && (m.command == "433" || m.command == "432" || m.command == "436")) {
      // Taken (or refused): the next of nick_, nick__, ... nick1, nick2, ...
      ++nick_attempt;
      nick = settings.nick + (nick_attempt <= 2 ? std::string(nick_attempt, '_') : std::to_string(nick_attempt - 2));
      write("NICK " + nick);
      return;
    }
    if (m.command == "NICK" && irc_equal(m.nick(), nick) && !m.params.empty()) nick = m.params[0];
    if (handler.message) handler.message(m);
  }

  void write(std::string line) {
    output.push_back(one_line(std::move(line)) + "\r\n");
    if (!writing) write_next(generation);
  }

  void write_next(uint64_t gen) {
    if (output.empty() || !stream) {
      writing = false;
      if (stopping && output.empty()) io.stop();
      return;
    }
    writing = true;
    with_stream([&](auto& s) {
      asio::async_write(s, asio::buffer(output.front()), [self = shared_from_this(), gen](error_code ec, size_t) {
        if (gen != self->generation) return;
        if (ec) return self->fail(gen, "cannot send: " + ec.message());
        self->output.pop_front();
        self->write_next(gen);
      });
    });
  }

  void fail(uint64_t gen, const std::string& why) {
    if (gen != generation) return;
    const bool was_registered = registered;
    ++generation;  // every callback of this attempt is now stale
    registered = false;
    writing = false;
    output.clear();
    phase_timer.cancel();
    idle_timer.cancel();
    if (stream) {
      error_code ignored;
      stream->next_layer().close(ignored);
    }
    if (stopping) {
      io.stop();
      return;
    }
    const double delay = was_registered ? settings.lost_delay_s : settings.failed_delay_s;
    if (handler.disconnected) handler.disconnected(why, delay);
    retry_timer.expires_after(seconds(delay));
    retry_timer.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->connect();
    });
  }

  void stop() {
    stopping = true;
    retry_timer.cancel();
    resolver.cancel();
    if (!registered) {
      io.stop();
      return;
    }
    write("QUIT :Kiln is shutting down");
    // A server that takes no more bytes still lets us go.
    phase_timer.expires_after(std::chrono::seconds(1));
    phase_timer.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->io.stop();
    });
  }
};

IrcConnection::IrcConnection(IrcSettings settings, IrcHandler handler)
    : impl_(std::make_shared<Impl>(std::move(settings), std::move(handler))) {
  asio::post(impl_->io, [impl = impl_] { impl->connect(); });
  impl_->thread = std::thread([impl = impl_] {
    for (;;) {
      try {
        impl->io.run();
        return;
      } catch (const std::exception&) {
        // A throwing handler must not end the bot's thread; drop the
        // connection and carry on.
        impl->fail(impl->generation, "internal error");
      }
    }
  });
}

IrcConnection::~IrcConnection() {
  asio::post(impl_->io, [impl = impl_] { impl->stop(); });
  if (impl_->thread.joinable()) impl_->thread.join();
  // Handlers left in the io_context hold the Impl: cancel what they wait
  // for and let them run out (stale), so the Impl goes with the last one.
  Impl& impl = *impl_;
  impl.handler = {};
  ++impl.generation;
  impl.retry_timer.cancel();
  impl.phase_timer.cancel();
  impl.idle_timer.cancel();
  impl.resolver.cancel();
  if (impl.stream) {
    error_code ignored;
    impl.stream->next_layer().close(ignored);
  }
  impl.work.reset();
  impl.io.restart();
  impl.io.run();
}

void IrcConnection::send(std::string line) {
  asio::post(impl_->io, [impl = impl_, line = std::move(line)]() mutable {
    if (impl->registered && !impl->stopping) impl->write(std::move(line));
  });
}

}  // namespace kiln::irc
