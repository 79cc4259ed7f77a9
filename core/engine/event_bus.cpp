#include "engine/event_bus.h"

namespace kiln::engine {

uint64_t EventBus::subscribe(std::string pattern, Handler handler) {
  uint64_t id = next_id_++;
  subscriptions_.emplace(id, Subscription{std::move(pattern), std::move(handler)});
  return id;
}

void EventBus::unsubscribe(uint64_t id) { subscriptions_.erase(id); }

void EventBus::publish(const std::string& routing_key, const nlohmann::json& event) {
  // Ids are increasing, so walking by id tolerates (un)subscription during
  // delivery: removed ones are skipped, ones added now are not called.
  const uint64_t last = next_id_;
  for (auto it = subscriptions_.begin(); it != subscriptions_.end() && it->first < last;) {
    const uint64_t id = it->first;
    if (matches(it->second.pattern, routing_key)) {
      Handler handler = it->second.handler;  // may unsubscribe itself
      handler(routing_key, event);
    }
    it = subscriptions_.upper_bound(id);
  }
}

bool EventBus::matches(std::string_view pattern, std::string_view key) {
  while (true) {
    auto p_end = pattern.find('/');
    auto k_end = key.find('/');
    std::string_view p = pattern.substr(0, p_end);
    std::string_view k = key.substr(0, k_end);
    if (p == "#") return true;
    if (p != "+" && p != k) return false;
    const bool p_last = p_end == std::string_view::npos;
    const bool k_last = k_end == std::string_view::npos;
    if (p_last || k_last) {
      // "a/#" also matches "a" itself.
      return p_last == k_last || (!p_last && pattern.substr(p_end + 1) == "#");
    }
    pattern.remove_prefix(p_end + 1);
    key.remove_prefix(k_end + 1);
  }
}

}  // namespace kiln::engine
