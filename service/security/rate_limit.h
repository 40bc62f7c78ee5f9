// service/security/rate_limit.h
//
// Limits per identity: a request rate (token bucket) and a number of open
// watch streams. An identity is what CallerIdentities names: a token's
// identity, a certificate subject, or "anonymous" (one identity for every
// unauthenticated caller of a loopback-only server).
//
// TokenBucket is a bucket of `burst` tokens refilled at `rate` per second,
// kept in ONE atomic word: the time at which the bucket would be full again
// if nothing else were taken (the "theoretical arrival time" of the generic
// cell rate algorithm). Taking a token is a compare-and-swap on that word;
// the refill is implicit in the clock. A bucket whose word is in the past is
// full, and is then indistinguishable from a new one, so forgetting it loses
// nothing.
//
// IdentityRateLimiter maps identities to buckets. The map is immutable and
// published through an atomic pointer: a call of an identity already seen
// takes no lock (a map lookup plus the bucket's CAS, inside a two-counter
// reader section that tells a writer when an old map is no longer read).
// Only the first call of a new identity takes a mutex, copies the map with
// the new bucket and publishes the copy. The map holds at most
// `max_tracked_identities` buckets: when it is full, buckets that are full
// again (idle identities) are dropped on the next publish; when every tracked
// identity is busy, further new identities share one overflow bucket, so a
// flood of distinct identities cannot grow memory.
//
// WatchStreamCounter counts open watch streams per identity (a mutex at
// stream open and close only; those are not read paths).
//
// Over a limit, calls answer RESOURCE_EXHAUSTED with a message saying when to
// retry and the trailing metadata `retry-after-ms` (decimal milliseconds);
// see docs/security.md.
//
// Thread safety: every method may be called from any thread.
//
//   IdentityRateLimiter limiter({.rate_per_second = 100, .burst = 200});
//   RateDecision d = limiter.Take("ci/deployer");
//   if (!d.allowed) return RateLimitedStatus(d.retry_after);
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/server_callback.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "service/security/transport.h"

namespace snapconf {

// The trailing metadata key of the retry hint, in milliseconds.
inline constexpr char kRetryAfterMetadata[] = "retry-after-ms";

struct IdentityLimitOptions {
  // Requests (unary calls and watch opens) per second per identity; 0: off.
  double rate_per_second = 0;
  // Requests an idle identity may make at once; 0: max(1, rate_per_second).
  int64_t burst = 0;
  // Buckets kept; beyond, busy identities share one overflow bucket.
  size_t max_tracked_identities = 10000;
  // Open watch streams per identity; 0: off.
  int64_t max_watch_streams = 0;
  // The hint given when the stream limit refuses a stream.
  absl::Duration stream_retry_hint = absl::Seconds(1);
};

class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  // Takes one token at `now_ns` from a bucket refilled one token every
  // `interval_ns`, holding at most `burst` tokens. Returns 0 when taken, else
  // the nanoseconds until a token is available.
  int64_t TryTake(int64_t now_ns, int64_t interval_ns, int64_t burst);
  // True when the bucket is full at `now_ns` (nothing to remember).
  bool Full(int64_t now_ns) const { return full_at_.load(std::memory_order_relaxed) <= now_ns; }

 private:
  // When the bucket is full again; at or before now: full.
  std::atomic<int64_t> full_at_{INT64_MIN};
};

struct RateDecision {
  bool allowed = true;
  absl::Duration retry_after;  // when refused: wait at least this long
};

class IdentityRateLimiter {
 public:
  explicit IdentityRateLimiter(const IdentityLimitOptions& options);
  ~IdentityRateLimiter();
  IdentityRateLimiter(const IdentityRateLimiter&) = delete;
  IdentityRateLimiter& operator=(const IdentityRateLimiter&) = delete;

  bool enabled() const { return interval_ns_ > 0; }
  // Takes one request of `identity` now (monotonic clock) or at `now_ns`.
  RateDecision Take(absl::string_view identity);
  RateDecision Take(absl::string_view identity, int64_t now_ns);

  // Buckets in the published map (without the overflow bucket).
  size_t tracked() const;

 private:
  using Map = absl::flat_hash_map<std::string, TokenBucket*>;

  RateDecision TakeFrom(TokenBucket* bucket, int64_t now_ns);
  RateDecision TakeNew(absl::string_view identity, int64_t now_ns) ABSL_LOCKS_EXCLUDED(mu_);
  // Publishes `next` and returns once no reader can still see the old map.
  void PublishLocked(std::unique_ptr<const Map> next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t interval_ns_;  // 0: off
  const int64_t burst_;
  const size_t max_tracked_;

  std::atomic<const Map*> map_;
  // Readers of map_ hold a count in readers_[epoch_ & 1] while they use it.
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int64_t> readers_[2] = {0, 0};

  mutable Mutex mu_;  // publishing; never taken by a call of a known identity
  std::unique_ptr<const Map> published_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<TokenBucket>> buckets_ ABSL_GUARDED_BY(mu_);
  TokenBucket overflow_;
};

// Counts open watch streams per identity. A granted slot is released when the
// returned handle is destroyed (wherever the stream ends).
class WatchStreamCounter : public std::enable_shared_from_this<WatchStreamCounter> {
 public:
  explicit WatchStreamCounter(int64_t max_per_identity) : max_(max_per_identity) {}

  bool enabled() const { return max_ > 0; }
  // A slot for one more stream of `identity`, or RESOURCE_EXHAUSTED.
  absl::StatusOr<std::shared_ptr<void>> Acquire(absl::string_view identity)
      ABSL_LOCKS_EXCLUDED(mu_);
  int64_t open(absl::string_view identity) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Release(const std::string& identity) ABSL_LOCKS_EXCLUDED(mu_);

  const int64_t max_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> open_ ABSL_GUARDED_BY(mu_);
};

// Both limits, as the server applies them to calls.
class IdentityLimits {
 public:
  explicit IdentityLimits(const IdentityLimitOptions& options);

  bool rate_limited() const { return rate_.enabled(); }
  // OK, or RESOURCE_EXHAUSTED with the retry hint added to `context` (when
  // not null; the status message has it too).
  absl::Status AdmitRequest(grpc::ServerContextBase* context, absl::string_view identity);
  // A slot for one more watch stream, held until the handle is dropped (null
  // without a stream limit), or RESOURCE_EXHAUSTED with the retry hint.
  absl::StatusOr<std::shared_ptr<void>> AdmitStream(grpc::ServerContextBase* context,
                                                    absl::string_view identity);

  IdentityRateLimiter& rate() { return rate_; }
  WatchStreamCounter& streams() { return *streams_; }

 private:
  const absl::Duration stream_retry_hint_;
  IdentityRateLimiter rate_;
  const std::shared_ptr<WatchStreamCounter> streams_;
};

// For the first lines of a unary handler: true when the caller is over its
// rate; `reactor` is then finished with RESOURCE_EXHAUSTED and the hint.
// Does nothing (one branch) when `limits` is null or has no rate.
bool RefuseOverRate(IdentityLimits* limits, const CallerIdentities& identities,
                    grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor);

// The RESOURCE_EXHAUSTED answer to a request over its rate: a message that
// says when to retry. AddRetryHint puts the same delay (rounded up to whole
// milliseconds, at least 1) into the call's trailing metadata (nothing when
// `context` is null).
absl::Status RateLimitedStatus(absl::Duration retry_after);
void AddRetryHint(grpc::ServerContextBase* context, absl::Duration retry_after);

}  // namespace snapconf
