// kiln-mail: Buildbot's MailNotifier as reporter type `mail`. The common
// notifier work (which builds, whose addresses, the message body) is
// sdk::Notifier's; this file adds the mail settings, the subject and extra
// headers, the attachments, and hands each message to a Delivery whose
// thread speaks SMTP (smtp_client.h).

#include "mime.h"
#include "smtp_client.h"

#include <kiln/sdk/notifier.hpp>
#include <kiln/sdk/plugin.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace kiln::mail {
namespace {

namespace sdk = kiln::sdk;
using nlohmann::json;

constexpr const char* kSchema =
    R"json({"type": "object", "additionalProperties": false, "required": ["fromaddr"], "properties": {)json"
    KILN_NOTIFIER_SCHEMA_PROPERTIES R"json(,
    "fromaddr": {"type": "string", "minLength": 3,
      "description": "The From address: ci@example.org or \"CI <ci@example.org>\""},
    "relayhost": {"type": "string", "minLength": 1, "default": "localhost",
      "description": "The SMTP server mail goes to"},
    "smtp_port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 25,
      "description": "Its port (587 for submission with use_tls)"},
    "use_tls": {"type": "boolean", "default": false,
      "description": "Require STARTTLS before anything else is said (Buildbot's useTls)"},
    "use_smtps": {"type": "boolean", "default": false,
      "description": "SMTPS: TLS from the first byte, as on port 465 (Buildbot's useSmtps); not with use_tls"},
    "tls_verify": {"type": "boolean", "default": true,
      "description": "Check the server's certificate and name"},
    "tls_ca_file": {"type": ["string", "null"], "default": null,
      "description": "PEM file of the certificates to trust instead of the system's (relative to the master folder)"},
    "smtp_user": {"type": ["string", "null"], "default": null,
      "description": "User name for AUTH (PLAIN, or LOGIN when the server offers only that)"},
    "smtp_password": {"type": ["string", "null"], "default": null,
      "description": "Password for AUTH; use ${env:...} or ${file:...}"},
    "timeout": {"type": "number", "minimum": 0.1, "maximum": 3600, "default": 30,
      "description": "Seconds to wait for the server at each step before the attempt fails"},
    "extra_recipients": {"type": "array", "items": {"type": "string", "minLength": 3}, "default": [],
      "description": "Addresses that get every message, besides the interested users"},
    "send_to_interested_users": {"type": "boolean", "default": true,
      "description": "Mail the authors of the build's changes and its owners"},
    "subject": {"type": "string", "minLength": 1, "default": "Buildbot {{result}} in {{title}} on {{builder}}",
      "description": "Subject template: {{builder}}, {{result}}, %(builder)s, %(prop:branch)s, ..."},
    "add_logs": {"type": ["boolean", "array"], "items": {"type": "string"}, "default": false,
      "description": "Attach every log (true), or the logs named (\"stdio\" or \"step.stdio\")"},
    "add_patch": {"type": "boolean", "default": true,
      "description": "Attach the source stamp's patch, if the build had one"},
    "extra_headers": {"type": "object", "default": {},
      "description": "Headers to add, name: template (the same fields as the subject)"}
  }})json";

// What the headers decide, beyond the body.
constexpr const char* kReservedHeaders[] = {"from", "to", "subject", "date", "message-id", "mime-version",
                                            "content-type", "content-transfer-encoding", "cc", "bcc"};

sdk::MessageTemplate subject_template(const std::string& text) {
  return sdk::MessageTemplate(text, sdk::notifier::message_fields());
}

std::string bare_address(const std::string& text) {
  return sdk::notifier::address_in(text).value_or(text);
}

class MailNotifier : public sdk::Notifier {
 public:
  MailNotifier(sdk::Context ctx, const json& config) : Notifier(std::move(ctx), config) {
    const json& c = this->config();
    from_ = c.at("fromaddr").get<std::string>();
    for (const auto& r : c.value("extra_recipients", json::array())) extra_.push_back(bare_address(r.get<std::string>()));
    to_interested_ = c.value("send_to_interested_users", true);
    subject_ = subject_template(c.value("subject", std::string("Buildbot {{result}} in {{title}} on {{builder}}")));
    const json extra_headers = c.value("extra_headers", json::object());
    for (const auto& [name, value] : extra_headers.items()) {
      headers_.emplace_back(name, subject_template(value.get<std::string>()));
    }
    const json add_logs = c.value("add_logs", json(false));
    all_logs_ = add_logs.is_boolean() && add_logs.get<bool>();
    if (add_logs.is_array()) {
      for (const auto& l : add_logs) log_names_.insert(l.get<std::string>());
    }
    add_patch_ = c.value("add_patch", true);
  }

  static sdk::Status validate(const json& c) {
    if (auto s = sdk::NotifierOptions::check(c); !s.ok()) return s;
    if (!sdk::notifier::address_in(c.at("fromaddr").get<std::string>())) {
      return {KILN_ERR_INVALID_CONFIG, "fromaddr: '" + c.at("fromaddr").get<std::string>() + "' is not an email address"};
    }
    const json extra = c.value("extra_recipients", json::array());
    for (size_t i = 0; i < extra.size(); ++i) {
      if (!sdk::notifier::address_in(extra[i].get<std::string>())) {
        return {KILN_ERR_INVALID_CONFIG, "extra_recipients[" + std::to_string(i) + "]: '" +
                                             extra[i].get<std::string>() + "' is not an email address"};
      }
    }
    if (c.value("use_tls", false) && c.value("use_smtps", false)) {
      return {KILN_ERR_INVALID_CONFIG,
              "give use_tls (STARTTLS on a plain connection) or use_smtps (TLS from the start), not both"};
    }
    const bool has_user = c.value("smtp_user", json()).is_string();
    const bool has_password = c.value("smtp_password", json()).is_string();
    if (has_user != has_password) {
      return {KILN_ERR_INVALID_CONFIG, has_user ? "smtp_user is set without smtp_password"
                                                : "smtp_password is set without smtp_user"};
    }
    try {
      subject_template(c.value("subject", std::string("x")));
    } catch (const sdk::TemplateError& e) {
      return {KILN_ERR_INVALID_CONFIG, std::string("subject: ") + e.what()};
    }
    const json extra_headers = c.value("extra_headers", json::object());
    for (const auto& [name, value] : extra_headers.items()) {
      if (!valid_header_name(name)) {
        return {KILN_ERR_INVALID_CONFIG, "extra_headers: '" + name + "' is not a header name (letters, digits, '-')"};
      }
      std::string lower;
      for (char ch : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      for (const char* reserved : kReservedHeaders) {
        if (lower == reserved) {
          return {KILN_ERR_INVALID_CONFIG, "extra_headers: '" + name + "' is set by the mail reporter itself"};
        }
      }
      if (!value.is_string()) {
        return {KILN_ERR_INVALID_CONFIG, "extra_headers." + name + ": a header's value is a string (a template)"};
      }
      try {
        subject_template(value.get<std::string>());
      } catch (const sdk::TemplateError& e) {
        return {KILN_ERR_INVALID_CONFIG, "extra_headers." + name + ": " + e.what()};
      }
    }
    if (!c.value("send_to_interested_users", true) && c.value("extra_recipients", json::array()).empty()) {
      return {KILN_ERR_INVALID_CONFIG,
              "send_to_interested_users is false and extra_recipients is empty: nobody would get mail"};
    }
    return {};
  }

  sdk::Status start() override {
    if (auto s = Notifier::start(); !s.ok()) return s;
    const json& c = config();
    SmtpSettings smtp;
    smtp.host = c.value("relayhost", "localhost");
    smtp.port = static_cast<uint16_t>(c.value("smtp_port", 25));
    smtp.starttls = c.value("use_tls", false);
    smtp.implicit_tls = c.value("use_smtps", false);
    smtp.tls_verify = c.value("tls_verify", true);
    if (c.value("tls_ca_file", json()).is_string()) {
      smtp.tls_ca_file = c["tls_ca_file"].get<std::string>();
      if (!smtp.tls_ca_file.empty() && smtp.tls_ca_file.front() != '/' && !master_dir().empty()) {
        smtp.tls_ca_file = master_dir() + "/" + smtp.tls_ca_file;
      }
    }
    if (c.value("smtp_user", json()).is_string()) {
      smtp.user = c["smtp_user"].get<std::string>();
      smtp.password = c.value("smtp_password", "");
    }
    smtp.timeout_s = c.value("timeout", 30.0);
    client_ = std::make_shared<SmtpClient>(smtp);
    server_ = smtp.host + ":" + std::to_string(smtp.port);
    delivery_ = std::make_unique<sdk::Delivery<Envelope>>(
        context(),
        [client = client_](const Envelope& e) -> sdk::Status {
          SendOutcome outcome = client->send(e);
          if (outcome.ok) return {};
          return {outcome.permanent ? KILN_ERR_REFUSED : KILN_ERR_RETRY, outcome.error};
        },
        options().retry_attempts, options().retry_delay_s, [client = client_] { client->abort(); });
    return {};
  }

  void stop() override { delivery_.reset(); }

 protected:
  bool wants_all_logs() const override { return all_logs_; }
  std::set<std::string> wanted_logs() const override { return log_names_; }

  void notify(sdk::NotifierMessage message) override {
    std::set<std::string> recipients(extra_.begin(), extra_.end());
    if (to_interested_) recipients.insert(message.interested.begin(), message.interested.end());
    const std::string what = "mail for " + describe(message.context);
    if (recipients.empty()) {
      context().info("no recipients for " + what + " (no interested user has an address)");
      return;
    }
    if (!delivery_) return;
    json body = format_body(message);
    MimeMessage mime;
    mime.from = from_;
    mime.to.assign(recipients.begin(), recipients.end());
    mime.subject = body.contains("subject") && body["subject"].is_string() ? body["subject"].get<std::string>()
                                                                           : subject_.render(message.context);
    mime.body = body.value("body", "");
    mime.html = body.value("type", "plain") == "html";
    for (const auto& [name, value] : headers_) mime.headers.emplace_back(name, value.render(message.context));
    for (auto& log : message.logs) {
      mime.attachments.push_back({log.filename + (log.content_type == "text/html" ? ".html" : ".txt"),
                                  log.content_type, std::move(log.content)});
    }
    if (add_patch_) {
      for (auto& patch : message.patches) mime.attachments.push_back({"source.patch", patch.content_type, std::move(patch.content)});
    }
    auto now = context().now_ms();
    mime.date_ms = now.ok() ? static_cast<int64_t>(*now) : 0;
    const std::string from_domain = bare_address(from_).substr(bare_address(from_).find('@') + 1);
    mime.message_id = "kiln." + message.context.value("buildid", json(0)).dump() + "." +
                      std::to_string(mime.date_ms) + "." + std::to_string(++sequence_) + "@" + from_domain;
    Envelope envelope{bare_address(from_), mime.to, compose(mime)};
    delivery_->submit(std::move(envelope), what + " to " + server_);
  }

 private:
  static std::string describe(const json& context) {
    const json& builds = context.value("builds", json::array());
    if (builds.size() > 1) return "buildset " + context.value("bsid", json(0)).dump();
    return "build " + context.value("builder", "") + " #" + context.value("number", json(0)).dump();
  }

  std::string from_;
  std::vector<std::string> extra_;
  bool to_interested_ = true;
  sdk::MessageTemplate subject_;
  std::vector<std::pair<std::string, sdk::MessageTemplate>> headers_;
  bool all_logs_ = false;
  std::set<std::string> log_names_;
  bool add_patch_ = true;
  std::string server_;
  uint64_t sequence_ = 0;
  std::shared_ptr<SmtpClient> client_;
  std::unique_ptr<sdk::Delivery<Envelope>> delivery_;
};

}  // namespace
}  // namespace kiln::mail

KILN_PLUGIN("kiln-mail", "0.1.0", "Mail notifications over SMTP (Buildbot's MailNotifier)", "MIT",
            kiln::sdk::component<kiln::mail::MailNotifier>(KILN_KIND_REPORTER, "mail", "0.1.0",
                                                           "Mails build results over SMTP", kiln::mail::kSchema));
