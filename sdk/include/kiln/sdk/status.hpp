#pragma once
// Errors as values for plugin code: Status (a kiln_status plus a message),
// Result<T> (a value or a Status), Error (the exception the SDK's edge turns
// back into a Status), and the conversions between kiln_str/kiln_bytes and
// std::string_view.

#include <kiln/plugin_api.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace kiln::sdk {

// Borrowed views: valid only as long as what they point into.
inline std::string_view view(kiln_str s) {
  return s.ptr != nullptr ? std::string_view(s.ptr, s.len) : std::string_view();
}
inline std::string_view view(kiln_bytes b) {
  return b.ptr != nullptr ? std::string_view(reinterpret_cast<const char*>(b.ptr), b.len)
                          : std::string_view();
}
inline kiln_str str(std::string_view s) { return kiln_str{s.data(), s.size()}; }
inline kiln_bytes bytes(std::string_view s) {
  return kiln_bytes{reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

inline const char* status_name(kiln_status status) {
  switch (status) {
    case KILN_OK: return "ok";
    case KILN_ERR_INVALID_CONFIG: return "invalid config";
    case KILN_ERR_INVALID_ARGUMENT: return "invalid argument";
    case KILN_ERR_UNSUPPORTED: return "unsupported";
    case KILN_ERR_NOT_FOUND: return "not found";
    case KILN_ERR_RETRY: return "retry";
    case KILN_ERR_REFUSED: return "refused";
    case KILN_ERR_CANCELLED: return "cancelled";
    case KILN_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

// KILN_OK by default; otherwise a code and a message meant for the user.
class Status {
 public:
  Status() = default;
  Status(kiln_status code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == KILN_OK; }
  explicit operator bool() const { return ok(); }
  kiln_status code() const { return code_; }
  const std::string& message() const { return message_; }
  // "unsupported: this host does not offer post"
  std::string to_string() const {
    return message_.empty() ? status_name(code_) : std::string(status_name(code_)) + ": " + message_;
  }
  // For code that prefers exceptions: the SDK's edge turns the Error back
  // into this status.
  inline void throw_if_error() const;

 private:
  kiln_status code_ = KILN_OK;
  std::string message_;
};

// Thrown by plugin code (or Status::throw_if_error) to fail with a specific
// status; any other exception reaching the SDK's edge becomes
// KILN_ERR_INTERNAL.
class Error : public std::runtime_error {
 public:
  Error(kiln_status code, const std::string& message)
      : std::runtime_error(message), code_(code == KILN_OK ? KILN_ERR_INTERNAL : code) {}
  explicit Error(const Status& status) : Error(status.code(), status.message()) {}
  kiln_status code() const { return code_; }
  Status status() const { return Status(code_, what()); }

 private:
  kiln_status code_;
};

inline void Status::throw_if_error() const {
  if (!ok()) throw Error(*this);
}

inline Status invalid_config(std::string message) {
  return Status(KILN_ERR_INVALID_CONFIG, std::move(message));
}

// A value, or the Status that explains why there is none.
template <class T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}
  // An OK status carries no value, which is a bug in the caller: it reads as
  // an internal error rather than as an empty success.
  Result(Status error)
      : status_(error.ok() ? Status(KILN_ERR_INTERNAL, "result without a value") : std::move(error)) {}

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Status& status() const { return status_; }

  // Throws Error(status()) when there is no value.
  T& value() & {
    check();
    return *value_;
  }
  const T& value() const& {
    check();
    return *value_;
  }
  T&& value() && {
    check();
    return std::move(*value_);
  }
  T value_or(T fallback) const { return value_ ? *value_ : std::move(fallback); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void check() const {
    if (!value_) throw Error(status_);
  }
  std::optional<T> value_;
  Status status_;
};

}  // namespace kiln::sdk
