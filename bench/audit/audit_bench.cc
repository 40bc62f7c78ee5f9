// Audit log append cost: one AuditLog::Append of a typical write's event (one
// key), with 1 and 2 appending threads, with the background fdatasync running
// as it does in snapconfd (every 200 ms while lines arrive), and with rotation
// at the default 64 MiB. This is what every audited write adds to its call
// before the answer is sent. Results and the command line are in
// bench/RESULTS.md. Benchmarks measure; they never assert.
//
// The log lives in $SNAPCONF_BENCH_DIR, else a fresh directory under /tmp; it
// is removed afterwards.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "service/security/audit.h"

namespace snapconf {
namespace {

std::string BenchDir() {
  if (const char* d = std::getenv("SNAPCONF_BENCH_DIR"); d != nullptr && *d != '\0') return d;
  std::string dir = "/tmp/audit_benchXXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) std::abort();
  return dir;
}

AuditLog* SharedLog() {
  static AuditLog* log = [] {
    const std::string dir = BenchDir();
    auto opened = AuditLog::Open({.path = dir + "/audit.log"});
    if (!opened.ok()) std::abort();
    std::atexit([] {
      std::filesystem::remove_all(std::filesystem::path(SharedLog()->path()).parent_path());
    });
    return opened->release();
  }();
  return log;
}

void BM_Append(benchmark::State& state) {
  AuditLog* log = SharedLog();
  v1::AuditEvent event;
  event.set_identity("ci/deployer");
  event.set_method("/snapconf.v1.ConfigService/Put");
  event.add_namespaces("payments/prod");
  event.add_keys("payments/prod/db.pool.max");
  event.set_old_revision(41);
  event.set_new_revision(42);
  event.set_outcome("OK");
  for (auto _ : state) {
    SetAuditTime(absl::Now(), &event);
    if (!log->Append(event).ok()) state.SkipWithError("append failed");
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Append)->Threads(1)->Threads(2)->UseRealTime();

// The JSON encoding of one event alone (no I/O), for comparison.
void BM_Encode(benchmark::State& state) {
  v1::AuditEvent event;
  event.set_identity("ci/deployer");
  event.set_method("/snapconf.v1.ConfigService/Put");
  event.add_namespaces("payments/prod");
  event.add_keys("payments/prod/db.pool.max");
  event.set_old_revision(41);
  event.set_new_revision(42);
  event.set_outcome("OK");
  for (auto _ : state) {
    SetAuditTime(absl::Now(), &event);
    benchmark::DoNotOptimize(AuditLine(event));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Encode);

}  // namespace
}  // namespace snapconf

BENCHMARK_MAIN();
