#pragma once
// The TLS side of a plugin's listener: `tls: {cert, key}` in a component's
// config (PEM files, relative to the master folder) and the OpenSSL server
// context made from them, TLS 1.2 and later. One place for every listener
// that serves TLS: buildbot-worker's wss:// and the web status target's
// https://. Header-only (target kiln_tls_server): each plugin compiles it
// into its own library.

#include <boost/asio/ssl/context.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace kiln::tls {

// The certificate (chain) and key files of a TLS listener, PEM.
struct TlsFiles {
  std::string cert, key;
  bool operator==(const TlsFiles& o) const { return cert == o.cert && key == o.key; }
};

// The files of the component's `tls` key, resolved against the master's
// folder; nullopt when the key is absent. (The schema checked the shape.)
inline std::optional<TlsFiles> tls_files(const nlohmann::json& config, const std::filesystem::path& master_dir) {
  auto t = config.find("tls");
  if (t == config.end() || !t->is_object()) return std::nullopt;
  auto resolve = [&](const char* key) { return (master_dir / t->value(key, std::string())).string(); };
  return TlsFiles{resolve("cert"), resolve("key")};
}

// Loads `files` into a server context: the error (naming the file and
// OpenSSL's reason), or empty.
inline std::string load_server_context(boost::asio::ssl::context& context, const TlsFiles& files) {
  namespace ssl = boost::asio::ssl;
  boost::system::error_code ec;
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                          ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                      ec);
  context.use_certificate_chain_file(files.cert, ec);
  if (ec) return "tls: cannot use the certificate '" + files.cert + "': " + ec.message();
  context.use_private_key_file(files.key, ssl::context::pem, ec);
  if (ec) return "tls: cannot use the key '" + files.key + "': " + ec.message();
  return {};
}

}  // namespace kiln::tls
