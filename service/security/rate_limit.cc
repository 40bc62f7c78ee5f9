// service/security/rate_limit.cc
#include "service/security/rate_limit.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace snapconf {
namespace {

int64_t MonotonicNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The server refuses rates below kMinRate; the clamps keep the arithmetic in
// range for any input.
constexpr double kMaxIntervalNanos = 1e15;  // about 11.6 days per request

int64_t IntervalNanos(double rate) {
  if (!(rate > 0)) return 0;
  return std::max<int64_t>(1, std::llround(std::min(1e9 / rate, kMaxIntervalNanos)));
}

int64_t HintMillis(absl::Duration retry_after) {
  return std::max<int64_t>(
      1, absl::ToInt64Milliseconds(absl::Ceil(retry_after, absl::Milliseconds(1))));
}

int64_t BurstOf(const IdentityLimitOptions& o) {
  if (o.burst > 0) return o.burst;
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::min(o.rate_per_second, 1e12))));
}

}  // namespace

int64_t TokenBucket::TryTake(int64_t now_ns, int64_t interval_ns, int64_t burst) {
  // full_at - now is what the bucket lacks, in time; one token more may be
  // missing than `burst - 1` intervals' worth only if it is refused.
  const int64_t tolerance = (burst - 1) * interval_ns;
  int64_t full_at = full_at_.load(std::memory_order_relaxed);
  for (;;) {
    const int64_t from = std::max(full_at, now_ns);
    if (from - now_ns > tolerance) return from - now_ns - tolerance;
    if (full_at_.compare_exchange_weak(full_at, from + interval_ns, std::memory_order_relaxed)) {
      return 0;
    }
  }
}

IdentityRateLimiter::IdentityRateLimiter(const IdentityLimitOptions& options)
    : interval_ns_(IntervalNanos(options.rate_per_second)),
      // (burst - 1) * interval must fit in 64 bits with room to spare.
      burst_(interval_ns_ == 0
                 ? 1
                 : std::min<int64_t>(BurstOf(options), (INT64_MAX / 4) / interval_ns_)),
      max_tracked_(std::max<size_t>(1, options.max_tracked_identities)) {
  MutexLock lock(&mu_);
  published_ = std::make_unique<const Map>();
  map_.store(published_.get(), std::memory_order_seq_cst);
}

IdentityRateLimiter::~IdentityRateLimiter() = default;

RateDecision IdentityRateLimiter::Take(absl::string_view identity) {
  if (!enabled()) return {};
  return Take(identity, MonotonicNanos());
}

RateDecision IdentityRateLimiter::TakeFrom(TokenBucket* bucket, int64_t now_ns) {
  const int64_t wait = bucket->TryTake(now_ns, interval_ns_, burst_);
  if (wait == 0) return {};
  return {.allowed = false, .retry_after = absl::Nanoseconds(wait)};
}

RateDecision IdentityRateLimiter::Take(absl::string_view identity, int64_t now_ns) {
  if (!enabled()) return {};
  // The map and its buckets stay alive while this reader's count is held
  // (PublishLocked waits for it). The count is taken before the map is read.
  const uint64_t side = epoch_.load(std::memory_order_seq_cst) & 1;
  readers_[side].fetch_add(1, std::memory_order_seq_cst);
  const Map* map = map_.load(std::memory_order_seq_cst);
  std::optional<RateDecision> decision;
  if (auto it = map->find(identity); it != map->end()) decision = TakeFrom(it->second, now_ns);
  readers_[side].fetch_sub(1, std::memory_order_seq_cst);
  if (decision.has_value()) return *decision;
  return TakeNew(identity, now_ns);
}

RateDecision IdentityRateLimiter::TakeNew(absl::string_view identity, int64_t now_ns) {
  MutexLock lock(&mu_);
  // Another call of the same identity may have published it meanwhile.
  if (auto it = buckets_.find(identity); it != buckets_.end()) {
    return TakeFrom(it->second.get(), now_ns);
  }
  std::vector<std::unique_ptr<TokenBucket>> dropped;
  if (buckets_.size() >= max_tracked_) {
    // Full buckets hold no state: dropping them changes no decision.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      if (it->second->Full(now_ns)) {
        dropped.push_back(std::move(it->second));
        buckets_.erase(it++);
      } else {
        ++it;
      }
    }
  }
  TokenBucket* bucket = &overflow_;
  if (buckets_.size() < max_tracked_) {
    auto inserted = buckets_.emplace(std::string(identity), std::make_unique<TokenBucket>());
    bucket = inserted.first->second.get();
  } else if (dropped.empty()) {
    // Every tracked identity is busy: this one shares the overflow bucket,
    // and the published map does not change.
    return TakeFrom(bucket, now_ns);
  }
  auto next = std::make_unique<Map>();
  next->reserve(buckets_.size());
  for (const auto& [name, owned] : buckets_) next->emplace(name, owned.get());
  PublishLocked(std::move(next));
  // No reader sees the dropped buckets any more.
  dropped.clear();
  return TakeFrom(bucket, now_ns);
}

void IdentityRateLimiter::PublishLocked(std::unique_ptr<const Map> next) {
  map_.store(next.get(), std::memory_order_seq_cst);
  // A reader that may hold the old map counted itself before reading map_,
  // so before the store above. Each flip sends new readers to the other
  // counter; once each counter has been seen at zero after the store, every
  // such reader is gone. Readers hold their count for a lookup and a CAS.
  for (int phase = 0; phase < 2; ++phase) {
    const uint64_t side = epoch_.fetch_add(1, std::memory_order_seq_cst) & 1;
    while (readers_[side].load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  }
  published_ = std::move(next);
}

size_t IdentityRateLimiter::tracked() const {
  MutexLock lock(&mu_);
  return buckets_.size();
}

absl::StatusOr<std::shared_ptr<void>> WatchStreamCounter::Acquire(absl::string_view identity) {
  if (!enabled()) return std::shared_ptr<void>();
  {
    MutexLock lock(&mu_);
    int64_t& open = open_[identity];
    if (open >= max_) {
      if (open == 0) open_.erase(identity);
      return absl::ResourceExhaustedError(
          absl::StrCat("too many open watch streams for this identity (limit ", max_, ")"));
    }
    ++open;
  }
  // The handle keeps the counter alive and gives the slot back when dropped.
  auto self = shared_from_this();
  return std::shared_ptr<void>(reinterpret_cast<void*>(1), [self, name = std::string(identity)](
                                                               void*) { self->Release(name); });
}

int64_t WatchStreamCounter::open(absl::string_view identity) const {
  MutexLock lock(&mu_);
  auto it = open_.find(identity);
  return it == open_.end() ? 0 : it->second;
}

void WatchStreamCounter::Release(const std::string& identity) {
  MutexLock lock(&mu_);
  auto it = open_.find(identity);
  if (it != open_.end() && --it->second <= 0) open_.erase(it);
}

IdentityLimits::IdentityLimits(const IdentityLimitOptions& options)
    : stream_retry_hint_(options.stream_retry_hint),
      rate_(options),
      streams_(std::make_shared<WatchStreamCounter>(options.max_watch_streams)) {}

absl::Status IdentityLimits::AdmitRequest(grpc::ServerContextBase* context,
                                          absl::string_view identity) {
  const RateDecision decision = rate_.Take(identity);
  if (decision.allowed) return absl::OkStatus();
  AddRetryHint(context, decision.retry_after);
  return RateLimitedStatus(decision.retry_after);
}

absl::StatusOr<std::shared_ptr<void>> IdentityLimits::AdmitStream(grpc::ServerContextBase* context,
                                                                  absl::string_view identity) {
  absl::StatusOr<std::shared_ptr<void>> slot = streams_->Acquire(identity);
  if (slot.ok()) return slot;
  AddRetryHint(context, stream_retry_hint_);
  return absl::ResourceExhaustedError(absl::StrCat(slot.status().message(),
                                                   "; retry after another stream ended, at the "
                                                   "earliest in ",
                                                   HintMillis(stream_retry_hint_), " ms"));
}

bool RefuseOverRate(IdentityLimits* limits, const CallerIdentities& identities,
                    grpc::CallbackServerContext* context, grpc::ServerUnaryReactor* reactor) {
  if (limits == nullptr || !limits->rate_limited()) return false;
  const absl::Status admitted = limits->AdmitRequest(context, identities.Of(*context));
  if (admitted.ok()) return false;
  reactor->Finish(grpc::Status(static_cast<grpc::StatusCode>(admitted.code()),
                               std::string(admitted.message())));
  return true;
}

absl::Status RateLimitedStatus(absl::Duration retry_after) {
  return absl::ResourceExhaustedError(
      absl::StrCat("request rate limit of this identity exceeded; retry after ",
                   HintMillis(retry_after), " ms (trailing metadata ", kRetryAfterMetadata, ")"));
}

void AddRetryHint(grpc::ServerContextBase* context, absl::Duration retry_after) {
  if (context == nullptr) return;
  context->AddTrailingMetadata(kRetryAfterMetadata, std::to_string(HintMillis(retry_after)));
}

}  // namespace snapconf
