// HttpPoster: Beast over a per-poster io_context, run on the caller's
// (sending) thread for at most the timeout; TLS with SNI, certificate and
// host name checks.

#include "http_post.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/ssl.h>

#include <chrono>
#include <mutex>
#include <optional>

namespace kiln::http_push {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

Url Url::parse(const std::string& text, std::string& error) {
  Url u;
  std::string rest;
  if (text.rfind("http://", 0) == 0) {
    rest = text.substr(7);
  } else if (text.rfind("https://", 0) == 0) {
    u.tls = true;
    u.port = 443;
    rest = text.substr(8);
  } else {
    error = "'" + text + "' is not an http:// or https:// URL";
    return {};
  }
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  u.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (authority.find('@') != std::string::npos) {
    error = "'" + text + "': give credentials in headers (Authorization), not in the URL";
    return {};
  }
  std::string port;
  if (!authority.empty() && authority.front() == '[') {  // [::1]:8080
    const size_t close = authority.find(']');
    if (close == std::string::npos) {
      error = "'" + text + "': an IPv6 address needs its closing ']'";
      return {};
    }
    if (close + 1 < authority.size() && authority[close + 1] == ':') port = authority.substr(close + 2);
    else if (close + 1 < authority.size()) port = "?";
    authority = authority.substr(1, close - 1);
  } else if (const size_t colon = authority.rfind(':'); colon != std::string::npos) {
    port = authority.substr(colon + 1);
    authority = authority.substr(0, colon);
  }
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) == 0 ||
        std::stoi(port) > 65535) {
      error = "'" + text + "': '" + port + "' is not a port";
      return {};
    }
    u.port = static_cast<uint16_t>(std::stoi(port));
  }
  if (authority.empty()) {
    error = "'" + text + "' names no host";
    return {};
  }
  u.host = authority;
  return u;
}

struct HttpPoster::Impl {
  asio::io_context io;
  std::mutex mutex;
  bool aborted = false;
};

HttpPoster::HttpPoster() : impl_(std::make_unique<Impl>()) {}
HttpPoster::~HttpPoster() = default;

void HttpPoster::abort() {
  std::lock_guard lock(impl_->mutex);
  impl_->aborted = true;
  impl_->io.stop();
}

namespace {

template <class Stream>
void exchange(Stream& stream, beast::tcp_stream& tcp, const PostRequest& r, PostOutcome& out,
              std::optional<error_code>& failure) {
  auto req = std::make_shared<http::request<http::string_body>>(http::verb::post, r.url.target, 11);
  const bool default_port = r.url.port == (r.url.tls ? 443 : 80);
  req->set(http::field::host, r.url.host + (default_port ? "" : ":" + std::to_string(r.url.port)));
  req->set(http::field::user_agent, "kiln-http-push/0.1");
  req->set(http::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) req->set(name, value);
  req->body() = r.body;
  req->prepare_payload();
  auto buffer = std::make_shared<beast::flat_buffer>();
  auto res = std::make_shared<http::response<http::string_body>>();
  http::async_write(stream, *req, [&, req, buffer, res](error_code ec, size_t) {
    if (ec) {
      failure = ec;
      return;
    }
    http::async_read(stream, *buffer, *res, [&, req, buffer, res](error_code ec2, size_t) {
      if (ec2) {
        failure = ec2;
        return;
      }
      out.status = static_cast<int>(res->result_int());
      if (out.status < 200 || out.status > 299) {
        std::string body = res->body().substr(0, 200);
        out.error = "the server answered " + std::to_string(out.status) + " " + std::string(res->reason()) +
                    (body.empty() ? "" : ": " + body);
      }
      error_code ignored;
      tcp.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  });
}

}  // namespace

PostOutcome HttpPoster::post(const PostRequest& r) {
  PostOutcome out;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->aborted) return {0, "stopped"};
    impl_->io.restart();
  }
  asio::io_context& io = impl_->io;
  std::optional<error_code> failure;
  std::string phase = "resolving " + r.url.host;
  ssl::context tls_context(ssl::context::tls_client);
  beast::tcp_stream tcp(io);
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream&>> tls;
  if (r.url.tls) {
    error_code ec;
    if (!r.tls_ca_file.empty()) {
      tls_context.load_verify_file(r.tls_ca_file, ec);
    } else {
      tls_context.set_default_verify_paths(ec);
    }
    if (ec) return {0, "tls_ca_file '" + r.tls_ca_file + "': " + ec.message()};
    tls = std::make_unique<beast::ssl_stream<beast::tcp_stream&>>(tcp, tls_context);
    SSL_set_tlsext_host_name(tls->native_handle(), r.url.host.c_str());
    if (r.tls_verify) {
      tls->set_verify_mode(ssl::verify_peer);
      tls->set_verify_callback(ssl::host_name_verification(r.url.host));
    } else {
      tls->set_verify_mode(ssl::verify_none);
    }
  }
  tcp.expires_after(std::chrono::milliseconds(static_cast<int64_t>(r.timeout_s * 1000)));
  tcp::resolver resolver(io);
  resolver.async_resolve(r.url.host, std::to_string(r.url.port), [&](error_code ec, tcp::resolver::results_type results) {
    if (ec) {
      failure = ec;
      return;
    }
    phase = "connecting to " + r.url.host + ":" + std::to_string(r.url.port);
    tcp.async_connect(results, [&](error_code ec2, const tcp::endpoint&) {
      if (ec2) {
        failure = ec2;
        return;
      }
      phase = "talking to " + r.url.host + ":" + std::to_string(r.url.port);
      if (!tls) return exchange(tcp, tcp, r, out, failure);
      tls->async_handshake(ssl::stream_base::client, [&](error_code ec3) {
        if (ec3) {
          phase = "the TLS handshake with " + r.url.host;
          failure = ec3;
          return;
        }
        exchange(*tls, tcp, r, out, failure);
      });
    });
  });
  io.run();
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->aborted) return {0, "stopped"};
  }
  if (failure) {
    const std::string what = *failure == beast::error::timeout ? "timed out" : failure->message();
    return {0, phase + ": " + what};
  }
  if (out.status == 0 && out.error.empty()) out.error = phase + ": no answer";
  return out;
}

}  // namespace kiln::http_push
