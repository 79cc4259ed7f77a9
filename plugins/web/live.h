#pragma once
// Live updates over the /ws WebSocket in Buildbot's message format: a
// client sends {"cmd": "startConsuming", "path": "builds/*/*", "_id": 1}
// (stopConsuming, ping likewise) and gets {"_id": 1, "code": 200, "msg":
// "OK"}; every data-API event on a consumed path then arrives as
// {"k": "builds/7/finished", "m": {...}}. `*` matches one path segment.

#include <string>
#include <string_view>
#include <vector>

namespace kiln::web {

// One WebSocket client's subscriptions. Used on the HTTP thread only.
class LiveClient {
 public:
  // Handles one frame from the client and returns the frame to answer.
  std::string on_frame(std::string_view text);
  bool wants(std::string_view routing_key) const;
  bool consuming() const { return !paths_.empty(); }

 private:
  std::vector<std::string> paths_;
};

// The frame that carries one event to a client.
std::string event_frame(std::string_view routing_key, std::string_view event_json);

// True when Buildbot path `path` ("builds/*/new") matches `routing_key`.
bool live_path_matches(std::string_view path, std::string_view routing_key);

}  // namespace kiln::web
