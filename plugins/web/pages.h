#pragma once
// The plain HTML pages: every page is a static document whose script reads
// the REST API and follows /ws, so a page view costs one page load, a
// request or two and one live subscription.

#include "http_types.h"

namespace kiln::web {

// "/" (builders), "/builders/NAME_OR_ID" (a builder's builds) and
// "/builds/ID" (steps and logs of a build); anything else is a JSON 404.
Response page(const Request& request);

}  // namespace kiln::web
