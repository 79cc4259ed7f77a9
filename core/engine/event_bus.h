#pragma once
// Data-API events on Buildbot's routing keys ("builds/12/new",
// "logs/7/append", ...), delivered on the loop thread to subscribers whose
// pattern matches: '/'-separated, "+" matches one segment, a trailing "#"
// the rest (plugin_api.h, subscribe).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::engine {

class EventBus {
 public:
  using Handler = std::function<void(const std::string& routing_key, const nlohmann::json& event)>;

  // Loop thread only.
  uint64_t subscribe(std::string pattern, Handler handler);
  void unsubscribe(uint64_t id);
  // Delivers synchronously to every matching subscriber. A handler may
  // (un)subscribe during delivery.
  void publish(const std::string& routing_key, const nlohmann::json& event);

  static bool matches(std::string_view pattern, std::string_view routing_key);

 private:
  struct Subscription {
    std::string pattern;
    Handler handler;
  };
  std::map<uint64_t, Subscription> subscriptions_;
  uint64_t next_id_ = 1;
};

}  // namespace kiln::engine
