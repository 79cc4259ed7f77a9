// kiln-gerrit: Buildbot's GerritStatusPush as reporter type `gerrit`. For
// each finished build of a Gerrit change (its `event.change.number` and
// `event.patchSet.number` properties, as Gerrit's change source sets them,
// or `gerrit_change: "N,P"`), it runs
//   <ssh_command> -p PORT [-i KEY] USER@SERVER gerrit review
//       --message 'TEXT' --label Verified=V --label Code-Review=R N,P
// on sdk::Delivery's thread, the message from a template and the votes by
// result. The ssh command is configurable (a wrapper, or a test recorder).

#include <kiln/sdk/notifier.hpp>
#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace kiln::gerrit {
namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

constexpr const char* kDefaultMessage =
    "Build {{result}}: {{builder}} #{{number}}{{#build_url}} {{build_url}}{{/build_url}}";

constexpr const char* kSchema =
    R"json({"type": "object", "additionalProperties": false, "required": ["server"], "properties": {)json"
    KILN_NOTIFIER_SCHEMA_PROPERTIES R"json(,
    "server": {"type": "string", "minLength": 1, "description": "The Gerrit server's ssh host"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 29418, "description": "Its ssh port"},
    "username": {"type": ["string", "null"], "default": null, "description": "The ssh user (default: ssh's)"},
    "identity_file": {"type": ["string", "null"], "default": null,
      "description": "ssh -i: the private key (relative to the master folder)"},
    "ssh_command": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "default": ["ssh"],
      "description": "The program (and its first arguments) run in ssh's place"},
    "message": {"type": "string", "minLength": 1,
      "default": "Build {{result}}: {{builder}} #{{number}}{{#build_url}} {{build_url}}{{/build_url}}",
      "description": "The review message, a template with the notifier fields"},
    "labels": {"type": "object", "default": {},
      "description": "Votes per result, e.g. {success: {Verified: 1}, failure: {Verified: -1}} (replaces the default)"},
    "timeout": {"type": "number", "minimum": 0.1, "maximum": 3600, "default": 60,
      "description": "Seconds gerrit review may take before it is killed (and retried)"}
  }})json";

sdk::MessageTemplate message_template(const std::string& text) {
  return sdk::MessageTemplate(text, sdk::notifier::message_fields());
}

// Buildbot's default: Verified +1 on success, -1 otherwise.
json default_labels() {
  return {{"success", {{"Verified", 1}}}, {"warnings", {{"Verified", 1}}}, {"failure", {{"Verified", -1}}},
          {"exception", {{"Verified", -1}}}, {"cancelled", {{"Verified", -1}}}};
}

// One word for the remote shell that runs `gerrit review`.
std::string remote_quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string text_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return v.dump();
  return {};
}

struct Review {
  std::vector<std::string> argv;
};

// Runs one command to its end (or the timeout) on the delivery thread;
// abort() kills it.
class Runner {
 public:
  explicit Runner(double timeout_s) : timeout_s_(timeout_s) {}

  sdk::Status run(const Review& review) {
    std::vector<char*> argv;
    for (const auto& a : review.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return {KILN_ERR_RETRY, "cannot make a pipe"};
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int in = ::open("/dev/null", O_RDONLY);
      ::dup2(in, 0);
      ::dup2(out[1], 1);
      ::dup2(out[1], 2);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    if (pid < 0) {
      ::close(out[0]);
      return {KILN_ERR_RETRY, "cannot start " + review.argv[0]};
    }
    pid_ = pid;
    ::fcntl(out[0], F_SETFL, O_NONBLOCK);
    std::string output;
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(timeout_s_ * 1000));
    bool timed_out = false;
    for (;;) {
      char chunk[4096];
      for (ssize_t n; (n = ::read(out[0], chunk, sizeof chunk)) > 0;) {
        if (output.size() < 4096) output.append(chunk, static_cast<size_t>(n));
      }
      const pid_t done = ::waitpid(pid, &status, WNOHANG);
      if (done == pid) break;
      if (std::chrono::steady_clock::now() > deadline) {
        timed_out = true;
        ::kill(pid, SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pid_ = -1;
    ::close(out[0]);
    while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) output.pop_back();
    if (timed_out) return {KILN_ERR_RETRY, review.argv[0] + " took longer than " + std::to_string(timeout_s_) + " s"};
    if (aborted_) return {KILN_ERR_CANCELLED, "stopped"};
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    const std::string what = review.argv[0] + " exited with " + std::to_string(code) + (output.empty() ? "" : ": " + output);
    // ssh says 255 for its own failures (unreachable, refused key): those may
    // pass; anything else is gerrit refusing this review.
    return {code == 255 || code == 127 ? KILN_ERR_RETRY : KILN_ERR_REFUSED, what};
  }

  void abort() {
    aborted_ = true;
    const pid_t pid = pid_.load();
    if (pid > 0) ::kill(pid, SIGKILL);
  }

 private:
  double timeout_s_;
  std::atomic<pid_t> pid_{-1};
  std::atomic<bool> aborted_{false};
};

class GerritStatusPush : public sdk::Notifier {
 public:
  GerritStatusPush(sdk::Context ctx, const json& config)
      : Notifier(std::move(ctx), config),
        message_(message_template(this->config().value("message", std::string(kDefaultMessage)))) {
    const json& c = this->config();
    labels_ = c.value("labels", json::object());
    if (labels_.empty()) labels_ = default_labels();
  }

  static sdk::Status validate(const json& c) {
    if (auto s = sdk::NotifierOptions::check(c); !s.ok()) return s;
    try {
      message_template(c.value("message", std::string(kDefaultMessage)));
    } catch (const sdk::TemplateError& e) {
      return {KILN_ERR_INVALID_CONFIG, std::string("message: ") + e.what()};
    }
    static const std::vector<std::string> kResults = {"success", "warnings", "failure", "skipped",
                                                      "exception", "retry", "cancelled"};
    const json labels = c.value("labels", json::object());
    for (const auto& [result, votes] : labels.items()) {
      if (std::find(kResults.begin(), kResults.end(), result) == kResults.end()) {
        return {KILN_ERR_INVALID_CONFIG, "labels: '" + result + "' is not a result (success, warnings, failure, exception, ...)"};
      }
      if (!votes.is_object()) return {KILN_ERR_INVALID_CONFIG, "labels." + result + ": give {Label: vote, ...}"};
      for (const auto& [label, vote] : votes.items()) {
        if (!vote.is_number_integer() || vote.get<int>() < -2 || vote.get<int>() > 2) {
          return {KILN_ERR_INVALID_CONFIG, "labels." + result + "." + label + ": a vote is a whole number from -2 to 2"};
        }
        if (label.empty() || label.find_first_of(" =,'\"") != std::string::npos) {
          return {KILN_ERR_INVALID_CONFIG, "labels." + result + ": '" + label + "' is not a label name"};
        }
      }
    }
    return {};
  }

  sdk::Status start() override {
    if (auto s = Notifier::start(); !s.ok()) return s;
    const json& c = config();
    base_ = c.value("ssh_command", std::vector<std::string>{"ssh"});
    base_.insert(base_.end(), {"-p", std::to_string(c.value("port", 29418))});
    if (c.value("identity_file", json()).is_string()) {
      std::string key = c["identity_file"].get<std::string>();
      if (!key.empty() && key.front() != '/' && !master_dir().empty()) key = master_dir() + "/" + key;
      base_.insert(base_.end(), {"-i", key});
    }
    const std::string server = c.at("server").get<std::string>();
    base_.push_back(c.value("username", json()).is_string() ? c["username"].get<std::string>() + "@" + server : server);
    base_.insert(base_.end(), {"gerrit", "review"});
    runner_ = std::make_shared<Runner>(c.value("timeout", 60.0));
    delivery_ = std::make_unique<sdk::Delivery<Review>>(
        context(), [runner = runner_](const Review& r) { return runner->run(r); }, options().retry_attempts,
        options().retry_delay_s, [runner = runner_] { runner->abort(); });
    return {};
  }

  void stop() override { delivery_.reset(); }

 protected:
  void notify(sdk::NotifierMessage message) override {
    if (!delivery_) return;
    for (const auto& build : message.context.value("builds", json::array())) review(build);
  }

 private:
  void review(const json& build) {
    const json& props = build.value("properties", json::object());
    std::string change = text_of(props.value("event.change.number", json()));
    std::string patchset = text_of(props.value("event.patchSet.number", json()));
    if (change.empty() && props.value("gerrit_change", json()).is_string()) {
      const std::string both = props["gerrit_change"];
      const size_t sep = both.find_first_of(",/");
      if (sep != std::string::npos) {
        change = both.substr(0, sep);
        patchset = both.substr(sep + 1);
      }
    }
    const std::string what = build.value("builder", "") + " #" + build.value("number", json(0)).dump();
    if (change.empty() || patchset.empty()) {
      context().debug("build " + what + " is not of a Gerrit change (no event.change.number / event.patchSet.number)");
      return;
    }
    Review r;
    r.argv = base_;
    json fields = build;
    fields["builds"] = json::array({build});
    r.argv.insert(r.argv.end(), {"--message", remote_quoted(message_.render(fields))});
    const json votes = labels_.value(build.value("result", ""), json::object());
    for (const auto& [label, vote] : votes.items()) r.argv.insert(r.argv.end(), {"--label", label + "=" + vote.dump()});
    r.argv.push_back(change + "," + patchset);
    delivery_->submit(std::move(r), "review of change " + change + "," + patchset + " for build " + what);
  }

  sdk::MessageTemplate message_;
  json labels_;
  std::vector<std::string> base_;
  std::shared_ptr<Runner> runner_;
  std::unique_ptr<sdk::Delivery<Review>> delivery_;
};

}  // namespace
}  // namespace kiln::gerrit

KILN_PLUGIN("kiln-gerrit", "0.1.0", "Reviews Gerrit changes with build results (Buildbot's GerritStatusPush)", "MIT",
            kiln::sdk::component<kiln::gerrit::GerritStatusPush>(KILN_KIND_REPORTER, "gerrit", "0.1.0",
                                                                 "Votes on Gerrit changes through ssh gerrit review",
                                                                 kiln::gerrit::kSchema));
