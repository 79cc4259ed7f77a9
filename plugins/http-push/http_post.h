#pragma once
// One blocking HTTP/1.1 POST (http:// or https:// through OpenSSL) with a
// time limit on the whole exchange, for the push reporters' sending
// thread; abort() from any thread ends one in progress.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kiln::http_push {

struct Url {
  bool tls = false;
  std::string host;
  uint16_t port = 80;
  std::string target = "/";  // path and query

  // Empty host on error, with `error` saying why.
  static Url parse(const std::string& text, std::string& error);
};

struct PostRequest {
  Url url;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  double timeout_s = 30;
  bool tls_verify = true;
  std::string tls_ca_file;
};

struct PostOutcome {
  int status = 0;     // the HTTP status, 0 when there was no answer
  std::string error;  // empty when the server answered 2xx
  bool ok() const { return error.empty(); }
};

class HttpPoster {
 public:
  HttpPoster();
  ~HttpPoster();
  HttpPoster(const HttpPoster&) = delete;
  HttpPoster& operator=(const HttpPoster&) = delete;

  PostOutcome post(const PostRequest& request);
  void abort();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::http_push
