#pragma once
// Nightly's calendar: the five cron fields (Buildbot's minute, hour,
// dayOfMonth, month, dayOfWeek with Monday = 0) and the next time they
// match, computed from a given instant so the host's clock (injected in
// tests) decides everything.

#include "common.h"

#include <cstdint>
#include <optional>
#include <set>

namespace kiln::schedulers {

class CronSpec {
 public:
  // config: {minute, hour, day_of_month, month, day_of_week, timezone},
  // each field an int, a list of ints, or "*".
  static sdk::Result<CronSpec> make(const json& config);

  // The first whole minute strictly after `after_ms` (ms since the epoch)
  // that matches, or nullopt when none does within eight years (e.g. the
  // 31st of February).
  std::optional<uint64_t> next_after(uint64_t after_ms) const;

 private:
  // Empty: every value ("*").
  std::set<int> minutes_, hours_, days_, months_, weekdays_;
  bool utc_ = false;
};

}  // namespace kiln::schedulers
