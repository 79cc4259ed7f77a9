#include "engine/event_bus.h"

#include <catch2/catch.hpp>

using kiln::engine::EventBus;

TEST_CASE("routing key patterns match one segment with + and the rest with #") {
  CHECK(EventBus::matches("builds/+/finished", "builds/12/finished"));
  CHECK_FALSE(EventBus::matches("builds/+/finished", "builds/12/new"));
  CHECK_FALSE(EventBus::matches("builds/+/finished", "builds/12/steps/3/finished"));
  CHECK(EventBus::matches("builds/#", "builds/12/steps/3/finished"));
  CHECK(EventBus::matches("builds/#", "builds"));
  CHECK(EventBus::matches("#", "anything/at/all"));
  CHECK(EventBus::matches("logs/42/append", "logs/42/append"));
  CHECK_FALSE(EventBus::matches("logs/42/append", "logs/4/append"));
  CHECK_FALSE(EventBus::matches("logs/42", "logs/42/append"));
}

TEST_CASE("subscribers get matching events and may unsubscribe while being called") {
  EventBus bus;
  std::vector<std::string> seen;
  uint64_t once = 0;
  once = bus.subscribe("builds/+/new", [&](const std::string& key, const nlohmann::json&) {
    seen.push_back("once " + key);
    bus.unsubscribe(once);
  });
  bus.subscribe("builds/#", [&](const std::string& key, const nlohmann::json& event) {
    seen.push_back("all " + key + " " + event.dump());
  });
  bus.publish("builds/1/new", {{"buildid", 1}});
  bus.publish("builds/2/new", {{"buildid", 2}});
  bus.publish("changes/1/new", {});
  CHECK(seen == std::vector<std::string>{"once builds/1/new", "all builds/1/new {\"buildid\":1}",
                                         "all builds/2/new {\"buildid\":2}"});
}
