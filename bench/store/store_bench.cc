// SQLite store benchmarks: durable commits per second through the group-commit
// engine with 1, 16 and 256 concurrent writers (WAL, synchronous=FULL, real
// fsyncs on the data directory's file system). Each iteration is one Commit()
// of a one-key Put. Counters: commits/s (items_per_second) and the mean number
// of requests per persisted group, and the mean time one group spends in
// Persist() (BEGIN IMMEDIATE ... COMMIT, fsync included). Results and the command line are in
// bench/RESULTS.md. Benchmarks measure; they never assert.
//
// The data directory is $SNAPCONF_BENCH_DIR, else a fresh one under /tmp; it
// is removed afterwards.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "service/store/local_store.h"
#include "service/store/sqlite/sqlite_store.h"

namespace snapconf {
namespace {

class NullListener : public CommitListener {
 public:
  void OnCommitted(const SnapshotPtr&, const CommitRecord&) override {}
  void OnReloaded(const SnapshotPtr&) override {}
};

// Shared by the threads of one benchmark run; set up and torn down by thread 0
// (the benchmark loop's start and end are barriers for all its threads).
struct Fixture {
  std::filesystem::path dir;
  NullListener listener;
  std::unique_ptr<Store> store;
  StoreStats before;
};
Fixture* g_fixture = nullptr;

std::filesystem::path MakeDir() {
  const char* base = std::getenv("SNAPCONF_BENCH_DIR");
  std::string pattern =
      (std::filesystem::path(base != nullptr ? base : "/tmp") / "snapconf-bench-XXXXXX").string();
  return ::mkdtemp(pattern.data());
}

void BM_SqliteCommit(benchmark::State& state) {
  if (state.thread_index() == 0) {
    g_fixture = new Fixture;
    g_fixture->dir = MakeDir();
    SqliteStoreOptions options;
    options.data_dir = g_fixture->dir;
    auto store = OpenSqliteStore(options);
    if (!store.ok() || !(*store)->Start(&g_fixture->listener).ok()) {
      state.SkipWithError("cannot open the SQLite store");
    } else {
      g_fixture->store = std::move(*store);
      g_fixture->before = static_cast<LocalStore*>(g_fixture->store.get())->stats();
    }
  }
  const std::string key_prefix = "writer-" + std::to_string(state.thread_index()) + "/key-";
  const std::string value(100, 'v');
  int64_t i = 0;
  for (auto _ : state) {
    WriteRequest request;
    request.changes.Put("bench/ns", key_prefix + std::to_string(i++ % 1000), value, "text/plain");
    request.author = "bench";
    auto result = g_fixture->store->Commit(std::move(request));
    if (!result.ok()) {
      state.SkipWithError(std::string(result.status().message()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    if (g_fixture->store != nullptr) {
      const StoreStats after = static_cast<LocalStore*>(g_fixture->store.get())->stats();
      const double groups = static_cast<double>(after.groups - g_fixture->before.groups);
      state.counters["per_group"] =
          groups > 0 ? static_cast<double>(after.commits - g_fixture->before.commits) / groups : 0;
      state.counters["groups_per_s"] = benchmark::Counter(groups, benchmark::Counter::kIsRate);
      state.counters["persist_ms"] =
          groups > 0
              ? absl::ToDoubleMilliseconds(after.persist_time - g_fixture->before.persist_time) /
                    groups
              : 0;
      g_fixture->store->Close();
    }
    std::error_code ec;
    std::filesystem::remove_all(g_fixture->dir, ec);
    delete g_fixture;
    g_fixture = nullptr;
  }
}
BENCHMARK(BM_SqliteCommit)->Threads(1)->Threads(16)->Threads(256)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace snapconf

BENCHMARK_MAIN();
