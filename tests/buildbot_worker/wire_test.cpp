// The msgpack codec and message helpers of the buildbot-worker plugin,
// checked against traffic captured between a real Buildbot 3.7 master and
// worker (data/worker-protocol-messages.jsonl: the binary WebSocket
// messages of /work/shared/reference/worker-protocol-transcript.jsonl).

#include "../../plugins/buildbot-worker/wire.h"

#include <catch2/catch.hpp>
#include <kiln/plugin_api.h>

#include <fstream>
#include <string>
#include <vector>

namespace {

namespace bw = kiln::buildbot_worker;
using bw::Value;

struct Captured {
  std::string where;  // "session#n"
  std::string dir;
  Value msg;
  std::string raw;  // empty when the capture kept no bytes (> 200 bytes)
  size_t payload_len = 0;
};

std::string unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// The capture writes msgpack bin as {"$bin_b64": ..., "$utf8": ...}.
Value with_binary(const Value& v) {
  if (v.is_object() && v.contains("$bin_b64")) {
    auto bytes = bw::base64_decode(v["$bin_b64"].get<std::string>());
    REQUIRE(bytes);
    return Value::binary(std::vector<uint8_t>(bytes->begin(), bytes->end()));
  }
  if (v.is_array() || v.is_object()) {
    Value out = v;
    for (auto& item : out) item = with_binary(item);
    return out;
  }
  return v;
}

const std::vector<Captured>& captured() {
  static const std::vector<Captured> all = [] {
    std::vector<Captured> out;
    std::ifstream in(KILN_SOURCE_DIR "/tests/buildbot_worker/data/worker-protocol-messages.jsonl");
    std::string line;
    while (std::getline(in, line)) {
      Value r = Value::parse(line);
      Captured c;
      c.where = r["session"].get<std::string>() + "#" + std::to_string(r["n"].get<int>());
      c.dir = r["dir"].get<std::string>();
      c.msg = with_binary(r["msg"]);
      if (r.contains("raw_hex")) c.raw = unhex(r["raw_hex"].get<std::string>());
      c.payload_len = r["payload_len"].get<size_t>();
      out.push_back(std::move(c));
    }
    return out;
  }();
  return all;
}

const Captured& at(const std::string& where) {
  for (const auto& c : captured()) {
    if (c.where == where) return c;
  }
  FAIL("no captured message " << where);
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("every captured message decodes to what the capture recorded, key order included") {
  REQUIRE(captured().size() > 400);
  size_t checked = 0;
  for (const auto& c : captured()) {
    if (c.raw.empty()) continue;
    INFO(c.where);
    std::string error;
    auto decoded = bw::decode(c.raw, error);
    INFO(error);
    REQUIRE(decoded);
    CHECK(*decoded == c.msg);
    ++checked;
  }
  CHECK(checked > 400);
}

TEST_CASE("every captured message re-encodes to the captured bytes and length") {
  for (const auto& c : captured()) {
    INFO(c.where);
    const std::string bytes = bw::encode(c.msg);
    // The capture shortened Python traceback paths, so those texts differ.
    if (c.msg.dump().find("<dist-packages>") == std::string::npos) CHECK(bytes.size() == c.payload_len);
    if (!c.raw.empty()) CHECK(bytes == c.raw);
  }
}

TEST_CASE("the master's requests and responses are laid out as Buildbot's") {
  // op first, seq_number last (build1#5, build1#7, build2#71)
  CHECK(bw::encode(bw::request("print", 0, {{"message", "attached"}})) == at("build1-real-master#5").raw);
  CHECK(bw::encode(bw::request("get_worker_info", 1)) == at("build1-real-master#7").raw);
  CHECK(bw::encode(bw::request("keepalive", 15)) == at("build2-real-master#71").raw);
  // a response: op, seq_number, result (the worker's own, build2#72)
  CHECK(bw::encode(bw::response(15, nullptr)) == at("build2-real-master#72").raw);
  // a failure carries is_exception after the text (the worker's, probe#54)
  const Captured& failure = at("probe-fake-master#54");
  REQUIRE(failure.msg.contains("is_exception"));
  CHECK(bw::encode(bw::error_response(failure.msg["seq_number"].get<uint64_t>(),
                                      failure.msg["result"].get<std::string>())) == failure.raw);
}

TEST_CASE("file data travels as msgpack bin and text as str") {
  Value chunk = bw::request("update_upload_file_write", 29,
                            {{"args", Value::binary({'0', '1', '2', '3', '4', '5', '6', '7'})}, {"command_id", "14"}});
  const std::string bytes = bw::encode(chunk);
  CHECK(bytes.find(std::string("\xc4\x08" "01234567", 10)) != std::string::npos);
  // build2#107 is that very message from the real worker, keys in its order.
  std::string error;
  auto decoded = bw::decode(at("build2-real-master#107").raw, error);
  REQUIRE(decoded);
  CHECK((*decoded)["args"].is_binary());
  CHECK(bw::bytes_of((*decoded)["args"]) == std::string("01234567"));
  CHECK((*decoded)["command_id"].is_string());
}

TEST_CASE("malformed msgpack is refused with a reason") {
  std::string error;
  const std::string good = at("build1-real-master#5").raw;
  CHECK_FALSE(bw::decode(good.substr(0, good.size() - 3), error));
  CHECK(!error.empty());
  error.clear();
  CHECK_FALSE(bw::decode(good + "\xc0", error));
  CHECK(error.find("trailing") != std::string::npos);
  error.clear();
  CHECK_FALSE(bw::decode(std::string("\x81\x01\x02", 3), error));  // {1: 2}
  CHECK(error.find("key") != std::string::npos);
  error.clear();
  CHECK_FALSE(bw::decode(std::string("\xd4\x01\x00", 3), error));  // fixext 1
  CHECK(!error.empty());
  error.clear();
  std::string deep(200, '\x91');  // [[[[...]]]]
  deep.push_back('\xc0');
  CHECK_FALSE(bw::decode(deep, error));
}

TEST_CASE("Basic credentials are read as the real master reads them") {
  using bw::Credentials;
  auto ok = bw::parse_basic_auth(std::string_view("Basic dzE6cGFzczE="));  // w1:pass1, build1#3
  REQUIRE(std::holds_alternative<Credentials>(ok));
  CHECK(std::get<Credentials>(ok).name == "w1");
  CHECK(std::get<Credentials>(ok).password == "pass1");
  // Split at the first colon: the password keeps the rest.
  auto colon = bw::parse_basic_auth(std::string_view("Basic dzE6YTpiOmM="));  // w1:a:b:c
  REQUIRE(std::holds_alternative<Credentials>(colon));
  CHECK(std::get<Credentials>(colon).password == "a:b:c");
  CHECK(std::get<int>(bw::parse_basic_auth(std::nullopt)) == 401);
  CHECK(std::get<int>(bw::parse_basic_auth(std::string_view("Bearer dzE6cGFzczE="))) == 400);
  CHECK(std::get<int>(bw::parse_basic_auth(std::string_view("Basic !!!!"))) == 400);
  CHECK(std::get<int>(bw::parse_basic_auth(std::string_view("Basic dzFwYXNzMQ=="))) == 400);  // no colon
}

TEST_CASE("a shell command's update becomes output per stream, rc and elapsed, in the worker's order") {
  const Captured& update = at("build1-real-master#67");
  REQUIRE(update.msg["op"] == "update");
  std::string error;
  auto items = bw::read_update(update.msg["args"], error);
  REQUIRE(items);
  using Kind = bw::UpdateItem::Kind;
  std::vector<Kind> kinds;
  for (const auto& i : *items) kinds.push_back(i.kind);
  CHECK(kinds == std::vector<Kind>{Kind::kOutput, Kind::kOutput, Kind::kOutput, Kind::kRc, Kind::kOutput,
                                   Kind::kElapsed});
  CHECK((*items)[0].stream == KILN_STREAM_HEADER);
  CHECK((*items)[0].text.rfind("echo hello; echo err 1>&2; exit 0\n in dir ", 0) == 0);
  CHECK((*items)[1].stream == KILN_STREAM_STDOUT);
  CHECK((*items)[1].text == "hello\n");
  CHECK((*items)[2].stream == KILN_STREAM_STDERR);
  CHECK((*items)[2].text == "err\n");
  CHECK((*items)[3].rc == 0);
  CHECK((*items)[4].text.rfind("elapsedTime=", 0) == 0);
  CHECK((*items)[5].elapsed > 0);
}

TEST_CASE("log file contents, stat results and file lists in updates keep their names") {
  bool saw_log = false, saw_stat = false, saw_files = false;
  for (const auto& c : captured()) {
    if (c.dir != "worker->master" || c.msg.value("op", "") != "update") continue;
    std::string error;
    auto items = bw::read_update(c.msg["args"], error);
    INFO(c.where << " " << error);
    REQUIRE(items);
    for (const auto& i : *items) {
      if (i.kind == bw::UpdateItem::Kind::kLog) {
        saw_log = true;
        CHECK(!i.name.empty());
      }
      if (i.kind == bw::UpdateItem::Kind::kOther && i.name == "stat") {
        saw_stat = true;
        CHECK(i.value.size() == 10);
      }
      if (i.kind == bw::UpdateItem::Kind::kOther && i.name == "files") {
        saw_files = true;
        CHECK(i.value.is_array());
      }
    }
  }
  CHECK(saw_log);
  CHECK(saw_stat);
  CHECK(saw_files);
  std::string error;
  CHECK_FALSE(bw::read_update(Value{{"stdout", "x"}}, error));
  CHECK_FALSE(bw::read_update(Value::array({Value::array({"stdout", 3})}), error));
}

TEST_CASE("the worker's self-description becomes the host's worker info") {
  const Captured& info = at("build1-real-master#8");
  REQUIRE(info.msg["op"] == "response");
  const nlohmann::json host = bw::host_info(info.msg["result"]);
  CHECK(host["admin"] == "Your Name Here <admin@youraddress.invalid>");
  CHECK(host["host"] == "Please put a description of this build host here");
  CHECK(host["os"] == "Debian GNU/Linux 12 (bookworm)");
  CHECK(host["basedir"] == "/srv/bbproto/worker");
  CHECK(host["numcpus"] == 2);
  CHECK(host["version"] == "3.7.0-2");
  CHECK(host["worker_commands"]["download_file"] == "3.1");
  CHECK(host["environ"]["LANG"] == "C.UTF-8");
}

TEST_CASE("captured output updates read in place say what the general reading says") {
  size_t in_place = 0;
  for (const auto& c : captured()) {
    if (c.raw.empty() || c.dir != "worker->master" || c.msg.value("op", "") != "update") continue;
    INFO(c.where);
    auto fast = bw::read_output_update(c.raw);
    std::string error;
    auto items = bw::read_update(c.msg["args"], error);
    REQUIRE(items);
    bool plain_output = true;
    for (const auto& i : *items) {
      plain_output = plain_output && i.kind != bw::UpdateItem::Kind::kLog && i.kind != bw::UpdateItem::Kind::kOther;
    }
    // Output given as bare text (not [text, ...]) is left to the general path too.
    if (!fast) continue;
    CHECK(plain_output);
    ++in_place;
    CHECK(fast->seq == c.msg["seq_number"].get<uint64_t>());
    CHECK(std::string(fast->command_id) == *bw::bytes_of(c.msg["command_id"]));
    REQUIRE(fast->items.size() == items->size());
    for (size_t i = 0; i < items->size(); ++i) {
      CHECK(fast->items[i].kind == (*items)[i].kind);
      CHECK(fast->items[i].stream == (*items)[i].stream);
      CHECK(std::string(fast->items[i].text) == (*items)[i].text);
      CHECK(fast->items[i].rc == (*items)[i].rc);
      CHECK(fast->items[i].elapsed == (*items)[i].elapsed);
    }
  }
  CHECK(in_place > 10);
}

TEST_CASE("output written in place decodes to Buildbot's text newline-indexes and times form") {
  kiln::worker_wire::Writer w;
  w.map(2);
  w.text("args");
  w.array(1);
  w.array(2);
  w.text("stdout");
  // indexes count code points: é and ö are two bytes each
  w.output_lines("h\xC3\xA9llo\nw\xC3\xB6rld, a longer line past eight bytes\nno newline", 1.5);
  w.text("seq_number");
  w.number(7);
  std::string error;
  auto decoded = bw::decode(w.take(), error);
  REQUIRE(decoded);
  const Value& lines = (*decoded)["args"][0][1];
  CHECK(lines[0] == "h\xC3\xA9llo\nw\xC3\xB6rld, a longer line past eight bytes\nno newline");
  CHECK(lines[1] == Value::array({5, 43}));
  CHECK(lines[2] == Value::array({1.5, 1.5}));
  CHECK((*decoded)["seq_number"] == 7);
  CHECK(kiln::worker_wire::code_points("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9 abc") == 9);
}

TEST_CASE("updates that are not plain output or are cut short are left to the general reading") {
  const Captured& shell = at("build1-real-master#67");
  const std::string bytes = bw::encode(shell.msg);  // the capture kept no bytes of this one
  REQUIRE(bw::read_output_update(bytes));
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    INFO(cut);
    CHECK_FALSE(bw::read_output_update(std::string_view(bytes).substr(0, cut)));
  }
  CHECK_FALSE(bw::read_output_update(bytes + "x"));  // trailing bytes
  Value log = bw::request("update", 3,
                          {{"args", Value::array({Value::array({"log", Value::array({"l", Value::array({"t"})})})})},
                           {"command_id", "1"}});
  CHECK_FALSE(bw::read_output_update(bw::encode(log)));
  Value other_op = shell.msg;
  other_op["op"] = "complete";
  CHECK_FALSE(bw::read_output_update(bw::encode(other_op)));
  CHECK_FALSE(bw::read_output_update("\xc1"));  // a reserved tag
}
