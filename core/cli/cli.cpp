#include "cli/cli.h"

#include <cstdio>

namespace kiln::cli {

int run(int, char**) {
  std::puts("kiln " KILN_VERSION);
  return 0;
}

}  // namespace kiln::cli
