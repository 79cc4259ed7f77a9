#include "store/records.h"

#include "store/store.h"

#include <array>
#include <utility>

namespace kiln::store {
namespace {

constexpr std::array<std::pair<std::string_view, Resource>, 11> kResources{{
    {"builders", Resource::kBuilders},
    {"builds", Resource::kBuilds},
    {"steps", Resource::kSteps},
    {"logs", Resource::kLogs},
    {"changes", Resource::kChanges},
    {"buildsets", Resource::kBuildsets},
    {"buildrequests", Resource::kBuildrequests},
    {"workers", Resource::kWorkers},
    {"masters", Resource::kMasters},
    {"sourcestamps", Resource::kSourcestamps},
    {"users", Resource::kUsers},
}};

constexpr std::array<std::pair<std::string_view, FilterOp>, 8> kOps{{
    {"eq", FilterOp::kEq},
    {"ne", FilterOp::kNe},
    {"lt", FilterOp::kLt},
    {"le", FilterOp::kLe},
    {"gt", FilterOp::kGt},
    {"ge", FilterOp::kGe},
    {"contains", FilterOp::kContains},
    {"in", FilterOp::kIn},
}};

}  // namespace

std::optional<Resource> resource_from_name(std::string_view name) {
  for (const auto& [n, r] : kResources) {
    if (n == name) return r;
  }
  return std::nullopt;
}

std::string_view resource_name(Resource resource) {
  for (const auto& [n, r] : kResources) {
    if (r == resource) return n;
  }
  return {};
}

std::optional<FilterOp> filter_op_from_name(std::string_view name) {
  for (const auto& [n, op] : kOps) {
    if (n == name) return op;
  }
  return std::nullopt;
}

std::string prefix_stdio_lines(char stream, std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32 + 2);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    out += stream;
    out.append(text.substr(pos, end - pos));
    out += '\n';
    pos = end + 1;
  }
  return out;
}

}  // namespace kiln::store
