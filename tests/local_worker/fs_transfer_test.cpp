// The local worker's file-system and transfer commands on real files.

#include "local_worker/worker_fixture.h"

#include <cerrno>
#include <cstdio>
#include <set>

#include <sys/stat.h>

using namespace kiln::local_worker_test;

namespace {

json update_of(const CommandRecord& c, const std::string& key) {
  for (const auto& u : c.updates) {
    if (u.contains(key)) return u[key];
  }
  return nullptr;
}

// `tar -t` of an archive, one member per line.
std::set<std::string> tar_members(const fs::path& archive, const std::string& flags) {
  std::set<std::string> members;
  const std::string command = "tar -t" + flags + "f '" + archive.string() + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char line[4096];
  while (std::fgets(line, sizeof line, pipe)) {
    std::string name(line);
    if (!name.empty() && name.back() == '\n') name.pop_back();
    members.insert(name);
  }
  CHECK(::pclose(pipe) == 0);
  return members;
}

}  // namespace

TEST_CASE("stat reports the ten fields of a file, and errno with a header for a missing path") {
  WorkerFixture w;
  w.start();
  write_file(w.root() / "f.txt", "12345");
  const auto& c = w.run("stat", {{"path", (w.root() / "f.txt").string()}});
  CHECK((*c.result)["rc"] == 0);
  json st = update_of(c, "stat");
  REQUIRE(st.is_array());
  REQUIRE(st.size() == 10);
  CHECK(S_ISREG(st[0].get<int>()));
  CHECK(st[6] == 5);

  const std::string missing = (w.root() / "nope").string();
  const auto& m = w.run("stat", {{"path", missing}});
  CHECK((*m.result)["rc"] == ENOENT);
  CHECK(m.header == "stat: No such file or directory: " + missing + "\n");
}

TEST_CASE("glob matches recursively with ** and skips hidden names") {
  WorkerFixture w;
  w.start();
  const fs::path r = w.root() / "g";
  for (const char* f : {"a/x.txt", "a/b/y.txt", "a/.hidden.txt", "a/c.log", "top.txt"}) write_file(r / f, "");
  const auto& c = w.run("glob", {{"path", (r / "**" / "*.txt").string()}});
  CHECK((*c.result)["rc"] == 0);
  auto files = update_of(c, "files").get<std::set<std::string>>();
  CHECK(files == std::set<std::string>{(r / "top.txt").string(), (r / "a/x.txt").string(),
                                       (r / "a/b/y.txt").string()});

  const auto& flat = w.run("glob", {{"path", (r / "a" / "*.txt").string()}});
  CHECK(update_of(flat, "files") == json::array({(r / "a/x.txt").string()}));
}

TEST_CASE("listdir lists names, and reports errno for a missing directory") {
  WorkerFixture w;
  w.start();
  write_file(w.root() / "d" / "one", "");
  write_file(w.root() / "d" / "two", "");
  const auto& c = w.run("listdir", {{"path", (w.root() / "d").string()}});
  CHECK(update_of(c, "files").get<std::set<std::string>>() == std::set<std::string>{"one", "two"});
  CHECK((*c.result)["rc"] == 0);

  const auto& m = w.run("listdir", {{"path", (w.root() / "missing").string()}});
  CHECK((*m.result)["rc"] == ENOENT);
  CHECK(m.header.rfind("listdir: No such file or directory: ", 0) == 0);
}

TEST_CASE("mkdir creates parents and stops at the first failure with its errno") {
  WorkerFixture w;
  w.start();
  write_file(w.root() / "file", "x");
  const fs::path made = w.root() / "p" / "q" / "r";
  const fs::path blocked = w.root() / "file" / "sub";
  const fs::path never = w.root() / "never";
  const auto& c = w.run("mkdir", {{"paths", {made.string(), blocked.string(), never.string()}}});
  CHECK(fs::is_directory(made));
  CHECK_FALSE(fs::exists(never));
  CHECK((*c.result)["rc"] == ENOTDIR);
  CHECK(c.header == "mkdir: Not a directory: " + blocked.string() + "\n");

  const auto& again = w.run("mkdir", {{"paths", {made.string()}}});
  CHECK((*again.result)["rc"] == 0);
}

TEST_CASE("rmfile removes a file and reports errno for a missing path or a directory") {
  WorkerFixture w;
  w.start();
  write_file(w.root() / "gone", "x");
  fs::create_directories(w.root() / "dir");
  CHECK((*w.run("rmfile", {{"path", (w.root() / "gone").string()}}).result)["rc"] == 0);
  CHECK_FALSE(fs::exists(w.root() / "gone"));
  const auto& missing = w.run("rmfile", {{"path", (w.root() / "gone").string()}});
  CHECK((*missing.result)["rc"] == ENOENT);
  CHECK(missing.header == "rmfile: No such file or directory: " + (w.root() / "gone").string() + "\n");
  CHECK((*w.run("rmfile", {{"path", (w.root() / "dir").string()}}).result)["rc"] == EISDIR);
}

TEST_CASE("rmdir removes whole trees with rm -rf in the worker's basedir") {
  WorkerFixture w;
  w.start();
  const fs::path tree = w.root() / "tree";
  write_file(tree / "a" / "b" / "c.txt", "x");
  write_file(w.root() / "other" / "d.txt", "y");
  const auto& c = w.run("rmdir", {{"paths", {tree.string(), (w.root() / "other").string()}}, {"logEnviron", false}});
  CHECK((*c.result)["rc"] == 0);
  CHECK_FALSE(fs::exists(tree));
  CHECK_FALSE(fs::exists(w.root() / "other"));
  CHECK(c.header.rfind("rm -rf " + tree.string() + "\n in dir " + w.info()["basedir"].get<std::string>() +
                           " (timeout 120 secs)\n",
                       0) == 0);
  CHECK(c.header.find(" environment:") == std::string::npos);
  CHECK((*w.run("rmdir", {{"paths", {tree.string()}}}).result)["rc"] == 0);  // already gone is fine
}

TEST_CASE("cpdir copies a tree, creating the destination's parent, and fails with cp's code") {
  WorkerFixture w;
  w.start();
  write_file(w.root() / "src" / "a.txt", "alpha");
  write_file(w.root() / "src" / "sub" / "b.txt", "beta");
  const fs::path to = w.root() / "new" / "parent" / "dst";
  const auto& c = w.run("cpdir", {{"from_path", (w.root() / "src").string()}, {"to_path", to.string()}});
  CHECK((*c.result)["rc"] == 0);
  CHECK(read_file(to / "a.txt") == "alpha");
  CHECK(read_file(to / "sub" / "b.txt") == "beta");
  CHECK(c.stdout_text.find("->") != std::string::npos);

  const auto& bad = w.run("cpdir", {{"from_path", (w.root() / "nosuch").string()}, {"to_path", to.string() + "2"}});
  CHECK((*bad.result)["rc"] != 0);
  CHECK_FALSE(bad.stderr_text.empty());
}

TEST_CASE("upload_file hands the file to the master in blocksize chunks") {
  WorkerFixture w;
  w.start();
  const fs::path file = w.root() / "build" / "out.txt";
  write_file(file, "0123456789abcdefghij");
  const auto& c = w.run("upload_file", {{"path", file.string()}, {"blocksize", 8}, {"maxsize", nullptr},
                                        {"keepstamp", true}});
  CHECK(c.writes == std::vector<size_t>{8, 8, 4});
  CHECK(c.written == "0123456789abcdefghij");
  CHECK(c.header == "sending " + file.string() + "\n");
  CHECK((*c.result)["rc"] == 0);
  json utime = update_of(c, "utime");
  REQUIRE(utime.is_array());
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK(static_cast<int64_t>(utime[1].get<double>()) == static_cast<int64_t>(st.st_mtime));
}

TEST_CASE("upload_file truncates at maxsize and reports rc 1") {
  WorkerFixture w;
  w.start();
  const fs::path file = w.root() / "out.txt";
  write_file(file, "0123456789abcdefghij");
  const auto& c = w.run("upload_file", {{"path", file.string()}, {"blocksize", 8}, {"maxsize", 10}});
  CHECK(c.written == "0123456789");
  CHECK(c.stderr_text == "Maximum filesize reached, truncating file '" + file.string() + "'\n");
  CHECK((*c.result)["rc"] == 1);
}

TEST_CASE("upload_file of a missing file sends nothing and reports rc 1") {
  WorkerFixture w;
  w.start();
  const fs::path file = w.root() / "missing.txt";
  const auto& c = w.run("upload_file", {{"path", file.string()}, {"blocksize", 8}, {"maxsize", nullptr}});
  CHECK(c.writes.empty());
  CHECK(c.stderr_text == "Cannot open file '" + file.string() + "' for upload\n");
  CHECK((*c.result)["rc"] == 1);
}

TEST_CASE("upload_file stops with a failure when the master refuses a block") {
  WorkerFixture w;
  w.start();
  write_file(w.root() / "out.txt", "0123456789");
  w.rec().refuse_writes = true;
  const auto& c = w.run("upload_file", {{"path", (w.root() / "out.txt").string()}, {"blocksize", 4}, {"maxsize", nullptr}});
  CHECK((*c.result)["rc"] == 1);
  CHECK((*c.result).contains("failure"));
}

TEST_CASE("upload_directory streams a tar archive of the directory's contents, compressed on request") {
  WorkerFixture w;
  w.start();
  const fs::path dir = w.root() / "build" / "dist";
  write_file(dir / "a.txt", "alpha");
  write_file(dir / "sub" / "b.txt", std::string(50000, 'b'));
  for (const auto& [compress, flags] : std::vector<std::pair<json, std::string>>{{nullptr, ""}, {"gz", "z"}, {"bz2", "j"}}) {
    INFO("compress " << compress.dump());
    const auto& c = w.run("upload_directory", {{"path", dir.string()}, {"blocksize", 16384}, {"maxsize", nullptr},
                                               {"compress", compress}});
    CHECK((*c.result)["rc"] == 0);
    CHECK(c.header == "sending " + dir.string() + "\n");
    for (size_t i = 0; i + 1 < c.writes.size(); ++i) CHECK(c.writes[i] == 16384);
    const fs::path archive = w.root() / ("archive" + flags + ".tar");
    write_file(archive, c.written);
    auto members = tar_members(archive, flags);
    CHECK(members.count("./a.txt") == 1);
    CHECK(members.count("./sub/b.txt") == 1);
  }

  const auto& missing = w.run("upload_directory", {{"path", (w.root() / "nodir").string()}, {"blocksize", 16384},
                                                   {"maxsize", nullptr}, {"compress", nullptr}});
  CHECK((*missing.result)["rc"] == 1);
  CHECK(missing.writes.empty());
}

TEST_CASE("download_file writes what the master sends, creating folders and applying the mode") {
  WorkerFixture w;
  w.start();
  std::string source(40000, '\0');
  std::mt19937 random(7);
  for (auto& ch : source) ch = static_cast<char>(random());
  const fs::path dest = w.root() / "build" / "in" / "data.bin";
  const uint64_t id = 1;  // the fixture numbers commands from 1
  w.rec().download_sources[id] = source;
  const auto& c = w.finish(w.begin("download_file", {{"path", dest.string()}, {"blocksize", 16384},
                                                     {"maxsize", nullptr}, {"mode", 0640}}));
  CHECK((*c.result)["rc"] == 0);
  CHECK(read_file(dest) == source);
  CHECK(c.read_sizes == std::vector<size_t>{16384, 16384, 16384, 16384});  // the last one read nothing
  struct stat st {};
  REQUIRE(::stat(dest.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
}

TEST_CASE("download_file stops at maxsize and reports rc 1") {
  WorkerFixture w;
  w.start();
  const fs::path dest = w.root() / "small.bin";
  w.rec().download_sources[1] = std::string(100, 'x');
  const auto& c = w.finish(w.begin("download_file", {{"path", dest.string()}, {"blocksize", 16}, {"maxsize", 50},
                                                     {"mode", nullptr}}));
  CHECK(read_file(dest) == std::string(50, 'x'));
  CHECK(c.stderr_text == "Maximum filesize reached, truncating file '" + dest.string() + "'\n");
  CHECK((*c.result)["rc"] == 1);
}

TEST_CASE("download_file to a path that cannot be created reports rc 1") {
  WorkerFixture w;
  w.start();
  write_file(w.root() / "file", "x");
  const fs::path dest = w.root() / "file" / "under" / "x.bin";
  const auto& c = w.run("download_file", {{"path", dest.string()}, {"blocksize", 16}, {"maxsize", nullptr},
                                          {"mode", nullptr}});
  CHECK(c.stderr_text == "Cannot open file '" + dest.string() + "' for download\n");
  CHECK((*c.result)["rc"] == 1);
  CHECK(c.read_sizes.empty());
}
