#pragma once
// kiln::sdk::component<T>(): the kiln_component_desc for a class derived
// from one of the base classes in components.hpp. Every function the host
// can call is a noexcept trampoline into T that catches everything: an
// exception becomes host->error_set(err, KILN_ERR_INTERNAL, "type: what()")
// and a non-OK status (kiln::sdk::Error keeps its own status), or an error
// in the host's log for functions that return nothing.

#include <kiln/sdk/components.hpp>

#include <nlohmann/json.hpp>

#include <concepts>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

// True when T declares its own m instead of inheriting Base's: &T::m then
// has type `R (T::*)(...)` rather than `R (Base::*)(...)`.
#define KILN_SDK_OVERRIDES(T, Base, m) (!std::is_same_v<decltype(&T::m), decltype(&Base::m)>)

namespace kiln::sdk {
namespace detail {

// What component<T>() found wrong (kind that does not match the base
// class, schema that is not a JSON object): KILN_PLUGIN's entry refuses to
// load with these, so an author's mistake shows at load time, not later.
KILN_SDK_LOCAL inline std::vector<std::string>& setup_problems() {
  static std::vector<std::string> problems;
  return problems;
}

template <class T>
constexpr kiln_component_kind kind_of() {
  static_assert(std::is_base_of_v<ChangeSource, T> + std::is_base_of_v<Scheduler, T> +
                        std::is_base_of_v<Step, T> + std::is_base_of_v<Worker, T> +
                        std::is_base_of_v<Reporter, T> + std::is_base_of_v<Policy, T> ==
                    1,
                "a component derives from exactly one of ChangeSource, Scheduler, Step, "
                "Worker, Reporter, Policy");
  if constexpr (std::is_base_of_v<ChangeSource, T>) return KILN_KIND_CHANGE_SOURCE;
  if constexpr (std::is_base_of_v<Scheduler, T>) return KILN_KIND_SCHEDULER;
  if constexpr (std::is_base_of_v<Step, T>) return KILN_KIND_STEP;
  if constexpr (std::is_base_of_v<Worker, T>) return KILN_KIND_WORKER;
  if constexpr (std::is_base_of_v<Reporter, T>) return KILN_KIND_REPORTER;
  return KILN_KIND_POLICY;
}

inline const char* kind_name(kiln_component_kind kind) {
  switch (kind) {
    case KILN_KIND_CHANGE_SOURCE: return "change_source";
    case KILN_KIND_SCHEDULER: return "scheduler";
    case KILN_KIND_STEP: return "step";
    case KILN_KIND_WORKER: return "worker";
    case KILN_KIND_REPORTER: return "reporter";
    case KILN_KIND_POLICY: return "policy";
  }
  return "unknown";
}

template <class T>
concept HasValidate = requires(const nlohmann::json& config) { T::validate(config); };
template <class T>
concept HasReconfigure = requires(T& t, const nlohmann::json& config) { t.reconfigure(config); };

template <class R, class Fn>
Status as_status(Fn&& fn) {
  if constexpr (std::is_void_v<R>) {
    fn();
    return {};
  } else {
    return Status(fn());
  }
}

template <class T>
struct Adapter {
  static inline const char* type_name = "component";

  static T* self(void* instance) { return static_cast<T*>(instance); }

  static std::string prefixed(std::string_view message) {
    return std::string(type_name) + ": " + std::string(message);
  }

  static kiln_status fail(kiln_error* err, kiln_status code, const char* what) noexcept {
    try {
      Host::error_set(err, code, prefixed(what));
    } catch (...) {
      Host::error_set(err, code, what);  // no memory for the prefix
    }
    return code;
  }

  // Runs fn (returning Status) with nothing escaping.
  template <class Fn>
  static kiln_status guard(kiln_error* err, Fn&& fn) noexcept {
    try {
      Status s = fn();
      if (s.ok()) return KILN_OK;
      return fail(err, s.code(), s.message().c_str());
    } catch (const Error& e) {
      return fail(err, e.code(), e.what());
    } catch (const std::exception& e) {
      return fail(err, KILN_ERR_INTERNAL, e.what());
    } catch (...) {
      return fail(err, KILN_ERR_INTERNAL, "exception of unknown type");
    }
  }

  template <class Fn>
  static void guard_void(void* instance, const char* where, Fn&& fn) noexcept {
    try {
      fn();
    } catch (...) {
      self(instance)->ctx_.state()->log_exception(where);
    }
  }

  static nlohmann::json parse_object(kiln_str text, kiln_status code, const char* what) {
    if (view(text).empty()) return nlohmann::json::object();
    auto value = nlohmann::json::parse(view(text), nullptr, false);
    if (value.is_discarded()) throw Error(code, std::string(what) + " is not valid JSON");
    return value;
  }
  static nlohmann::json parse_config(kiln_str text) {
    auto config = parse_object(text, KILN_ERR_INVALID_CONFIG, "the configuration");
    if (!config.is_object()) throw Error(KILN_ERR_INVALID_CONFIG, "the configuration must be a JSON object");
    return config;
  }

  // --- kiln_component_desc ---------------------------------------------
  static kiln_status validate(kiln_str config_json, kiln_error* err) noexcept {
    return guard(err, [&]() -> Status {
      const nlohmann::json config = parse_config(config_json);
      return as_status<decltype(T::validate(config))>([&] { return T::validate(config); });
    });
  }

  static kiln_status create(kiln_ctx* ctx, kiln_str config_json, void** out_instance,
                            kiln_error* err) noexcept {
    if (out_instance == nullptr) return fail(err, KILN_ERR_INVALID_ARGUMENT, "create without out_instance");
    *out_instance = nullptr;
    return guard(err, [&]() -> Status {
      const nlohmann::json config = parse_config(config_json);
      auto instance = std::make_unique<T>(Context(ctx, type_name), config);
      *out_instance = instance.release();  // the host owns it until destroy()
      return {};
    });
  }

  static kiln_status reconfigure(void* instance, kiln_str config_json, kiln_error* err) noexcept {
    return guard(err, [&]() -> Status {
      const nlohmann::json config = parse_config(config_json);
      Status s = as_status<decltype(self(instance)->reconfigure(config))>(
          [&] { return self(instance)->reconfigure(config); });
      if (s.ok()) self(instance)->config_ = config;
      return s;
    });
  }

  static void destroy(void* instance) noexcept {
    if (instance == nullptr) return;
    kiln_ctx* ctx = self(instance)->ctx_.raw();
    try {
      std::unique_ptr<T> owned(self(instance));
    } catch (...) {
      // The instance is gone with its context: log through the host alone.
      Host::log(ctx, KILN_LOG_ERROR, "exception while destroying a component");
    }
  }

  // --- vtables ----------------------------------------------------------
  static kiln_status start(void* i, kiln_error* err) noexcept {
    return guard(err, [&] { return self(i)->start(); });
  }
  static void stop(void* i) noexcept {
    guard_void(i, "stop", [&] { self(i)->stop(); });
  }
  static kiln_status poll(void* i, kiln_error* err) noexcept {
    return guard(err, [&] { return self(i)->poll(); });
  }
  static void on_change(void* i, kiln_str change_json) noexcept {
    guard_void(i, "on_change", [&] {
      self(i)->on_change(parse_object(change_json, KILN_ERR_INVALID_ARGUMENT, "a change"));
    });
  }
  // Requests answered through a Reply: a request that fails at once is
  // answered by the return status alone.
  template <class Fn>
  static kiln_status with_reply(kiln_json_cb cb, void* user, Fn&& fn) noexcept {
    Reply reply;  // empty until made inside the guard: making it allocates
    kiln_status rc = guard(nullptr, [&]() -> Status {
      reply = Reply(cb, user, type_name);
      return fn(reply);
    });
    if (rc != KILN_OK) reply.disarm();
    return rc;
  }
  static kiln_status control(void* i, kiln_str action, kiln_str args_json, kiln_json_cb cb,
                             void* user) noexcept {
    return with_reply(cb, user, [&](const Reply& reply) {
      return self(i)->control(view(action), parse_object(args_json, KILN_ERR_INVALID_ARGUMENT, "the arguments"),
                              reply);
    });
  }
  static kiln_status run(void* i, kiln_error* err) noexcept {
    return guard(err, [&] { return self(i)->run(); });
  }
  static void interrupt(void* i, kiln_str reason) noexcept {
    guard_void(i, "interrupt", [&] { self(i)->interrupt(view(reason)); });
  }
  static kiln_status command_start(void* i, uint64_t id, kiln_str name, kiln_str args_json,
                                   kiln_error* err) noexcept {
    return guard(err, [&] {
      return self(i)->command_start(id, view(name),
                                    parse_object(args_json, KILN_ERR_INVALID_ARGUMENT, "the arguments"));
    });
  }
  static kiln_status command_interrupt(void* i, uint64_t id, kiln_str reason) noexcept {
    return guard(nullptr, [&] { return self(i)->command_interrupt(id, view(reason)); });
  }
  static kiln_status substantiate(void* i, kiln_str build_json, kiln_json_cb done, void* user) noexcept {
    return with_reply(done, user, [&](const Reply& reply) {
      return self(i)->substantiate(parse_object(build_json, KILN_ERR_INVALID_ARGUMENT, "the build"), reply);
    });
  }
  static kiln_status insubstantiate(void* i, kiln_json_cb done, void* user) noexcept {
    return with_reply(done, user, [&](const Reply& reply) { return self(i)->insubstantiate(reply); });
  }
  static kiln_status policy_call(void* i, kiln_str args_json, kiln_text_cb out, void* out_user,
                                 kiln_error* err) noexcept {
    return guard(err, [&]() -> Status {
      Result<nlohmann::json> answer =
          self(i)->call(parse_object(args_json, KILN_ERR_INVALID_ARGUMENT, "the arguments"));
      if (!answer) return answer.status();
      const std::string text = answer->dump();
      if (out != nullptr) out(out_user, str(text));
      return {};
    });
  }

  static const void* vtable() {
    constexpr kiln_component_kind kind = kind_of<T>();
    if constexpr (kind == KILN_KIND_CHANGE_SOURCE) {
      static const kiln_change_source_vtable v = {
          sizeof(v), &start, &stop, KILN_SDK_OVERRIDES(T, ChangeSource, poll) ? &poll : nullptr};
      return &v;
    } else if constexpr (kind == KILN_KIND_SCHEDULER) {
      static const kiln_scheduler_vtable v = {
          sizeof(v), &start, &stop, KILN_SDK_OVERRIDES(T, Scheduler, on_change) ? &on_change : nullptr,
          KILN_SDK_OVERRIDES(T, Scheduler, control) ? &control : nullptr};
      return &v;
    } else if constexpr (kind == KILN_KIND_STEP) {
      static const kiln_step_vtable v = {sizeof(v), &run, &interrupt};
      return &v;
    } else if constexpr (kind == KILN_KIND_WORKER) {
      static const kiln_worker_vtable v = {
          sizeof(v),
          &start,
          &stop,
          &command_start,
          &command_interrupt,
          KILN_SDK_OVERRIDES(T, Worker, substantiate) ? &substantiate : nullptr,
          KILN_SDK_OVERRIDES(T, Worker, insubstantiate) ? &insubstantiate : nullptr,
          KILN_SDK_OVERRIDES(T, Worker, control) ? &control : nullptr};
      return &v;
    } else if constexpr (kind == KILN_KIND_REPORTER) {
      static const kiln_reporter_vtable v = {sizeof(v), &start, &stop};
      return &v;
    } else {
      static_assert(requires {
        { T::kHook } -> std::convertible_to<const char*>;
      }, "a Policy declares the hook it fills: static constexpr const char* kHook = \"...\";");
      static const kiln_policy_vtable v = {sizeof(v), T::kHook, &policy_call};
      return &v;
    }
  }
};

// Only taken when T has the hook: taking the address instantiates the body.
template <class T>
constexpr auto validate_fn() {
  if constexpr (HasValidate<T>) {
    return &Adapter<T>::validate;
  } else {
    return static_cast<kiln_status (*)(kiln_str, kiln_error*)>(nullptr);
  }
}
template <class T>
constexpr auto reconfigure_fn() {
  if constexpr (HasReconfigure<T>) {
    return &Adapter<T>::reconfigure;
  } else {
    return static_cast<kiln_status (*)(void*, kiln_str, kiln_error*)>(nullptr);
  }
}

}  // namespace detail

// The descriptor of component type T, for KILN_PLUGIN's list. The strings
// must live as long as the library (string literals). `kind` must match T's
// base class and `config_schema`, when given, must be a JSON Schema object;
// otherwise the plugin refuses to load and says why. T may add
//   static Status validate(const nlohmann::json& config);   (or void + throw)
//   Status reconfigure(const nlohmann::json& config);       (or void + throw)
// for checks beyond the schema and for changing config in place.
template <class T>
const kiln_component_desc* component(kiln_component_kind kind, const char* type_name, const char* version,
                                     const char* summary, const char* config_schema = nullptr) {
  static_assert(std::is_base_of_v<Component, T>, "a component derives from a kiln::sdk base class");
  static_assert(std::is_constructible_v<T, Context, const nlohmann::json&>,
                "a component has a constructor (kiln::sdk::Context, const nlohmann::json& config)");
  using A = detail::Adapter<T>;
  const std::string name = type_name != nullptr && *type_name != '\0' ? type_name : "(unnamed)";
  A::type_name = type_name != nullptr ? type_name : "component";
  auto& problems = detail::setup_problems();
  if (name == "(unnamed)") problems.push_back("a component has no type name");
  if (kind != detail::kind_of<T>()) {
    problems.push_back(name + ": declared as a " + detail::kind_name(kind) + " but its class is a " +
                       detail::kind_name(detail::kind_of<T>()));
  }
  if (config_schema != nullptr) {
    auto schema = nlohmann::json::parse(config_schema, nullptr, false);
    if (schema.is_discarded() || !schema.is_object()) {
      problems.push_back(name + ": its config schema is not a JSON object");
    }
  }
  static const kiln_component_desc desc = {
      sizeof(kiln_component_desc),
      static_cast<uint32_t>(kind),
      type_name,
      version,
      summary,
      config_schema,
      detail::validate_fn<T>(),
      &A::create,
      detail::reconfigure_fn<T>(),
      &A::destroy,
      A::vtable(),
  };
  return &desc;
}

}  // namespace kiln::sdk
