// Snapshot core benchmarks: point reads through Publisher::Read against the usual
// alternatives, side by side in one binary, plus Apply and Diff at 1M keys. Results and the
// command line are in bench/RESULTS.md. Benchmarks measure; they never assert.
//
// Read variants (same keys, same random order, same work on the found entry):
//   FlatHashMap       unsynchronized absl::flat_hash_map<string, EntryPtr> (the floor)
//   SnapshotFind      Snapshot::Find on a snapshot held by the thread (same map, no sync)
//   PublisherRead     Publisher::Read + Snapshot::Find (what the server does)
//   SharedMutexMap    std::shared_mutex (shared lock) + flat_hash_map
//   AtomicSharedPtr   std::atomic<std::shared_ptr<const Snapshot>> load + Snapshot::Find
// Second argument 1 = a background writer publishes 1000 snapshots/s (one changed key each).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "snapshot/publisher.h"
#include "snapshot/snapshot.h"

namespace snapconf {
namespace {

constexpr char kNs[] = "payments/prod";
constexpr size_t kOrderSize = 1 << 16;

std::string KeyName(int64_t i) {
  return absl::StrCat("service-", i % 997, "/config/setting-", 1000000 + i);
}

// Everything one key count needs, built once and shared by all benchmarks of that size.
struct Dataset {
  explicit Dataset(int64_t n) {
    std::mt19937_64 rng(n);
    keys.reserve(n);
    SnapshotBuilder builder;
    builder.Reserve(n);
    for (int64_t i = 0; i < n; ++i) {
      keys.push_back(KeyName(i));
      auto e = std::make_shared<const Entry>(Entry{absl::StrCat("value-", i), "", 1, 1, 1});
      builder.Add(kNs, keys.back(), e);
      map.emplace(keys.back(), e);
    }
    snapshot = std::move(builder).Build(1);
    publisher = std::make_unique<Publisher>(snapshot);
    atomic_snapshot.store(snapshot);
    order.resize(kOrderSize);
    for (auto& o : order) o = static_cast<uint32_t>(rng() % n);
  }
  std::vector<std::string> keys;
  std::vector<uint32_t> order;  // random key indices, pre-generated
  absl::flat_hash_map<std::string, EntryPtr> map;
  SnapshotPtr snapshot;
  std::unique_ptr<Publisher> publisher;
  std::shared_mutex map_mu;
  std::atomic<std::shared_ptr<const Snapshot>> atomic_snapshot;
};

Dataset& GetDataset(int64_t n) {
  static std::mutex mu;
  static std::map<int64_t, std::unique_ptr<Dataset>>* sets =
      new std::map<int64_t, std::unique_ptr<Dataset>>;
  std::lock_guard<std::mutex> lock(mu);
  auto& d = (*sets)[n];
  if (d == nullptr) d = std::make_unique<Dataset>(n);
  return *d;
}

enum class Variant { kFlatHashMap, kSnapshotFind, kPublisherRead, kSharedMutex, kAtomicShared };

// Publishes ~1000 snapshots/s into the variant's structure until stopped.
class BackgroundWriter {
 public:
  BackgroundWriter(Dataset& d, Variant v) : d_(d), v_(v), thread_([this] { Run(); }) {}
  ~BackgroundWriter() {
    stop_.store(true);
    thread_.join();
  }

 private:
  void Run() {
    SnapshotPtr cur = d_.snapshot;
    Revision rev = cur->revision();
    std::mt19937_64 rng(42);
    auto next = std::chrono::steady_clock::now();
    while (!stop_.load(std::memory_order_relaxed)) {
      const std::string& key = d_.keys[rng() % d_.keys.size()];
      const std::string value = absl::StrCat("w", rev);
      if (v_ == Variant::kSharedMutex) {
        auto e = std::make_shared<const Entry>(Entry{value, "", 1, rev, 2});
        std::unique_lock<std::shared_mutex> lock(d_.map_mu);
        d_.map[key] = std::move(e);
      } else {
        ChangeSet cs;
        cs.Put(kNs, key, value);
        cur = cur->Apply(cs, ++rev)->snapshot;
        if (v_ == Variant::kPublisherRead) {
          d_.publisher->Publish(cur);
        } else {
          d_.atomic_snapshot.store(cur);
        }
      }
      next += std::chrono::milliseconds(1);
      std::this_thread::sleep_until(next);
    }
    // Leave the dataset as it was for the next benchmark.
    if (v_ == Variant::kPublisherRead) d_.publisher->Publish(d_.snapshot);
    if (v_ == Variant::kAtomicShared) d_.atomic_snapshot.store(d_.snapshot);
    d_.publisher->Reclaim();
  }

  Dataset& d_;
  Variant v_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

size_t Work(const Entry* e) { return e == nullptr ? 0 : e->value.size(); }

template <Variant kVariant>
void BM_Get(benchmark::State& state) {
  Dataset& d = GetDataset(state.range(0));
  const bool with_writer = state.range(1) != 0;
  std::unique_ptr<BackgroundWriter> writer;
  if (with_writer && state.thread_index() == 0) {
    writer = std::make_unique<BackgroundWriter>(d, kVariant);
  }
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  const SnapshotPtr held = d.snapshot;
  for (auto _ : state) {
    const std::string& key = d.keys[d.order[i++ & (kOrderSize - 1)]];
    size_t r = 0;
    if constexpr (kVariant == Variant::kFlatHashMap) {
      auto it = d.map.find(key);
      r = it == d.map.end() ? 0 : Work(it->second.get());
    } else if constexpr (kVariant == Variant::kSnapshotFind) {
      r = Work(held->Find(kNs, key));
    } else if constexpr (kVariant == Variant::kPublisherRead) {
      r = d.publisher->Read([&](const Snapshot& s) { return Work(s.Find(kNs, key)); });
    } else if constexpr (kVariant == Variant::kSharedMutex) {
      std::shared_lock<std::shared_mutex> lock(d.map_mu);
      auto it = d.map.find(key);
      r = it == d.map.end() ? 0 : Work(it->second.get());
    } else {
      std::shared_ptr<const Snapshot> s = d.atomic_snapshot.load();
      r = Work(s->Find(kNs, key));
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  writer.reset();
}

void GetArgs(benchmark::internal::Benchmark* b, bool writer_variants) {
  for (int64_t n : {1000, 100000, 1000000}) {
    b->Args({n, 0});
    if (writer_variants) b->Args({n, 1});
  }
  b->ArgNames({"keys", "writer"})->Threads(1)->Threads(2)->UseRealTime();
}

BENCHMARK(BM_Get<Variant::kFlatHashMap>)->Apply([](auto* b) { GetArgs(b, false); });
BENCHMARK(BM_Get<Variant::kSnapshotFind>)->Apply([](auto* b) { GetArgs(b, false); });
BENCHMARK(BM_Get<Variant::kPublisherRead>)->Apply([](auto* b) { GetArgs(b, true); });
BENCHMARK(BM_Get<Variant::kSharedMutex>)->Apply([](auto* b) { GetArgs(b, true); });
BENCHMARK(BM_Get<Variant::kAtomicShared>)->Apply([](auto* b) { GetArgs(b, true); });

// The synchronization alone, with no lookup: read the revision of the current snapshot.
// 0 = a plain pointer the thread already holds, 1 = Publisher::Read, 2 = atomic<shared_ptr>.
void BM_ReadOverhead(benchmark::State& state) {
  Dataset& d = GetDataset(1000);
  const Snapshot* raw = d.snapshot.get();
  Revision r = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(raw);
    switch (state.range(0)) {
      case 0:
        r += raw->revision();
        break;
      case 1:
        r += d.publisher->Read([](const Snapshot& s) { return s.revision(); });
        break;
      default:
        r += d.atomic_snapshot.load()->revision();
        break;
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetLabel(state.range(0) == 0   ? "raw pointer"
                 : state.range(0) == 1 ? "Publisher::Read"
                                       : "atomic<shared_ptr>");
}
BENCHMARK(BM_ReadOverhead)->Arg(0)->Arg(1)->Arg(2)->ArgName("kind")->Threads(1)->Threads(2);

// One change set of `range(1)` random puts applied to a 1M-key snapshot (the result is
// dropped each time, which frees the copied path: included, it is part of the real cost).
void BM_Apply(benchmark::State& state) {
  Dataset& d = GetDataset(state.range(0));
  std::mt19937_64 rng(1);
  std::vector<ChangeSet> sets(64);
  for (ChangeSet& cs : sets) {
    for (int64_t k = 0; k < state.range(1); ++k) {
      cs.Put(kNs, d.keys[rng() % d.keys.size()], "new-value");
    }
  }
  size_t i = 0;
  for (auto _ : state) {
    auto applied = d.snapshot->Apply(sets[i++ % sets.size()], 2);
    benchmark::DoNotOptimize(applied);
  }
  state.counters["keys_per_apply"] = static_cast<double>(state.range(1));
}
BENCHMARK(BM_Apply)->Args({1000000, 1})->Args({1000000, 100})->ArgNames({"keys", "batch"});

// Diff between a 1M-key snapshot and one `range(1)` random changes later.
void BM_Diff(benchmark::State& state) {
  Dataset& d = GetDataset(state.range(0));
  std::mt19937_64 rng(2);
  ChangeSet cs;
  for (int64_t k = 0; k < state.range(1); ++k) {
    cs.Put(kNs, d.keys[rng() % d.keys.size()], "changed");
  }
  SnapshotPtr later = d.snapshot->Apply(cs, 2)->snapshot;
  size_t changes = 0;
  for (auto _ : state) {
    std::vector<EntryChange> diff = Diff(*d.snapshot, *later);
    changes = diff.size();
    benchmark::DoNotOptimize(diff);
  }
  state.counters["changes"] = static_cast<double>(changes);
}
BENCHMARK(BM_Diff)->Args({1000000, 1})->Args({1000000, 100})->ArgNames({"keys", "changes"});

// Start-up: bulk build of a 1M-key snapshot from rows in (ns, key) order (what an ORDER BY
// query returns; range(1) = 1) or shuffled (range(1) = 0, pays for the sort).
void BM_BuildSnapshot(benchmark::State& state) {
  Dataset& d = GetDataset(state.range(0));
  std::vector<size_t> perm(d.keys.size());
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = i;
  if (state.range(1) != 0) {
    std::sort(perm.begin(), perm.end(), [&](size_t a, size_t b) { return d.keys[a] < d.keys[b]; });
  } else {
    std::shuffle(perm.begin(), perm.end(), std::mt19937_64(3));
  }
  auto e = std::make_shared<const Entry>(Entry{"v", "", 1, 1, 1});
  for (auto _ : state) {
    state.PauseTiming();
    SnapshotBuilder b;
    b.Reserve(perm.size());
    for (size_t i : perm) b.Add(kNs, d.keys[i], e);
    state.ResumeTiming();
    SnapshotPtr s = std::move(b).Build(1);
    benchmark::DoNotOptimize(s);
    state.PauseTiming();
    s.reset();  // freeing is not part of the load
    state.ResumeTiming();
  }
}
BENCHMARK(BM_BuildSnapshot)
    ->Args({1000000, 1})
    ->Args({1000000, 0})
    ->ArgNames({"keys", "sorted"})
    ->Unit(benchmark::kMillisecond);

// Publish with nobody reading: swap + membarrier + slot scan + freeing the retired snapshot.
void BM_Publish(benchmark::State& state) {
  Dataset& d = GetDataset(state.range(0));
  ChangeSet cs;
  cs.Put(kNs, d.keys[0], "x");
  SnapshotPtr next = d.snapshot->Apply(cs, 2)->snapshot;
  for (auto _ : state) {
    d.publisher->Publish(next);
    d.publisher->Publish(d.snapshot);
  }
  state.SetItemsProcessed(state.iterations() * 2);
  state.SetLabel(Publisher::UsesMembarrierForTest() ? "membarrier" : "fence");
}
BENCHMARK(BM_Publish)->Arg(1000)->ArgNames({"keys"});

}  // namespace
}  // namespace snapconf

BENCHMARK_MAIN();
