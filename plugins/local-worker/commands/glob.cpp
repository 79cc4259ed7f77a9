// Python's glob module (3.x, recursive=True), which Buildbot's glob command
// calls, rebuilt on readdir and fnmatch(3).

#include "commands.h"

#include <dirent.h>
#include <fnmatch.h>
#include <sys/stat.h>

namespace kiln::worker::detail {

namespace {

bool has_magic(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }
bool is_hidden(const std::string& name) { return !name.empty() && name.front() == '.'; }
bool is_recursive(const std::string& pattern) { return pattern == "**"; }

bool lexists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}
bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (!name.empty() && name.front() == '/') return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// (dirname, basename) as os.path.split: trailing slashes of the head are
// dropped unless it is all slashes.
std::pair<std::string, std::string> split(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return {"", path};
  std::string head = path.substr(0, slash + 1), tail = path.substr(slash + 1);
  if (head.find_first_not_of('/') != std::string::npos) {
    while (!head.empty() && head.back() == '/') head.pop_back();
  }
  return {head, tail};
}

std::vector<std::string> list_dir(const std::string& dir, bool dir_only) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.empty() ? "." : dir.c_str());
  if (d == nullptr) return names;
  while (dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (dir_only && !is_dir(join(dir, name))) continue;
    names.push_back(std::move(name));
  }
  ::closedir(d);
  return names;
}

std::vector<std::string> glob1(const std::string& dir, const std::string& pattern, bool dir_only) {
  std::vector<std::string> out;
  for (auto& name : list_dir(dir, dir_only)) {
    if (!is_hidden(pattern) && is_hidden(name)) continue;
    if (::fnmatch(pattern.c_str(), name.c_str(), 0) == 0) out.push_back(std::move(name));
  }
  return out;
}

std::vector<std::string> glob0(const std::string& dir, const std::string& base, bool) {
  if (base.empty()) return is_dir(dir) ? std::vector<std::string>{base} : std::vector<std::string>{};
  return lexists(join(dir, base)) ? std::vector<std::string>{base} : std::vector<std::string>{};
}

void rlist_dir(const std::string& dir, bool dir_only, const std::string& prefix, std::vector<std::string>& out) {
  for (const auto& name : list_dir(dir, dir_only)) {
    if (is_hidden(name)) continue;
    out.push_back(join(prefix, name));
    rlist_dir(join(dir, name), dir_only, join(prefix, name), out);
  }
}

std::vector<std::string> glob2(const std::string& dir, const std::string&, bool dir_only) {
  std::vector<std::string> out{""};
  rlist_dir(dir, dir_only, "", out);
  return out;
}

std::vector<std::string> iglob(const std::string& pathname, bool dir_only) {
  auto [dirname, basename] = split(pathname);
  if (!has_magic(pathname)) {
    if (!basename.empty() ? lexists(pathname) : is_dir(dirname)) return {pathname};
    return {};
  }
  if (dirname.empty()) {
    return is_recursive(basename) ? glob2("", basename, dir_only) : glob1("", basename, dir_only);
  }
  std::vector<std::string> dirs;
  if (dirname != pathname && has_magic(dirname)) {
    dirs = iglob(dirname, true);
  } else {
    dirs = {dirname};
  }
  auto in_dir = !has_magic(basename) ? &glob0 : is_recursive(basename) ? &glob2 : &glob1;
  std::vector<std::string> out;
  for (const auto& dir : dirs) {
    for (const auto& name : in_dir(dir, basename, dir_only)) out.push_back(join(dir, name));
  }
  return out;
}

}  // namespace

std::vector<std::string> glob(const std::string& pattern) {
  return iglob(pattern, false);
}

}  // namespace kiln::worker::detail
