// What the per-identity rate limit costs a call: IdentityRateLimiter::Take on
// an identity already tracked (the lock-free path every call takes) on 1 and
// 2 threads, against a limiter that is off and against a plain flat_hash_map
// lookup of the same identity. Measures only; asserts nothing.
#include <benchmark/benchmark.h>

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "service/security/rate_limit.h"

namespace snapconf {
namespace {

constexpr int kIdentities = 1000;

std::string Identity(int i) { return absl::StrCat("team/service-", i); }

IdentityRateLimiter& Limiter() {
  // A rate so high no call is refused: every take is a CAS that succeeds.
  static auto* limiter = [] {
    auto* l = new IdentityRateLimiter({.rate_per_second = 1e9, .burst = 1000000000});
    for (int i = 0; i < kIdentities; ++i) (void)l->Take(Identity(i));
    return l;
  }();
  return *limiter;
}

// Each thread calls as its own identity, as separate services would.
void BM_TakeKnownIdentity(benchmark::State& state) {
  IdentityRateLimiter& limiter = Limiter();
  const std::string me = Identity(state.thread_index());
  for (auto _ : state) benchmark::DoNotOptimize(limiter.Take(me));
}
BENCHMARK(BM_TakeKnownIdentity)->Threads(1)->Threads(2);

// Every thread calls as the same identity: the bucket's word is contended.
void BM_TakeSharedIdentity(benchmark::State& state) {
  IdentityRateLimiter& limiter = Limiter();
  const std::string me = Identity(0);
  for (auto _ : state) benchmark::DoNotOptimize(limiter.Take(me));
}
BENCHMARK(BM_TakeSharedIdentity)->Threads(1)->Threads(2);

void BM_TakeLimiterOff(benchmark::State& state) {
  static IdentityRateLimiter off(IdentityLimitOptions{});
  const std::string me = Identity(state.thread_index());
  for (auto _ : state) benchmark::DoNotOptimize(off.Take(me));
}
BENCHMARK(BM_TakeLimiterOff)->Threads(1)->Threads(2);

// The lookup alone, without synchronization: the floor for any per-identity state.
void BM_PlainMapLookup(benchmark::State& state) {
  static auto* map = [] {
    auto* m = new absl::flat_hash_map<std::string, int>();
    for (int i = 0; i < kIdentities; ++i) m->emplace(Identity(i), i);
    return m;
  }();
  const std::string me = Identity(state.thread_index());
  for (auto _ : state) benchmark::DoNotOptimize(map->find(me));
}
BENCHMARK(BM_PlainMapLookup)->Threads(1)->Threads(2);

}  // namespace
}  // namespace snapconf

BENCHMARK_MAIN();
