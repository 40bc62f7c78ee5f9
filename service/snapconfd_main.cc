// snapconfd: the snapconf configuration server.
//
// Start-up failures print one sentence and exit non-zero; SIGTERM/SIGINT stop
// it gracefully (exit 0). See `snapconfd --help`.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpc/support/log.h"
#include "service/log.h"
#include "service/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7070", "Address to serve gRPC on (host:port).");
ABSL_FLAG(std::string, data_dir, "./snapconf-data", "Directory of the embedded store.");
ABSL_FLAG(std::string, store, "sqlite",
          "Store: sqlite (one node) or etcd (several replicas on one etcd cluster).");
// --- etcd store (service/store/etcd) ---
ABSL_FLAG(std::vector<std::string>, etcd_endpoints, {},
          "With --store=etcd: etcd members as host:port,host:port,...");
ABSL_FLAG(std::string, etcd_prefix, "/snapconf/",
          "With --store=etcd: every key snapconf writes to etcd starts with this.");
ABSL_FLAG(std::string, etcd_ca, "", "With --store=etcd: CA certificate (PEM) that signed etcd's.");
ABSL_FLAG(std::string, etcd_cert, "", "With --store=etcd: client certificate (PEM) for etcd.");
ABSL_FLAG(std::string, etcd_key, "", "With --store=etcd: private key (PEM) of --etcd-cert.");
ABSL_FLAG(absl::Duration, etcd_request_timeout, absl::Seconds(5),
          "With --store=etcd: how long one write may take in etcd (all its attempts).");
// --- end etcd store ---
ABSL_FLAG(std::string, ready_file, "",
          "When set, the bound address (host:port) is written here once serving.");
ABSL_FLAG(std::string, node_id, "", "Name of this node in responses (default: host:port).");
ABSL_FLAG(absl::Duration, grace_period, absl::Seconds(5),
          "How long in-flight calls may take to finish on shutdown.");
ABSL_FLAG(int64_t, history_max_records, 100000,
          "History keeps at most this many change sets (0: unlimited).");
ABSL_FLAG(absl::Duration, history_max_age, absl::Hours(24 * 30),
          "History keeps change sets at most this long (inf: unlimited).");
ABSL_FLAG(int64_t, max_value_bytes, 1 << 20, "Largest value accepted.");
ABSL_FLAG(int64_t, max_key_bytes, 256, "Longest key accepted.");
ABSL_FLAG(int64_t, recent_snapshots, 1024,
          "Snapshots of the newest revisions kept in memory for reads at older revisions.");
// --- watch fan-out (service/watch) ---
ABSL_FLAG(absl::Duration, watch_progress_interval, absl::Seconds(10),
          "Idle watch streams get a progress message this often.");
ABSL_FLAG(int64_t, watch_max_streams, 10000,
          "Open watches allowed in total (a Watch stream, or one watch of a WatchMany stream).");
ABSL_FLAG(int64_t, watch_max_streams_per_peer, 1000,
          "Open watches allowed from one client host (as --watch_max_streams counts them).");
ABSL_FLAG(int64_t, watch_log_revisions, 10000,
          "Revisions kept in the watch event log (watchers further behind are reset).");
ABSL_FLAG(int64_t, watch_log_bytes, 64 << 20, "Bytes kept in the watch event log.");
ABSL_FLAG(int, watch_completion_queues, 16,
          "gRPC completion queues that carry watch streams; each has one thread, which also "
          "starts the writes of its streams.");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(30),
          "Ping idle client connections this often (reaps dead watchers).");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(10),
          "Close a connection whose keepalive ping is not answered within this.");
// --- end watch fan-out ---
ABSL_FLAG(std::string, tls_cert_file, "", "PEM certificate chain of the server; enables TLS.");
ABSL_FLAG(std::string, tls_key_file, "", "PEM private key of --tls-cert-file.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA bundle that client certificates must chain to (mutual TLS); a client "
          "certificate's subject becomes the caller's identity.");
ABSL_FLAG(std::string, tls_client_auth, "require",
          "With --tls-client-ca-file: require (refuse clients without a valid certificate) or "
          "request (verify one when offered).");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(10),
          "How often certificate files are re-read, so rotated certificates need no restart.");
ABSL_FLAG(std::string, tokens_file, "",
          "Bearer tokens file (id, identity and SHA-256 of each secret; mode 0600); needs TLS. "
          "Re-read when it changes.");
ABSL_FLAG(std::string, policy_file, "",
          "Roles and bindings (YAML) that authorize authenticated callers; re-read when it "
          "changes. Without it, authenticated callers are granted nothing.");
ABSL_FLAG(std::string, audit_log, "",
          "Audit log of writes, refusals and policy changes, one JSON object per line "
          "(default: <data-dir>/audit.log).");
ABSL_FLAG(int64_t, audit_log_max_bytes, 64 << 20,
          "Rotate the audit log to <audit-log>.1 past this size (0: never).");
ABSL_FLAG(bool, allow_insecure_non_loopback, false,
          "Serve a non-loopback --listen address without TLS and authentication. Anyone who can "
          "reach it can read and change every setting.");
ABSL_FLAG(double, rate_limit_per_identity, 0,
          "Requests per second each identity may make (unary calls and watch opens); 0: no "
          "limit. Over it: RESOURCE_EXHAUSTED with trailing metadata retry-after-ms.");
ABSL_FLAG(int64_t, rate_burst_per_identity, 0,
          "Requests an idle identity may make at once (0: the rate, at least 1).");
ABSL_FLAG(int64_t, rate_limit_tracked_identities, 10000,
          "Identities whose request rate is tracked; beyond, busy identities share one bucket.");
ABSL_FLAG(int64_t, max_watch_streams_per_identity, 0,
          "Open watch streams allowed per identity; 0: no limit.");

// --- metrics and logs (service/metrics, service/log.h) ---
ABSL_FLAG(std::string, metrics_listen, "",
          "Serve Prometheus metrics at http://HOST:PORT/metrics (empty: off). Plain HTTP: a "
          "loopback address unless --allow-insecure-non-loopback.");
ABSL_FLAG(std::string, log_format, "text",
          "Log lines on stderr: text (ts=... level=... event=... key=value) or json (one object "
          "per line).");
// --- end metrics and logs ---

namespace {

// gRPC's own log lines become events too, so every stderr line has the
// chosen format.
void GrpcLogToEvents(gpr_log_func_args* args) {
  const snapconf::LogLevel level =
      args->severity == GPR_LOG_SEVERITY_ERROR  ? snapconf::LogLevel::kError
      : args->severity == GPR_LOG_SEVERITY_INFO ? snapconf::LogLevel::kInfo
                                                : snapconf::LogLevel::kWarning;
  snapconf::LogEvent(level, "grpc",
                     {{"msg", args->message != nullptr ? args->message : ""},
                      {"file", args->file != nullptr ? args->file : ""},
                      {"line", args->line}});
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "snapconfd serves snapconf's gRPC API.\n\n"
      "  snapconfd --listen=127.0.0.1:7070 --data-dir=./snapconf-data\n"
      "  snapconfd --listen=0.0.0.0:7070 --store=etcd --etcd-endpoints=e1:2379,e2:2379,e3:2379");
  // Flags are documented with dashes (--data-dir); Abseil names them with
  // underscores. Both spellings are accepted.
  std::vector<std::string> normalized(argv, argv + argc);
  for (std::string& arg : normalized) {
    if (arg.rfind("--", 0) != 0) continue;
    const size_t end = std::min(arg.find('='), arg.size());
    std::replace(arg.begin() + 2, arg.begin() + static_cast<std::ptrdiff_t>(end), '-', '_');
  }
  std::vector<char*> normalized_argv;
  for (std::string& arg : normalized) normalized_argv.push_back(arg.data());
  absl::ParseCommandLine(argc, normalized_argv.data());

  // Signals are taken synchronously by the main thread: block them before any
  // thread starts so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // Debian's Abseil keeps its debug checks: every absl::Mutex (gRPC's locks
  // are) would record lock order in one process-wide graph under one lock,
  // which serializes the watch fan-out's threads. Tests check lock order.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  // --- metrics and logs ---
  absl::StatusOr<snapconf::LogFormat> log_format =
      snapconf::ParseLogFormat(absl::GetFlag(FLAGS_log_format));
  if (!log_format.ok()) {
    std::fprintf(stderr, "snapconfd: cannot start: %s\n",
                 std::string(log_format.status().message()).c_str());
    return 1;
  }
  snapconf::SetLogFormat(*log_format);
  gpr_set_log_function(GrpcLogToEvents);
  // --- end metrics and logs ---

  snapconf::ServerOptions options;
  options.listen = absl::GetFlag(FLAGS_listen);
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.store = absl::GetFlag(FLAGS_store);
  options.node_id = absl::GetFlag(FLAGS_node_id);
  // --- etcd store (service/store/etcd) ---
  options.etcd_endpoints = absl::GetFlag(FLAGS_etcd_endpoints);
  options.etcd_prefix = absl::GetFlag(FLAGS_etcd_prefix);
  options.etcd_ca_file = absl::GetFlag(FLAGS_etcd_ca);
  options.etcd_cert_file = absl::GetFlag(FLAGS_etcd_cert);
  options.etcd_key_file = absl::GetFlag(FLAGS_etcd_key);
  options.etcd_request_timeout = absl::GetFlag(FLAGS_etcd_request_timeout);
  // --- end etcd store ---
  options.grace_period = absl::GetFlag(FLAGS_grace_period);
  options.retention.max_records = absl::GetFlag(FLAGS_history_max_records);
  options.retention.max_age = absl::GetFlag(FLAGS_history_max_age);
  options.limits.max_value_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_value_bytes));
  options.limits.max_key_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_key_bytes));
  options.engine.recent_snapshots = static_cast<size_t>(absl::GetFlag(FLAGS_recent_snapshots));
  // --- watch fan-out (service/watch) ---
  options.watch.progress_interval = absl::GetFlag(FLAGS_watch_progress_interval);
  options.watch.max_streams = absl::GetFlag(FLAGS_watch_max_streams);
  options.watch.max_streams_per_peer = absl::GetFlag(FLAGS_watch_max_streams_per_peer);
  options.watch.log_max_revisions = std::max<int64_t>(1, absl::GetFlag(FLAGS_watch_log_revisions));
  options.watch.log_max_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_watch_log_bytes));
  options.watch.completion_queues = absl::GetFlag(FLAGS_watch_completion_queues);
  options.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  options.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  // --- end watch fan-out ---
  options.security.tls_cert_file = absl::GetFlag(FLAGS_tls_cert_file);
  options.security.tls_key_file = absl::GetFlag(FLAGS_tls_key_file);
  options.security.tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca_file);
  options.security.tls_client_auth = absl::GetFlag(FLAGS_tls_client_auth);
  options.security.tls_reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);
  options.security.tokens_file = absl::GetFlag(FLAGS_tokens_file);
  options.security.allow_insecure_non_loopback = absl::GetFlag(FLAGS_allow_insecure_non_loopback);
  options.policy_file = absl::GetFlag(FLAGS_policy_file);
  options.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);  // metrics
  options.identity_limits.rate_per_second = absl::GetFlag(FLAGS_rate_limit_per_identity);
  options.identity_limits.burst = absl::GetFlag(FLAGS_rate_burst_per_identity);
  options.identity_limits.max_tracked_identities =
      static_cast<size_t>(std::max<int64_t>(1, absl::GetFlag(FLAGS_rate_limit_tracked_identities)));
  options.identity_limits.max_watch_streams = absl::GetFlag(FLAGS_max_watch_streams_per_identity);
  options.audit_log = absl::GetFlag(FLAGS_audit_log);
  options.audit_log_max_bytes = absl::GetFlag(FLAGS_audit_log_max_bytes);

  snapconf::Server server(options);
  if (absl::Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "snapconfd: cannot start: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  if (!ready_file.empty()) {
    // Written to a temporary name and renamed, so a reader never sees half.
    const std::string tmp = ready_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << server.address() << "\n";
    }
    std::error_code ec;
    std::filesystem::rename(tmp, ready_file, ec);
    if (ec) {
      std::fprintf(stderr, "snapconfd: cannot write ready file %s: %s\n", ready_file.c_str(),
                   ec.message().c_str());
    }
  }

  for (;;) {
    timespec tick{0, 500 * 1000 * 1000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      snapconf::LogStopRequested(sig == SIGTERM ? "SIGTERM" : "SIGINT");
      break;
    }
    server.CheckHealth();
    server.ReloadCredentials();
  }
  server.Shutdown();
  return 0;
}
