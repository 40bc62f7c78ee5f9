// tests/testing/server_process.h
//
// Integration-test harness: runs a real `snapconfd` as a child process, and
// runs command-line programs (snapconfctl) with bounded time.
//
// ServerProcess starts snapconfd with `--listen=127.0.0.1:0`, a fresh data
// directory (or a given one) and `--ready-file`, and waits (bounded) until
// the server wrote its real address there. The server's stderr goes to a log
// file in the process's temporary directory; the log is printed when the
// start fails and when the test that owns the process has failed. The
// destructor SIGKILLs the server, fails the running test if the log holds a
// ThreadSanitizer or AddressSanitizer report, and removes the temporary
// directory.
//
// The binary is $SNAPCONFD_BIN when set, else the build's snapconfd
// (compile definition SNAPCONFD_PATH).
//
// Thread safety: a ServerProcess is used from one thread (the test's).
// RunCommand is thread-safe.
//
//   ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
//   CommandResult r = RunCommand({ctl, "--endpoints", server->address(), "status"});
//   EXPECT_EQ(r.exit_code, 0) << r.stderr_text;
//   ASSERT_OK_AND_ASSIGN(int exit_status, server->Terminate());
//   EXPECT_EQ(exit_status, 0);
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace snapconf::testing {

struct ServerOptions {
  // Empty: $SNAPCONFD_BIN, else SNAPCONFD_PATH.
  std::string binary;
  // Empty: a fresh directory inside the process's temporary directory. A
  // given directory is kept when the process object goes away.
  std::string data_dir;
  // Appended after the harness's own flags, e.g. {"--grace-period=1s"}.
  std::vector<std::string> extra_flags;
  // How long to wait for the ready file.
  absl::Duration ready_timeout = absl::Seconds(20);
  // "NAME=VALUE" entries added to (or replacing in) the server's environment,
  // e.g. an LD_PRELOAD for fault injection. Kept across Restart().
  std::vector<std::string> env;
};

class ServerProcess {
 public:
  // Starts the server and waits until it is serving. On failure the status
  // message includes the server's log.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(ServerOptions options = {});

  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess();

  // "127.0.0.1:PORT" as the server reported it.
  const std::string& address() const { return address_; }
  // 0 when not running.
  pid_t pid() const { return pid_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& log_path() const { return log_path_; }

  // SIGKILL and reap. OK when the server is not running.
  absl::Status Kill();
  // SIGTERM (SIGCONT first, in case it is stopped), then wait up to
  // `timeout` for it to exit; returns its exit code (128 + signal when a
  // signal ended it). DEADLINE_EXCEEDED (and a SIGKILL) when it did not exit.
  absl::StatusOr<int> Terminate(absl::Duration timeout = absl::Seconds(15));
  // Stops the server if it runs (SIGTERM), then starts it again with the same
  // data directory and flags. With `same_port`, it listens on the previous
  // port so clients can keep their address.
  absl::Status Restart(bool same_port = true);
  // SIGSTOP / SIGCONT: a server that accepts TCP connections but never answers.
  absl::Status Stop();
  absl::Status Cont();

  // The server's log so far (stderr and stdout, all of its runs).
  std::string ReadLog() const;

 private:
  explicit ServerProcess(ServerOptions options) : options_(std::move(options)) {}

  absl::Status Spawn(const std::string& listen);
  absl::Status WaitReady();
  // Waits for the child to exit; its exit code (or 128 + signal).
  absl::StatusOr<int> Reap(absl::Duration timeout);

  ServerOptions options_;
  std::string temp_dir_;  // removed by the destructor
  std::string data_dir_;
  std::string ready_path_;
  std::string log_path_;
  std::string address_;
  pid_t pid_ = 0;
  bool stopped_ = false;
};

struct CommandResult {
  // The exit code; 128 + signal when killed by a signal; -1 when it could not
  // be started or timed out (then stderr_text says why).
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
};

struct CommandOptions {
  // Written to the command's standard input, which is then closed.
  std::string stdin_text;
  // "NAME=VALUE" entries added to (or replacing in) the environment; "NAME="
  // sets it empty, "-NAME" removes it.
  std::vector<std::string> env;
  // The command is killed after this long.
  absl::Duration timeout = absl::Seconds(30);
};

// The snapconfd binary the harness runs: $SNAPCONFD_BIN, else the build's.
std::string SnapconfdBinary();

// Runs argv[0] (a path) with the given arguments and collects its output.
CommandResult RunCommand(const std::vector<std::string>& argv, const CommandOptions& options = {});

}  // namespace snapconf::testing
