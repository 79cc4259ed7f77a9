#include "steps.h"

#include <filesystem>

namespace kiln::std_steps {

const char* const kFileUploadSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["workersrc", "masterdest"],
  "properties": {
    "workersrc": {"type": "string", "minLength": 1, "description": "File on the worker, relative to the step's workdir."},
    "masterdest": {"type": "string", "minLength": 1, "description": "Where the file goes on the master: absolute, or relative to the master folder."},
    "mode": {"type": ["integer", "string", "null"], "default": null,
      "description": "Permissions given to the master's copy: an integer or an octal string such as \"0644\" (default: left as created)."},
    "keepstamp": {"type": "boolean", "default": false, "description": "Give the master's copy the worker file's access and modification times."},
    "maxsize": {"type": ["integer", "null"], "minimum": 0, "default": null,
      "description": "Fail the transfer when the file is larger than this many bytes (default: no limit)."},
    "blocksize": {"type": "integer", "minimum": 1, "default": 262144, "description": "Bytes per transfer message."},
    "url": {"type": ["string", "null"], "default": null, "description": "A URL added to the step, where the uploaded file can be seen."},
    "url_text": {"type": ["string", "null"], "default": null, "description": "The URL's text (default: the masterdest file name)."}
  }
})json";

const char* const kFileDownloadSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["mastersrc", "workerdest"],
  "properties": {
    "mastersrc": {"type": "string", "minLength": 1, "description": "File on the master: absolute, or relative to the master folder."},
    "workerdest": {"type": "string", "minLength": 1, "description": "Where the file goes on the worker, relative to the step's workdir; missing folders are made."},
    "mode": {"type": ["integer", "string", "null"], "default": null,
      "description": "Permissions given to the worker's copy: an integer or an octal string such as \"0755\" (default: the worker's umask)."},
    "maxsize": {"type": ["integer", "null"], "minimum": 0, "default": null,
      "description": "Fail the transfer when the file is larger than this many bytes (default: no limit)."},
    "blocksize": {"type": "integer", "minimum": 1, "default": 16384, "description": "Bytes per transfer message."}
  }
})json";

const char* const kDirectoryUploadSchema = R"json({
  "type": "object",
  "additionalProperties": false,
  "required": ["workersrc", "masterdest"],
  "properties": {
    "workersrc": {"type": "string", "minLength": 1, "description": "Folder on the worker, relative to the step's workdir."},
    "masterdest": {"type": "string", "minLength": 1, "description": "Folder on the master the contents go to: absolute, or relative to the master folder."},
    "compress": {"enum": [null, "gz", "bz2"], "default": null, "description": "Compression of the tar stream the worker sends."},
    "maxsize": {"type": ["integer", "null"], "minimum": 0, "default": null,
      "description": "Fail the transfer when the tar stream is larger than this many bytes (default: no limit)."},
    "blocksize": {"type": "integer", "minimum": 1, "default": 16384, "description": "Bytes per transfer message."},
    "url": {"type": ["string", "null"], "default": null, "description": "A URL added to the step, where the uploaded files can be seen."},
    "url_text": {"type": ["string", "null"], "default": null, "description": "The URL's text (default: the masterdest folder name)."}
  }
})json";

namespace {
std::string base_name(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.has_filename()) p = p.parent_path();  // "dist/" names "dist"
  return p.filename().string();
}
}  // namespace

sdk::Status TransferStep::validate_mode(const json& config) {
  auto mode = file_mode(config.value("mode", json()), "mode");
  return mode ? sdk::Status() : mode.status();
}

sdk::Status TransferStep::run() {
  const json& c = config();
  json args = {{"workdir", run_info().workdir()},
               {"maxsize", c.value("maxsize", json())},
               {"blocksize", c.value("blocksize", kind_ == Kind::kFileUpload ? 262144 : 16384)}};
  const char* command = nullptr;
  std::string from, to;
  switch (kind_) {
    case Kind::kFileUpload: {
      auto mode = file_mode(c.value("mode", json()), "mode");
      if (!mode) return mode.status();
      command = "uploadFile";
      from = c.at("workersrc").get<std::string>();
      to = c.at("masterdest").get<std::string>();
      args["workersrc"] = from;
      args["masterdest"] = to;
      args["keepstamp"] = c.value("keepstamp", false);
      args["mode"] = *mode;
      description_ = "uploading " + base_name(from);
      break;
    }
    case Kind::kDirectoryUpload:
      command = "uploadDirectory";
      from = c.at("workersrc").get<std::string>();
      to = c.at("masterdest").get<std::string>();
      args["workersrc"] = from;
      args["masterdest"] = to;
      args["compress"] = c.value("compress", json());
      description_ = "uploading " + base_name(from);
      break;
    case Kind::kFileDownload: {
      auto mode = file_mode(c.value("mode", json()), "mode");
      if (!mode) return mode.status();
      command = "downloadFile";
      from = c.at("mastersrc").get<std::string>();
      to = c.at("workerdest").get<std::string>();
      args["mastersrc"] = from;
      args["workerdest"] = to;
      args["mode"] = *mode;
      description_ = "downloading to " + base_name(to);
      break;
    }
  }
  set_summary(description_);
  if (const json url = c.value("url", json()); url.is_string()) {
    const json text = c.value("url_text", json());
    add_url(text.is_string() ? text.get<std::string>() : base_name(to), url.get<std::string>());
  }
  auto started = start_command(command, args, {}, [this](const sdk::CommandResult& result) { complete(result); });
  if (started) header(description_ + ": " + from + " -> " + to + "\n");
  return started;
}

void TransferStep::complete(const sdk::CommandResult& result) {
  // Buildbot's transfers ignore decode_rc: any non-zero rc is a failure.
  kiln_result outcome = KILN_FAILURE;
  if (interrupted()) {
    outcome = KILN_CANCELLED;
  } else if (result.lost) {
    outcome = KILN_RETRY;
  } else if (result.ok()) {
    outcome = KILN_SUCCESS;
  }
  finish(outcome, result_summary(run_info().description_done().value_or(description_), outcome, timed_out()));
}

}  // namespace kiln::std_steps
