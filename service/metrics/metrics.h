// service/metrics/metrics.h
//
// A small metrics registry with Prometheus text exposition (format 0.0.4).
//
// Three kinds of series, each registered once with a fixed label set:
//   * Counter   — a monotonically increasing count, kept in per-thread-shard
//                 cells so hot paths (every RPC) never share a cache line;
//   * Histogram — fixed bucket bounds, sharded the same way, with a sum;
//   * gauges and collectors — read at scrape time from a callback, for values
//                 that already live elsewhere (head revision, open streams)
//                 or are computed from the published snapshot.
//
// Thread safety: Counter::Increment and Histogram::Observe are lock-free
// (relaxed atomics) and may be called from any thread. Registration and
// Render() take the registry's mutex; they are not on a request path. Series
// pointers returned by the registry stay valid for the registry's lifetime.
//
//   Registry registry;
//   Counter* puts = registry.AddCounter("snapconf_puts_total", "Puts.", {{"ns", "a"}});
//   puts->Increment();
//   std::string text = registry.Render();
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/mutex.h"

namespace snapconf::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Cells per counter/histogram. A thread picks one on first use, round robin.
inline constexpr size_t kShards = 16;

// The shard of the calling thread.
size_t ThisThreadShard();

class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Increment(uint64_t n = 1) {
    cells_[ThisThreadShard()].value.fetch_add(n, std::memory_order_relaxed);
  }
  uint64_t Value() const;

 private:
  struct alignas(64) Cell {
    std::atomic<uint64_t> value{0};
  };
  std::array<Cell, kShards> cells_;
};

class Histogram {
 public:
  // `bounds` are the upper bounds of the finite buckets, strictly increasing;
  // the +Inf bucket is implied.
  explicit Histogram(std::vector<double> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double value);

  struct Data {
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Data Collect() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  struct alignas(64) Shard {
    explicit Shard(size_t buckets) : counts(new std::atomic<uint64_t>[buckets]) {
      for (size_t i = 0; i < buckets; ++i) counts[i].store(0, std::memory_order_relaxed);
    }
    std::unique_ptr<std::atomic<uint64_t>[]> counts;  // per bucket, not cumulative
    std::atomic<double> sum{0};
  };
  const std::vector<double> bounds_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

// Bucket bounds for latencies in seconds: 50 µs to ~13 s, doubling.
std::vector<double> LatencyBuckets();
// Powers of two from 1 to `max` (group sizes, revision lags).
std::vector<double> PowerOfTwoBuckets(double max);

// A sample a collector reports at scrape time.
struct Sample {
  Labels labels;
  double value = 0;
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Each call adds one series to the family `name` (created by the first call
  // with its help text). Names and label names must be valid Prometheus names.
  // A counter `omit_when_zero` is left out of the output until it moves (for
  // families with many possible series, such as one per status code).
  Counter* AddCounter(const std::string& name, const std::string& help, Labels labels = {},
                      bool omit_when_zero = false);
  Histogram* AddHistogram(const std::string& name, const std::string& help, Labels labels,
                          std::vector<double> bounds);
  // A gauge read by calling `read` at scrape time (from the scraping thread).
  void AddGauge(const std::string& name, const std::string& help, Labels labels,
                std::function<double()> read);
  // A counter kept elsewhere, read by calling `read` at scrape time.
  void AddCounterFunction(const std::string& name, const std::string& help, Labels labels,
                          std::function<double()> read);
  // A gauge family whose series are only known at scrape time (one per
  // namespace): `collect` appends them.
  void AddCollector(const std::string& name, const std::string& help,
                    std::function<void(std::vector<Sample>*)> collect);

  // Every family in registration order, in the text exposition format.
  std::string Render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    Labels labels;
    bool omit_when_zero = false;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Histogram> histogram;
    std::function<double()> gauge;  // read at scrape time (gauge or counter)
  };
  struct Family {
    std::string name;
    std::string help;
    Type type;
    std::vector<Series> series;
    std::function<void(std::vector<Sample>*)> collect;
  };
  Family* FamilyLocked(const std::string& name, const std::string& help, Type type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ ABSL_GUARDED_BY(mu_);
};

// Text-format escaping: label values escape backslash, double quote and
// newline; help text escapes backslash and newline.
std::string EscapeLabelValue(absl::string_view value);
std::string EscapeHelp(absl::string_view help);
// A sample value: integers without a fraction, +Inf, -Inf, NaN.
std::string FormatValue(double value);

}  // namespace snapconf::metrics
