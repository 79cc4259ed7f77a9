#include "cli/listener_client.h"

#include "cli/control_client.h"

#include <kiln/sdk/base64.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace kiln::cli {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

std::string HttpAnswer::error() const {
  const auto parsed = nlohmann::json::parse(body, nullptr, false);
  if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_string()) {
    return parsed["error"].get<std::string>();
  }
  return body;
}

HttpAnswer http_call(const std::string& master, const std::string& auth, const std::string& method,
                     const std::string& target, const std::string& body, const std::string& listener,
                     std::chrono::milliseconds timeout) {
  const auto colon = master.rfind(':');
  std::string host = master.substr(0, colon);
  const std::string port = master.substr(colon + 1);
  // [::1]:9989
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }

  boost::asio::io_context io;
  tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) throw ControlError("cannot resolve " + master + ": " + ec.message());

  http::request<http::string_body> request{http::string_to_verb(method), target, 11};
  request.set(http::field::host, host);
  request.set(http::field::user_agent, "kiln/" KILN_VERSION);
  if (!body.empty()) request.set(http::field::content_type, "application/json");
  request.set(http::field::authorization, "Basic " + sdk::base64_encode(auth));
  request.body() = body;
  request.prepare_payload();

  // One deadline for the whole exchange, enforced by the stream.
  beast::tcp_stream stream(io);
  stream.expires_after(timeout);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  boost::system::error_code result;
  stream.async_connect(endpoints, [&](const boost::system::error_code& e, const tcp::endpoint&) {
    if (e) {
      result = e;
      return;
    }
    http::async_write(stream, request, [&](const boost::system::error_code& e2, size_t) {
      if (e2) {
        result = e2;
        return;
      }
      http::async_read(stream, buffer, response,
                       [&](const boost::system::error_code& e3, size_t) { result = e3; });
    });
  });
  io.run();

  if (result == beast::error::timeout) {
    throw ControlError(listener + " at " + master + " did not answer within " +
                       std::to_string(timeout.count() / 1000) + " s");
  }
  if (result == boost::asio::error::connection_refused) {
    throw ControlError("cannot connect to " + master + ": connection refused (is " + listener +
                       " listening there?)");
  }
  if (result) throw ControlError("talking to " + master + ": " + result.message());
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return {response.result_int(), std::move(response.body())};
}

HttpAnswer post_change(const std::string& master, const std::string& auth,
                       const nlohmann::json& change, std::chrono::milliseconds timeout) {
  return http_call(master, auth, "POST", "/change",
                   change.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                   "a `sendchange` change source", timeout);
}

}  // namespace kiln::cli
