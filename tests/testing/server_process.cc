// tests/testing/server_process.cc
#include "tests/testing/server_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace snapconf::testing {
namespace {

// Polling interval while waiting for a file or a child: short enough not to
// slow tests down, long enough not to burn one of the machine's two cores.
constexpr absl::Duration kPoll = absl::Milliseconds(5);

absl::Status ErrnoError(const std::string& what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(err)));
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

}  // namespace

std::string SnapconfdBinary() {
  if (const char* env = std::getenv("SNAPCONFD_BIN"); env != nullptr && *env != '\0') return env;
#ifdef SNAPCONFD_PATH
  return SNAPCONFD_PATH;
#else
  return "";
#endif
}

namespace {

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(ServerOptions options) {
  if (options.binary.empty()) options.binary = SnapconfdBinary();
  if (options.binary.empty()) {
    return absl::FailedPreconditionError(
        "no snapconfd binary: set SNAPCONFD_BIN or build with the snapconfd target");
  }
  std::unique_ptr<ServerProcess> p(new ServerProcess(std::move(options)));
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/snapconf-server-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return ErrnoError("mkdtemp", errno);
  p->temp_dir_ = pattern;
  p->data_dir_ = p->options_.data_dir.empty() ? p->temp_dir_ + "/data" : p->options_.data_dir;
  std::error_code ec;
  std::filesystem::create_directories(p->data_dir_, ec);
  if (ec) return absl::InternalError(absl::StrCat("create ", p->data_dir_, ": ", ec.message()));
  p->ready_path_ = p->temp_dir_ + "/ready";
  p->log_path_ = p->temp_dir_ + "/snapconfd.log";
  if (absl::Status s = p->Spawn("127.0.0.1:0"); !s.ok()) return s;
  if (absl::Status s = p->WaitReady(); !s.ok()) return s;
  return p;
}

ServerProcess::~ServerProcess() {
  (void)Kill();
  // A race or memory error found in the server fails the test that drove it,
  // even when the server lived on (TSan reports without halting when told to)
  // or the test did not notice it die.
  const std::string log = ReadLog();
  for (const char* report : {"WARNING: ThreadSanitizer", "ERROR: AddressSanitizer"}) {
    if (log.find(report) != std::string::npos) {
      ADD_FAILURE() << "snapconfd's log holds a sanitizer report (" << report << ")";
    }
  }
  if (::testing::Test::HasFailure()) {
    std::cerr << "---- snapconfd log (" << log_path_ << ") ----\n"
              << ReadLog() << "---- end of snapconfd log ----\n";
  }
  if (!temp_dir_.empty() && std::getenv("SNAPCONF_KEEP_TEST_DIRS") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir_, ec);
  }
}

absl::Status ServerProcess::Spawn(const std::string& listen) {
  std::filesystem::remove(ready_path_);
  std::vector<std::string> args = {options_.binary, "--listen=" + listen, "--data-dir=" + data_dir_,
                                   "--ready-file=" + ready_path_};
  args.insert(args.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  std::vector<char*> argv = CStrings(args);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  for (const std::string& change : options_.env) {
    const std::string name = change.substr(0, change.find('='));
    std::erase_if(env, [&](const std::string& kv) { return kv.rfind(name + "=", 0) == 0; });
    env.push_back(change);
  }
  std::vector<char*> envp = CStrings(env);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return ErrnoError(absl::StrCat("spawn ", options_.binary), rc);
  pid_ = pid;
  stopped_ = false;
  return absl::OkStatus();
}

absl::Status ServerProcess::WaitReady() {
  const absl::Time deadline = absl::Now() + options_.ready_timeout;
  while (true) {
    int wstatus = 0;
    if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = 0;
      return absl::InternalError(absl::StrCat("snapconfd exited with code ", ExitCodeOf(wstatus),
                                              " before it was ready; log:\n", ReadLog()));
    }
    // The server writes the file atomically (rename), so a complete line
    // means a complete address.
    const std::string content = ReadFileOrEmpty(ready_path_);
    if (!content.empty() && content.back() == '\n') {
      address_ = std::string(absl::StripAsciiWhitespace(content));
      return absl::OkStatus();
    }
    if (absl::Now() >= deadline) {
      (void)Kill();
      return absl::DeadlineExceededError(absl::StrCat("snapconfd was not ready within ",
                                                      absl::FormatDuration(options_.ready_timeout),
                                                      "; log:\n", ReadLog()));
    }
    absl::SleepFor(kPoll);
  }
}

absl::StatusOr<int> ServerProcess::Reap(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int wstatus = 0;
    const pid_t r = waitpid(pid_, &wstatus, WNOHANG);
    if (r == pid_) {
      pid_ = 0;
      return ExitCodeOf(wstatus);
    }
    if (r < 0) return ErrnoError("waitpid", errno);
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "snapconfd (pid ", pid_, ") did not exit within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(kPoll);
  }
}

absl::Status ServerProcess::Kill() {
  if (pid_ == 0) return absl::OkStatus();
  kill(pid_, SIGKILL);
  int wstatus = 0;
  while (waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
  }
  pid_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<int> ServerProcess::Terminate(absl::Duration timeout) {
  if (pid_ == 0) return absl::FailedPreconditionError("snapconfd is not running");
  if (stopped_) (void)Cont();
  kill(pid_, SIGTERM);
  absl::StatusOr<int> code = Reap(timeout);
  if (!code.ok()) (void)Kill();
  return code;
}

absl::Status ServerProcess::Restart(bool same_port) {
  if (pid_ != 0) {
    absl::StatusOr<int> code = Terminate();
    if (!code.ok()) return code.status();
  }
  const std::string listen = same_port && !address_.empty() ? address_ : "127.0.0.1:0";
  if (absl::Status s = Spawn(listen); !s.ok()) return s;
  return WaitReady();
}

absl::Status ServerProcess::Stop() {
  if (pid_ == 0) return absl::FailedPreconditionError("snapconfd is not running");
  if (kill(pid_, SIGSTOP) != 0) return ErrnoError("SIGSTOP", errno);
  stopped_ = true;
  return absl::OkStatus();
}

absl::Status ServerProcess::Cont() {
  if (pid_ == 0) return absl::FailedPreconditionError("snapconfd is not running");
  if (kill(pid_, SIGCONT) != 0) return ErrnoError("SIGCONT", errno);
  stopped_ = false;
  return absl::OkStatus();
}

std::string ServerProcess::ReadLog() const { return ReadFileOrEmpty(log_path_); }

CommandResult RunCommand(const std::vector<std::string>& argv_in, const CommandOptions& options) {
  CommandResult result;
  if (argv_in.empty()) {
    result.stderr_text = "RunCommand: empty argv";
    return result;
  }
  // A child that exits without reading its stdin must not kill the test.
  signal(SIGPIPE, SIG_IGN);

  // Environment: ours, edited.
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  for (const std::string& change : options.env) {
    const bool remove = !change.empty() && change[0] == '-';
    const std::string name = remove ? change.substr(1) : change.substr(0, change.find('='));
    std::erase_if(env, [&](const std::string& kv) { return kv.rfind(name + "=", 0) == 0; });
    if (!remove) env.push_back(change);
  }
  std::vector<std::string> args = argv_in;
  std::vector<char*> argv = CStrings(args);
  std::vector<char*> envp = CStrings(env);

  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 ||
      pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.stderr_text = absl::StrCat("RunCommand: pipe: ", std::strerror(errno));
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(in_pipe[1]);
    close(out_pipe[0]);
    close(err_pipe[0]);
    result.stderr_text = absl::StrCat("RunCommand: spawn ", argv_in[0], ": ", std::strerror(rc));
    return result;
  }

  int in_fd = in_pipe[1];
  fcntl(in_fd, F_SETFL, O_NONBLOCK);
  std::size_t written = 0;
  if (options.stdin_text.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  int out_fd = out_pipe[0];
  int err_fd = err_pipe[0];
  const absl::Time deadline = absl::Now() + options.timeout;
  bool timed_out = false;
  char buf[65536];
  while (out_fd >= 0 || err_fd >= 0 || in_fd >= 0) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      timed_out = true;
      break;
    }
    pollfd fds[3];
    int n = 0;
    if (in_fd >= 0) fds[n++] = {in_fd, POLLOUT, 0};
    if (out_fd >= 0) fds[n++] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) fds[n++] = {err_fd, POLLIN, 0};
    const int ready = poll(fds, n, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (ready < 0 && errno != EINTR) break;
    for (int i = 0; i < n && ready > 0; ++i) {
      if (fds[i].revents == 0) continue;
      if (fds[i].fd == in_fd) {
        const ssize_t w =
            write(in_fd, options.stdin_text.data() + written, options.stdin_text.size() - written);
        if (w > 0) written += static_cast<std::size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) written = options.stdin_text.size();
        if (written == options.stdin_text.size()) {
          close(in_fd);
          in_fd = -1;
        }
        continue;
      }
      const ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        (fds[i].fd == out_fd ? result.stdout_text : result.stderr_text).append(buf, r);
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(fds[i].fd);
        (fds[i].fd == out_fd ? out_fd : err_fd) = -1;
      }
    }
  }
  for (int fd : {in_fd, out_fd, err_fd}) {
    if (fd >= 0) close(fd);
  }
  if (timed_out) kill(pid, SIGKILL);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    result.exit_code = -1;
    absl::StrAppend(&result.stderr_text, "\nRunCommand: ", argv_in[0], " killed after ",
                    absl::FormatDuration(options.timeout));
  } else {
    result.exit_code = ExitCodeOf(wstatus);
  }
  return result;
}

}  // namespace snapconf::testing
