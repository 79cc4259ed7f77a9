// Test policies for the VCS pollers: the custom split_file functions of
// Buildbot's "Customizing SVNPoller" (customization.rst), as a user would
// write them in a policy plugin of their own.

#include <kiln/sdk/plugin.hpp>

#include <string>
#include <vector>

namespace {

using nlohmann::json;
namespace sdk = kiln::sdk;

std::vector<std::string> pieces_of(const std::string& path) {
  std::vector<std::string> pieces;
  size_t start = 0;
  for (;;) {
    const size_t slash = path.find('/', start);
    pieces.push_back(path.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
    if (slash == std::string::npos) return pieces;
    start = slash + 1;
  }
}

// The BRANCHNAME/PROJECT/FILEPATH layout (Divmod's): trunk/Nevow/x is
// Nevow's x on the trunk, branches/1.5.x/Nevow/x on branch
// "branches/1.5.x". With `only_project`, other projects' files are ignored
// and no project is named (my_file_splitter); without it, every project's
// files count and the change names its project.
class BranchProjectSplit : public sdk::Policy {
 public:
  static constexpr const char* kHook = "split_file";
  using Policy::Policy;
  sdk::Result<json> call(const json& args) override {
    std::vector<std::string> pieces = pieces_of(args.at("path").get<std::string>());
    json branch;
    size_t next = 0;
    if (pieces[0] == "trunk") {
      next = 1;
    } else if (pieces[0] == "branches" && pieces.size() > 1) {
      branch = "branches/" + pieces[1];
      next = 2;
    } else {
      return json();  // something weird
    }
    if (next >= pieces.size()) return json();
    const std::string project = pieces[next++];
    std::string path;
    for (size_t i = next; i < pieces.size(); ++i) path += (i > next ? "/" : "") + pieces[i];
    const std::string only = config().value("only_project", "");
    if (!only.empty()) {
      if (project != only) return json();  // wrong project
      return json{{"branch", branch}, {"path", path}};
    }
    return json{{"project", project}, {"branch", branch}, {"path", path}};
  }
};

// Answers what no split_file may answer, to test the poller's complaint.
class BadSplit : public sdk::Policy {
 public:
  static constexpr const char* kHook = "split_file";
  using Policy::Policy;
  sdk::Result<json> call(const json&) override { return json(42); }
};

constexpr const char* kSplitSchema = R"({"type": "object",
  "properties": {"only_project": {"type": "string"}}, "additionalProperties": false})";
constexpr const char* kNoConfig = R"({"type": "object", "properties": {}, "additionalProperties": false})";

}  // namespace

KILN_PLUGIN("kiln-vcs-policies", "1.0.0", "Test plugin: split_file policies", "test-only",
            sdk::component<BranchProjectSplit>(KILN_KIND_POLICY, "branch-project-split", "1.0.0",
                                               "BRANCH/PROJECT/FILE layout", kSplitSchema),
            sdk::component<BadSplit>(KILN_KIND_POLICY, "bad-split", "1.0.0", "answers 42", kNoConfig));
