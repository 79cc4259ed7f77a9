#pragma once
// The body of a POST /change: Buildbot's change fields as JSON, checked
// field by field and turned into what the host's change_add takes. Pure,
// so it is tested without a socket.

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace kiln::sendchange {

// The largest body accepted; a bigger one is refused unread.
inline constexpr size_t kMaxBodyBytes = size_t{1} << 20;

struct ParsedChange {
  // The change for change_add, when error and ignored are empty.
  nlohmann::json change;
  // Why the body was refused (400), naming the field: "field 'files' must
  // be a list of strings".
  std::string error;
  // Why a well-formed change is not added (PBChangeSource's prefix: no
  // file under it).
  std::string ignored;
};

// Fields: who (or author; required), committer, files, comments, project,
// repository, revision (a string, or an integer as svn sends), branch,
// category, codebase, revlink, links (the first becomes the revlink when
// none is given), src (or vc), properties (an object), when (or
// when_timestamp; Unix seconds). Strings may be null. Any other field is
// refused, so a typo does not silently drop data.
//
// With a non-empty `prefix`, files under it keep the rest of their path
// and the others are dropped; a change whose files all fall outside it is
// ignored (one with no files at all is kept).
ParsedChange parse_change_body(std::string_view body, std::string_view prefix);

}  // namespace kiln::sendchange
