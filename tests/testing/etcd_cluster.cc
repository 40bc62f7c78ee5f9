// tests/testing/etcd_cluster.cc
#include "tests/testing/etcd_cluster.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace snapconf::testing {
namespace {

absl::Status ErrnoError(const std::string& what, int err) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(err)));
}

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

// Ports the kernel hands out for port 0, all held open until every one is
// chosen so none is handed out twice.
absl::StatusOr<std::vector<int>> FreePorts(int n) {
  std::vector<int> fds;
  std::vector<int> ports;
  absl::Status status;
  for (int i = 0; i < n && status.ok(); ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      status = ErrnoError("socket", errno);
      break;
    }
    fds.push_back(fd);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      status = ErrnoError("bind", errno);
      break;
    }
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) close(fd);
  if (!status.ok()) return status;
  return ports;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string EtcdBinary() { return EnvOr("ETCD_BIN", "/usr/bin/etcd"); }
std::string EtcdctlBinary() { return EnvOr("ETCDCTL_BIN", "/usr/bin/etcdctl"); }

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(EtcdClusterOptions options) {
  if (access(EtcdBinary().c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(EtcdBinary(), " is missing: install Debian's etcd-server (or set ETCD_BIN)"));
  }
  std::unique_ptr<EtcdCluster> c(new EtcdCluster(std::move(options)));
  std::string pattern = absl::StrCat(EnvOr("TMPDIR", "/tmp"), "/snapconf-etcd-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) return ErrnoError("mkdtemp", errno);
  c->temp_dir_ = pattern;
  const int n = c->options_.members;
  absl::StatusOr<std::vector<int>> ports = FreePorts(2 * n);
  if (!ports.ok()) return ports.status();
  std::vector<std::string> peers;
  for (int i = 0; i < n; ++i) {
    Member m;
    m.name = absl::StrCat("m", i);
    m.client_port = (*ports)[2 * i];
    m.peer_port = (*ports)[2 * i + 1];
    m.data_dir = absl::StrCat(c->temp_dir_, "/", m.name);
    m.log_path = absl::StrCat(c->temp_dir_, "/", m.name, ".log");
    peers.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
    c->members_.push_back(std::move(m));
  }
  c->initial_cluster_ = absl::StrJoin(peers, ",");
  if (c->options_.tls) {
    if (absl::Status s = c->MakeCertificates(); !s.ok()) return s;
  }
  for (int i = 0; i < n; ++i) {
    if (absl::Status s = c->Spawn(i); !s.ok()) return s;
  }
  if (absl::Status s = c->WaitHealthy(c->options_.ready_timeout); !s.ok()) {
    std::string logs;
    for (int i = 0; i < n; ++i)
      absl::StrAppend(&logs, "\n--- ", c->members_[i].name, " ---\n", c->ReadLog(i));
    return absl::Status(s.code(), absl::StrCat(s.message(), logs));
  }
  return c;
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) (void)Kill(i);
  if (::testing::Test::HasFailure()) {
    for (int i = 0; i < size(); ++i) {
      std::string log = ReadLog(i);
      if (log.size() > 20000) log = log.substr(log.size() - 20000);
      std::cerr << "---- etcd " << members_[i].name << " log (tail) ----\n" << log << "\n";
    }
  }
  if (!temp_dir_.empty() && std::getenv("SNAPCONF_KEEP_TEST_DIRS") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(temp_dir_, ec);
  }
}

std::string EtcdCluster::endpoint(int i) const {
  return absl::StrCat("127.0.0.1:", members_[i].client_port);
}

std::string EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return absl::StrJoin(out, ",");
}

std::string EtcdCluster::RunningEndpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) {
    if (running(i)) out.push_back(endpoint(i));
  }
  return absl::StrJoin(out, ",");
}

absl::Status EtcdCluster::Spawn(int i) {
  Member& m = members_[i];
  const std::string client =
      absl::StrCat(tls_dir_.empty() ? "http" : "https", "://127.0.0.1:", m.client_port);
  const std::string peer = absl::StrCat("http://127.0.0.1:", m.peer_port);
  std::vector<std::string> args = {EtcdBinary(),
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   m.data_dir,
                                   "--listen-client-urls",
                                   client,
                                   "--advertise-client-urls",
                                   client,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   initial_cluster_,
                                   "--initial-cluster-state",
                                   "new",
                                   "--initial-cluster-token",
                                   "snapconf-test",
                                   "--heartbeat-interval",
                                   "10",
                                   "--election-timeout",
                                   "100",
                                   "--max-txn-ops",
                                   "1024",
                                   "--logger",
                                   "zap",
                                   "--log-outputs",
                                   "stderr",
                                   "--log-level",
                                   "warn"};
  if (!tls_dir_.empty()) {
    args.insert(args.end(), {"--cert-file", tls_dir_ + "/server.pem", "--key-file",
                             tls_dir_ + "/server-key.pem", "--trusted-ca-file", ca_file(),
                             "--client-cert-auth"});
  }
  args.insert(args.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, m.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return ErrnoError(absl::StrCat("spawn ", EtcdBinary()), rc);
  m.pid = pid;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid == 0) return absl::OkStatus();
  kill(m.pid, SIGKILL);
  int wstatus = 0;
  while (waitpid(m.pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  m.pid = 0;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Restart(int i) {
  if (running(i)) return absl::FailedPreconditionError(absl::StrCat(members_[i].name, " runs"));
  return Spawn(i);
}

CommandResult EtcdCluster::Etcdctl(const std::vector<std::string>& args, absl::Duration timeout) {
  std::vector<std::string> argv = {EtcdctlBinary(), "--endpoints=" + RunningEndpoints(),
                                   "--dial-timeout=1s", "--command-timeout=2s"};
  if (!tls_dir_.empty()) {
    argv.insert(argv.end(), {"--cacert=" + ca_file(), "--cert=" + client_cert_file(),
                             "--key=" + client_key_file()});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  CommandOptions options;
  options.env = {"ETCDCTL_API=3"};
  options.timeout = timeout;
  return RunCommand(argv, options);
}

absl::Status EtcdCluster::WaitHealthy(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  CommandResult last;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    // Each running member must serve a linearizable read (it has a leader).
    last = Etcdctl({"endpoint", "health"}, absl::Seconds(5));
    for (int i = 0; i < size(); ++i) {
      if (running(i) && waitpid(members_[i].pid, nullptr, WNOHANG) == members_[i].pid) {
        members_[i].pid = 0;
        return absl::InternalError(
            absl::StrCat("etcd member ", members_[i].name, " exited:\n", ReadLog(i)));
      }
    }
    if (last.exit_code == 0) return absl::OkStatus();
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat("etcd not healthy within ",
                                                  absl::FormatDuration(timeout), ": ",
                                                  last.stdout_text, last.stderr_text));
}

absl::StatusOr<int> EtcdCluster::Leader() {
  // `endpoint status` lines: "endpoint, id, version, db size, is leader, ...".
  CommandResult r = Etcdctl({"endpoint", "status"});
  for (absl::string_view line : absl::StrSplit(r.stdout_text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> fields = absl::StrSplit(line, ", ");
    if (fields.size() < 5 || fields[4] != "true") continue;
    for (int i = 0; i < size(); ++i) {
      if (fields[0] == endpoint(i)) return i;
    }
  }
  return absl::UnavailableError(absl::StrCat("no leader: ", r.stdout_text, r.stderr_text));
}

absl::StatusOr<int64_t> EtcdCluster::Revision() {
  CommandResult r = Etcdctl({"get", "--write-out=fields", "/"});
  for (absl::string_view line : absl::StrSplit(r.stdout_text, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "\"Revision\" : ")) {
      int64_t revision = 0;
      if (absl::SimpleAtoi(line, &revision)) return revision;
    }
  }
  return absl::UnavailableError(absl::StrCat("etcdctl get: ", r.stdout_text, r.stderr_text));
}

absl::Status EtcdCluster::MakeCertificates() {
  tls_dir_ = temp_dir_ + "/tls";
  std::filesystem::create_directories(tls_dir_);
  const std::string d = tls_dir_;
  const std::vector<std::vector<std::string>> steps = {
      {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
       "/CN=snapconf test CA", "-keyout", d + "/ca-key.pem", "-out", d + "/ca.pem"},
      {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
       d + "/server-key.pem", "-out", d + "/server.csr"},
      {"openssl", "x509", "-req", "-in", d + "/server.csr", "-CA", d + "/ca.pem", "-CAkey",
       d + "/ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", d + "/server.ext", "-out",
       d + "/server.pem"},
      {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=snapconfd", "-keyout",
       d + "/client-key.pem", "-out", d + "/client.csr"},
      {"openssl", "x509", "-req", "-in", d + "/client.csr", "-CA", d + "/ca.pem", "-CAkey",
       d + "/ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", d + "/client.ext", "-out",
       d + "/client.pem"},
  };
  {
    std::ofstream(d + "/server.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                     << "extendedKeyUsage=serverAuth,clientAuth\n";
    std::ofstream(d + "/client.ext") << "extendedKeyUsage=clientAuth\n";
  }
  for (const auto& step : steps) {
    std::vector<std::string> argv = step;
    argv[0] = "/usr/bin/openssl";
    CommandResult r = RunCommand(argv);
    if (r.exit_code != 0) {
      return absl::InternalError(absl::StrCat("openssl ", step[1], ": ", r.stderr_text));
    }
  }
  return absl::OkStatus();
}

std::string EtcdCluster::ReadLog(int i) const { return ReadFileOrEmpty(members_[i].log_path); }

}  // namespace snapconf::testing
