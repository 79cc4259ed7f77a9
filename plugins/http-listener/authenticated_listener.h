#pragma once
// An authenticated HTTP/1.1 listener for plugins that take requests from
// command-line clients: the `sendchange` change source (`kiln sendchange
// --master`) and the `try` scheduler (`kiln try`). It owns a thread with its
// own io_context; a request is matched against the route table (404, 405),
// its HTTP Basic login checked against the configured logins (401, logged
// with the client's address), and only then handed to the plugin's handler,
// which answers once with a status and a JSON body, from any thread.
// Connections are keep-alive, idle ones closed after 30 s, at most 64 at
// once; a body over the limit is refused unread (400).

#include <kiln/plugin_api.h>
#include <kiln/sdk/context.hpp>
#include <kiln/sdk/status.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kiln::http_listener {

struct Login {
  std::string user;
  // The password, or its crypt(3) hash (`openssl passwd -6`, yescrypt ...).
  std::string password;
};

struct Route {
  std::string method;  // "POST", "GET"
  std::string path;    // "/change"; with `prefix`, "/buildsets/" matches "/buildsets/7"
  bool prefix = false;
};

struct ListenerSettings {
  std::string interface = "127.0.0.1";
  uint16_t port = 0;
  std::vector<Login> logins;
  std::vector<Route> routes;
  // The Server header and the Basic realm: "kiln sendchange".
  std::string name;
  size_t max_body_bytes = size_t{1} << 20;
};

struct Request {
  std::string method;
  std::string target;  // the path as sent, query string included
  std::string user;    // the login that was accepted
  std::string peer;    // the client's address
  std::string body;
};

// Answers a request, from any thread; only the first call counts.
using Respond = std::function<void(unsigned status, nlohmann::json body)>;
// Runs on the listener's thread for every authenticated request on a route.
using Handler = std::function<void(Request request, Respond respond)>;
// Runs on the listener's thread (and the caller's for start errors).
using Log = std::function<void(kiln_log_level level, std::string message)>;

class ListenerServer;

class AuthenticatedListener {
 public:
  AuthenticatedListener(ListenerSettings settings, Handler handler, Log log);
  ~AuthenticatedListener();
  AuthenticatedListener(const AuthenticatedListener&) = delete;
  AuthenticatedListener& operator=(const AuthenticatedListener&) = delete;

  // Binds and starts the thread. An error naming the address, or empty.
  std::string start();
  // Stops serving and joins the thread; answers still owed are dropped.
  void stop();
  // The bound port (the chosen one when the settings said 0).
  uint16_t port() const;

 private:
  std::unique_ptr<ListenerServer> server_;
};

// A started listener for a plugin component, logging through its context
// (host logging is safe from any thread). A port it cannot bind is
// KILN_ERR_RETRY: a master that just stopped may still hold it.
sdk::Result<std::unique_ptr<AuthenticatedListener>> start_listener(ListenerSettings settings, Handler handler,
                                                                   const sdk::Context& context);

// Empty when `interface` is an IP address; else what is wrong with it.
std::string interface_problem(const std::string& interface);

// "1 MiB", "512 KiB", "300 bytes": for messages about body limits.
std::string describe_size(size_t bytes);

}  // namespace kiln::http_listener
