// tests/testing/etcd_cluster.h
//
// Integration-test harness: a real etcd cluster (Debian's etcd 3.4) of N
// members on free loopback ports, each with its own data directory inside
// one temporary directory, with fast elections (--heartbeat-interval 10
// --election-timeout 100). Start() waits (bounded) until every member answers
// a linearizable health check. Members can be killed, stopped and restarted
// with their data; the destructor SIGKILLs every member and removes the
// temporary directory (kept when SNAPCONF_KEEP_TEST_DIRS is set). Member logs
// are printed when the owning test failed.
//
// The binaries are $ETCD_BIN / $ETCDCTL_BIN when set, else /usr/bin/etcd and
// /usr/bin/etcdctl.
//
// Thread safety: use from one thread (the test's).
//
//   ASSERT_OK_AND_ASSIGN(auto etcd, EtcdCluster::Start());
//   server flags: {"--store=etcd", "--etcd-endpoints=" + etcd->endpoints()}
//   ASSERT_OK(etcd->Kill(etcd->Leader().value()));
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/server_process.h"

namespace snapconf::testing {

struct EtcdClusterOptions {
  int members = 3;
  // Extra flags for every member.
  std::vector<std::string> extra_flags;
  absl::Duration ready_timeout = absl::Seconds(20);
  // Serve clients over TLS and require client certificates: a fresh CA, a
  // server certificate for 127.0.0.1 and a client certificate are made with
  // openssl in the temporary directory (see ca_file() and friends).
  bool tls = false;
};

class EtcdCluster {
 public:
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(EtcdClusterOptions options = {});

  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;
  ~EtcdCluster();

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:PORT" of member i's client URL.
  std::string endpoint(int i) const;
  // Every member's endpoint, comma-separated (for --etcd-endpoints).
  std::string endpoints() const;
  bool running(int i) const { return members_[i].pid != 0; }

  // SIGKILL member i and reap it.
  absl::Status Kill(int i);
  // Start member i again with its data directory and ports (no wait).
  absl::Status Restart(int i);
  // Waits until every running member answers a linearizable read
  // (`etcdctl endpoint health`), or `timeout`.
  absl::Status WaitHealthy(absl::Duration timeout = absl::Seconds(20));
  // Index of the member that currently leads (asks the running members).
  absl::StatusOr<int> Leader();
  // The current etcd revision (a linearizable read through any member).
  absl::StatusOr<int64_t> Revision();
  // Runs etcdctl (API v3) against the running members with `args`.
  CommandResult Etcdctl(const std::vector<std::string>& args,
                        absl::Duration timeout = absl::Seconds(10));

  std::string ReadLog(int i) const;

  // With options.tls: PEM files for a client (empty otherwise).
  std::string ca_file() const { return tls_dir_.empty() ? "" : tls_dir_ + "/ca.pem"; }
  std::string client_cert_file() const { return tls_dir_.empty() ? "" : tls_dir_ + "/client.pem"; }
  std::string client_key_file() const {
    return tls_dir_.empty() ? "" : tls_dir_ + "/client-key.pem";
  }

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log_path;
    pid_t pid = 0;
  };

  explicit EtcdCluster(EtcdClusterOptions options) : options_(std::move(options)) {}
  absl::Status Spawn(int i);
  absl::Status MakeCertificates();
  std::string RunningEndpoints() const;

  EtcdClusterOptions options_;
  std::string temp_dir_;
  std::string initial_cluster_;
  std::string tls_dir_;
  std::vector<Member> members_;
};

// The etcd and etcdctl binaries the harness runs.
std::string EtcdBinary();
std::string EtcdctlBinary();

}  // namespace snapconf::testing
