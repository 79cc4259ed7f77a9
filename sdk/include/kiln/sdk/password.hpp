// Checking a password against what a master keeps: a crypt(3) hash
// (yescrypt `$y$`, sha512-crypt `$6$`, bcrypt `$2b$`, scrypt `$7$`, as
// `kiln user` and `openssl passwd -6` write them) or, in configuration that
// lists logins, the password itself. The one implementation the store's
// user logins and the plugins' listeners share. Header-only; a user links
// libcrypt (`crypt`).
#pragma once

#include <crypt.h>

#include <memory>
#include <string>
#include <string_view>

namespace kiln::sdk {

// Compares in time that depends on the lengths only, so a timing does not
// tell how much of a guess matched.
inline bool equal_constant_time(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

// Whether `text` looks like a crypt(3) hash of a method libcrypt verifies.
inline bool is_password_hash(std::string_view text) {
  for (std::string_view prefix : {"$y$", "$6$", "$2b$", "$7$"}) {
    if (text.starts_with(prefix) && text.size() > prefix.size() + 8) return true;
  }
  return false;
}

// Whether `password` hashes to `hash`. False for a malformed hash. As
// costly as hashing (tens of milliseconds for yescrypt): by design.
inline bool verify_password_hash(std::string_view password, std::string_view hash) {
  if (password.find('\0') != std::string_view::npos || !hash.starts_with('$')) return false;
  // crypt_r's work area is ~32 KiB: too big for the stack of every caller.
  // Value-initialised, as crypt_r requires of a fresh one.
  auto data = std::make_unique<crypt_data>();
  const std::string text(password), setting(hash);
  const char* computed = crypt_r(text.c_str(), setting.c_str(), data.get());
  if (computed == nullptr) return false;
  return equal_constant_time(computed, hash);
}

// A configured secret: a crypt(3) hash is verified, anything else compared
// as the password itself.
inline bool password_matches(std::string_view password, std::string_view configured) {
  if (is_password_hash(configured)) return verify_password_hash(password, configured);
  return equal_constant_time(password, configured);
}

}  // namespace kiln::sdk
