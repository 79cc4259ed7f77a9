#pragma once
// What Subversion prints and kiln-svn reads, kept apart from the components
// so the parsing rules sit in one place: a small XML reader for the --xml
// output of `svn log` and `svn info`, and Buildbot's split_file functions
// that turn a repository path into (branch, project, path).

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::svn {

// An XML element: name, attributes, its text (the concatenated character
// data directly inside it) and child elements. Enough for svn's output; no
// namespaces, DTDs or processing instructions beyond the declaration.
struct XmlElement {
  std::string name;
  std::map<std::string, std::string> attributes;
  std::string text;
  std::vector<XmlElement> children;

  const XmlElement* child(std::string_view child_name) const;
  std::string attribute(const std::string& key) const;
};
// The document's root element, or nullopt (with why) when it is not XML.
std::optional<XmlElement> parse_xml(std::string_view text, std::string* error = nullptr);

// `svn info --xml URL`: the repository root and the HEAD revision.
struct RepositoryInfo {
  std::string root;
  int64_t revision = 0;
};
std::optional<RepositoryInfo> parse_info(std::string_view xml);

// One path of a log entry, root-relative without its leading '/'; a
// folder's path ends with '/'.
struct LoggedPath {
  std::string path;
  std::string action;  // A, M, D or R
};
struct LogEntry {
  int64_t revision = 0;
  std::string author, message;
  int64_t when = 0;  // seconds since the epoch; 0 when svn gave no date
  std::vector<LoggedPath> paths;
};
// `svn log --xml --verbose`, in the order svn printed it.
std::optional<std::vector<LogEntry>> parse_log(std::string_view xml, std::string* error = nullptr);

// "2023-05-01T10:00:00.123456Z" -> seconds since the epoch.
std::optional<int64_t> parse_svn_date(std::string_view text);

// Where repourl sits below the repository root: "amanda/trunk" for
// root "svn://host/repo" and repourl "svn://host/repo/amanda/trunk/".
// nullopt when root is not a prefix of repourl.
std::optional<std::string> url_prefix(std::string_view root, std::string_view repourl);

// Buildbot's splitters, answering as a split_file policy does:
// {"path", optional "branch", "project"} or null for a file of no interest.
nlohmann::json split_file_alwaystrunk(const std::string& path);
nlohmann::json split_file_branches(const std::string& path);
nlohmann::json split_file_projects_branches(const std::string& path);

}  // namespace kiln::svn
