// The transfer commands (§4.9-4.11): upload_file, upload_directory,
// download_file. One block per io handler, so other commands keep running
// between blocks and an interrupt lands at the next block boundary. The
// bytes go through CommandSink::transfer_write / transfer_read.

#include "commands.h"

#include <kiln/worker/process.h>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::worker::detail {

namespace {

using json = nlohmann::json;

std::optional<int64_t> optional_int(const json& args, const char* key) {
  auto it = args.find(key);
  if (it == args.end() || it->is_null()) return std::nullopt;
  return it->get<int64_t>();
}

size_t block_size(const json& args) {
  int64_t size = args.at("blocksize").get<int64_t>();
  if (size <= 0) throw std::invalid_argument("argument 'blocksize' must be positive");
  return static_cast<size_t>(size);
}

std::string truncation_message(const std::string& path) {
  return "Maximum filesize reached, truncating file '" + path + "'\n";
}

double seconds_of(const struct timespec& ts) {
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

class UploadFile final : public CommandRunner {
 public:
  UploadFile(boost::asio::io_context& io, const WorkerSettings& settings, json args,
             std::shared_ptr<CommandSink> sink)
      : CommandRunner(io, "upload_file", std::move(sink)), settings_(settings), args_(std::move(args)) {}
  ~UploadFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

 protected:
  void run() override {
    path_ = absolute_path(settings_, string_arg(args_, "path"));
    blocksize_ = block_size(args_);
    remaining_ = optional_int(args_, "maxsize");
    keepstamp_ = args_.value("keepstamp", json(false)).is_boolean() && args_.value("keepstamp", false);
    header("sending " + path_ + "\n");
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd_ < 0 || ::fstat(fd_, &st) != 0 || S_ISDIR(st.st_mode)) {
      stderr_text("Cannot open file '" + path_ + "' for upload\n");
      complete(CommandResult{1, seconds_since_start(), ""});
      return;
    }
    atime_ = seconds_of(st.st_atim);
    mtime_ = seconds_of(st.st_mtim);
    next_block();
  }

  void on_interrupt(const std::string&) override { interrupted_ = true; }

 private:
  void next_block() {
    boost::asio::post(io(), [keep = self(), this] {
      if (completed()) return;
      if (interrupted_) {
        complete(CommandResult{1, std::nullopt, ""});
        return;
      }
      size_t length = blocksize_;
      if (remaining_) {
        length = static_cast<size_t>(std::clamp<int64_t>(*remaining_, 0, static_cast<int64_t>(blocksize_)));
        *remaining_ -= static_cast<int64_t>(length);
      }
      if (length == 0) {
        stderr_text(truncation_message(path_));
        finish(1);
        return;
      }
      std::string data(length, '\0');
      size_t got = 0;
      while (got < length) {
        ssize_t n = ::read(fd_, data.data() + got, length - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          stderr_text("Cannot read file '" + path_ + "' for upload: " + std::strerror(errno) + "\n");
          finish(1);
          return;
        }
        if (n == 0) break;
        got += static_cast<size_t>(n);
      }
      data.resize(got);
      if (data.empty()) {
        finish(rc_);
        return;
      }
      if (!sink().transfer_write(data)) {
        complete(CommandResult{1, std::nullopt, "upload of '" + path_ + "' failed: the master refused the data"});
        return;
      }
      next_block();
    });
  }

  void finish(int rc) {
    if (keepstamp_) sink().on_update(json{{"utime", {atime_, mtime_}}});
    complete(CommandResult{rc, seconds_since_start(), ""});
  }

  WorkerSettings settings_;
  json args_;
  std::string path_;
  size_t blocksize_ = 0;
  std::optional<int64_t> remaining_;
  bool keepstamp_ = false;
  bool interrupted_ = false;
  int fd_ = -1;
  int rc_ = 0;
  double atime_ = 0, mtime_ = 0;
};

class UploadDirectory final : public CommandRunner {
 public:
  UploadDirectory(boost::asio::io_context& io, const WorkerSettings& settings, json args,
                  std::shared_ptr<CommandSink> sink)
      : CommandRunner(io, "upload_directory", std::move(sink)), settings_(settings), args_(std::move(args)) {}

 protected:
  void run() override {
    path_ = absolute_path(settings_, string_arg(args_, "path"));
    blocksize_ = block_size(args_);
    remaining_ = optional_int(args_, "maxsize");
    const json compress = args_.value("compress", json());
    header("sending " + path_ + "\n");
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      stderr_text("Cannot read directory '" + path_ + "' for upload\n");
      complete(CommandResult{1, seconds_since_start(), ""});
      return;
    }
    // tar streams the archive, so nothing is staged on disk or in memory.
    ProcessSpec spec;
    spec.argv = {"tar", "-c", "-f", "-"};
    if (compress == "gz") spec.argv.push_back("-z");
    if (compress == "bz2") spec.argv.push_back("-j");
    spec.argv.insert(spec.argv.end(), {"-C", path_, "."});
    spec.workdir = path_;
    spec.env = settings_.environ;
    tar_ = std::make_shared<Process>(io());
    std::weak_ptr<CommandRunner> weak = self();
    int err = tar_->start(
        spec,
        [weak, this](Stream stream, std::string_view data) {
          auto keep = weak.lock();
          if (!keep || stopped_) return;
          if (stream == Stream::kStderr) {
            stderr_text(data);
            return;
          }
          pending_.append(data);
          while (!stopped_ && pending_.size() >= blocksize_) send(blocksize_);
        },
        [weak, this](const ProcessExit& exit) {
          auto keep = weak.lock();
          if (!keep) return;
          on_tar_exit(exit);
        });
    if (err != 0) {
      stderr_text("Cannot run tar to upload '" + path_ + "': " + std::strerror(err) + "\n");
      complete(CommandResult{1, seconds_since_start(), ""});
    }
  }

  void on_interrupt(const std::string&) override {
    interrupted_ = true;
    stop();
  }

 private:
  // Sends up to n bytes of pending_, minding maxsize.
  void send(size_t n) {
    n = std::min(n, pending_.size());
    if (remaining_) {
      if (*remaining_ <= 0) {
        truncate();
        return;
      }
      n = std::min<size_t>(n, static_cast<size_t>(*remaining_));
      *remaining_ -= static_cast<int64_t>(n);
    }
    if (!sink().transfer_write(std::string_view(pending_).substr(0, n))) {
      failure_ = "upload of '" + path_ + "' failed: the master refused the data";
      stop();
      return;
    }
    pending_.erase(0, n);
  }

  void truncate() {
    stderr_text(truncation_message(path_));
    rc_ = 1;
    stop();
  }

  void stop() {
    stopped_ = true;
    pending_.clear();
    if (tar_) tar_->signal_group(SIGKILL);
  }

  void on_tar_exit(const ProcessExit& exit) {
    if (!stopped_) {
      while (!stopped_ && !pending_.empty()) send(blocksize_);
      if (exit.signal != 0 || exit.exit_code != 0) rc_ = 1;
    }
    if (interrupted_) {
      complete(CommandResult{1, std::nullopt, ""});
    } else if (!failure_.empty()) {
      complete(CommandResult{1, std::nullopt, failure_});
    } else {
      complete(CommandResult{rc_, seconds_since_start(), ""});
    }
  }

  WorkerSettings settings_;
  json args_;
  std::string path_;
  size_t blocksize_ = 0;
  std::optional<int64_t> remaining_;
  std::shared_ptr<Process> tar_;
  std::string pending_;  // less than one block, plus the current read
  std::string failure_;
  bool stopped_ = false;
  bool interrupted_ = false;
  int rc_ = 0;
};

class DownloadFile final : public CommandRunner {
 public:
  DownloadFile(boost::asio::io_context& io, const WorkerSettings& settings, json args,
               std::shared_ptr<CommandSink> sink)
      : CommandRunner(io, "download_file", std::move(sink)), settings_(settings), args_(std::move(args)) {}
  ~DownloadFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

 protected:
  void run() override {
    path_ = absolute_path(settings_, string_arg(args_, "path"));
    blocksize_ = block_size(args_);
    remaining_ = optional_int(args_, "maxsize");
    auto mode = optional_int(args_, "mode");
    auto slash = path_.find_last_of('/');
    if (slash != std::string::npos && slash > 0) make_dirs(path_.substr(0, slash));
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) {
      stderr_text("Cannot open file '" + path_ + "' for download\n");
      complete(CommandResult{1, seconds_since_start(), ""});
      return;
    }
    if (mode) ::fchmod(fd_, static_cast<mode_t>(*mode));
    next_block();
  }

  void on_interrupt(const std::string&) override { interrupted_ = true; }

 private:
  void next_block() {
    boost::asio::post(io(), [keep = self(), this] {
      if (completed()) return;
      if (interrupted_) {
        finish(CommandResult{1, std::nullopt, ""});
        return;
      }
      size_t length = blocksize_;
      if (remaining_) {
        length = static_cast<size_t>(std::clamp<int64_t>(*remaining_, 0, static_cast<int64_t>(blocksize_)));
        *remaining_ -= static_cast<int64_t>(length);
      }
      if (length == 0) {
        stderr_text(truncation_message(path_));
        finish(CommandResult{1, seconds_since_start(), ""});
        return;
      }
      auto data = sink().transfer_read(length);
      if (!data) {
        finish(CommandResult{1, std::nullopt, "download to '" + path_ + "' failed: the master could not read"});
        return;
      }
      if (data->empty()) {
        finish(CommandResult{0, seconds_since_start(), ""});
        return;
      }
      size_t done = 0;
      while (done < data->size()) {
        ssize_t n = ::write(fd_, data->data() + done, data->size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          stderr_text("Cannot write file '" + path_ + "': " + std::strerror(errno) + "\n");
          finish(CommandResult{1, seconds_since_start(), ""});
          return;
        }
        done += static_cast<size_t>(n);
      }
      next_block();
    });
  }

  void finish(CommandResult result) {
    if (fd_ >= 0 && ::close(fd_) != 0 && result.rc == 0) {
      stderr_text("Cannot write file '" + path_ + "': " + std::strerror(errno) + "\n");
      result.rc = 1;
    }
    fd_ = -1;
    complete(std::move(result));
  }

  WorkerSettings settings_;
  json args_;
  std::string path_;
  size_t blocksize_ = 0;
  std::optional<int64_t> remaining_;
  bool interrupted_ = false;
  int fd_ = -1;
};

}  // namespace

std::shared_ptr<CommandRunner> make_upload_file(boost::asio::io_context& io, const WorkerSettings& settings,
                                                json args, std::shared_ptr<CommandSink> sink) {
  return std::make_shared<UploadFile>(io, settings, std::move(args), std::move(sink));
}
std::shared_ptr<CommandRunner> make_upload_directory(boost::asio::io_context& io, const WorkerSettings& settings,
                                                     json args, std::shared_ptr<CommandSink> sink) {
  return std::make_shared<UploadDirectory>(io, settings, std::move(args), std::move(sink));
}
std::shared_ptr<CommandRunner> make_download_file(boost::asio::io_context& io, const WorkerSettings& settings,
                                                  json args, std::shared_ptr<CommandSink> sink) {
  return std::make_shared<DownloadFile>(io, settings, std::move(args), std::move(sink));
}

}  // namespace kiln::worker::detail
