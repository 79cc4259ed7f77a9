#include "cron.h"

#include <ctime>

namespace kiln::schedulers {

namespace {

struct FieldSpec {
  const char* key;
  int low, high;
};

sdk::Status read_field(const json& config, const FieldSpec& spec, std::set<int>& out) {
  auto it = config.find(spec.key);
  if (it == config.end() || it->is_null() || (it->is_string() && it->get<std::string>() == "*")) return {};
  std::vector<json> values;
  if (it->is_array()) {
    for (const auto& v : *it) values.push_back(v);
    if (values.empty()) return sdk::invalid_config(std::string(spec.key) + ": an empty list never matches");
  } else {
    values.push_back(*it);
  }
  for (const auto& v : values) {
    if (!v.is_number_integer()) {
      return sdk::invalid_config(std::string(spec.key) + ": " + v.dump() + " is not an integer (or '*')");
    }
    const int64_t n = v.get<int64_t>();
    if (n < spec.low || n > spec.high) {
      return sdk::invalid_config(std::string(spec.key) + ": " + std::to_string(n) + " is outside " +
                                 std::to_string(spec.low) + ".." + std::to_string(spec.high));
    }
    out.insert(static_cast<int>(n));
  }
  return {};
}

// Days since 1970-01-01 of a civil date (proleptic Gregorian), after
// Howard Hinnant's days_from_civil.
int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int64_t y, int m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : kDays[m - 1];
}

// Buildbot numbers weekdays from Monday = 0; 1970-01-01 was a Thursday.
int weekday(int64_t y, int m, int d) {
  const int64_t days = days_from_civil(y, m, d);
  return static_cast<int>(((days + 3) % 7 + 7) % 7);
}

bool allowed(const std::set<int>& set, int value) { return set.empty() || set.count(value) > 0; }

}  // namespace

sdk::Result<CronSpec> CronSpec::make(const json& config) {
  CronSpec spec;
  const FieldSpec fields[] = {{"minute", 0, 59},
                              {"hour", 0, 23},
                              {"day_of_month", 1, 31},
                              {"month", 1, 12},
                              {"day_of_week", 0, 6}};
  std::set<int>* sets[] = {&spec.minutes_, &spec.hours_, &spec.days_, &spec.months_, &spec.weekdays_};
  for (size_t i = 0; i < 5; ++i) {
    if (auto s = read_field(config, fields[i], *sets[i]); !s) return s;
  }
  spec.utc_ = config.value("timezone", std::string("local")) == "UTC";
  return spec;
}

std::optional<uint64_t> CronSpec::next_after(uint64_t after_ms) const {
  const time_t start = static_cast<time_t>(after_ms / 60000 * 60 + 60);
  std::tm tm{};
  if (utc_) {
    ::gmtime_r(&start, &tm);
  } else {
    ::localtime_r(&start, &tm);
  }
  int64_t year = tm.tm_year + 1900;
  int month = tm.tm_mon + 1, day = tm.tm_mday, hour = tm.tm_hour, minute = tm.tm_min;
  const int64_t last_year = year + 8;

  auto next_month = [&] {
    day = 1;
    hour = minute = 0;
    if (++month > 12) {
      month = 1;
      ++year;
    }
  };
  auto next_day = [&] {
    hour = minute = 0;
    if (++day > days_in_month(year, month)) next_month();
  };
  auto next_hour = [&] {
    minute = 0;
    if (++hour > 23) next_day();
  };

  // Cron's rule (and croniter's, which Buildbot uses): when both day fields
  // are restricted, either one matching is enough.
  const bool both_days = !days_.empty() && !weekdays_.empty();
  while (year <= last_year) {
    if (!allowed(months_, month)) {
      next_month();
      continue;
    }
    const int wd = weekday(year, month, day);
    const bool day_ok = both_days ? (days_.count(day) > 0 || weekdays_.count(wd) > 0)
                                  : allowed(days_, day) && allowed(weekdays_, wd);
    if (!day_ok) {
      next_day();
      continue;
    }
    if (!allowed(hours_, hour)) {
      next_hour();
      continue;
    }
    if (!allowed(minutes_, minute)) {
      if (++minute > 59) next_hour();
      continue;
    }
    int64_t seconds = 0;
    if (utc_) {
      seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60;
    } else {
      std::tm local{};
      local.tm_year = static_cast<int>(year - 1900);
      local.tm_mon = month - 1;
      local.tm_mday = day;
      local.tm_hour = hour;
      local.tm_min = minute;
      local.tm_isdst = -1;
      seconds = static_cast<int64_t>(::mktime(&local));
    }
    // A clock set back (daylight saving's end) repeats local times that
    // already passed.
    if (seconds >= 0 && static_cast<uint64_t>(seconds) * 1000 > after_ms) return static_cast<uint64_t>(seconds) * 1000;
    if (++minute > 59) next_hour();
  }
  return std::nullopt;
}

}  // namespace kiln::schedulers
