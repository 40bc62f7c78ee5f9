// Per-identity limits: the token bucket's refill and burst, its CAS under
// concurrent takers, the identity map's bound and lossless eviction, and the
// watch stream counter. Time is given explicitly (nanoseconds), never slept.
#include "service/security/rate_limit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"

namespace snapconf {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kSecond = 1000000000;
constexpr int64_t kStart = 1000 * kSecond;

TEST(TokenBucketTest, AFullBucketGivesItsBurstThenRefusesWithTheWait) {
  TokenBucket bucket;
  const int64_t interval = kSecond / 10;  // 10 per second
  for (int i = 0; i < 5; ++i) EXPECT_EQ(bucket.TryTake(kStart, interval, 5), 0) << i;
  // The sixth waits one interval: the time until one token is back.
  EXPECT_EQ(bucket.TryTake(kStart, interval, 5), interval);
  EXPECT_EQ(bucket.TryTake(kStart + interval / 2, interval, 5), interval / 2);
}

TEST(TokenBucketTest, RefillsAtTheRateAndNeverAboveTheBurst) {
  TokenBucket bucket;
  const int64_t interval = kSecond / 10;
  for (int i = 0; i < 3; ++i) ASSERT_EQ(bucket.TryTake(kStart, interval, 3), 0);
  ASSERT_GT(bucket.TryTake(kStart, interval, 3), 0);
  // After two intervals, two tokens are back, not three.
  const int64_t later = kStart + 2 * interval;
  EXPECT_EQ(bucket.TryTake(later, interval, 3), 0);
  EXPECT_EQ(bucket.TryTake(later, interval, 3), 0);
  EXPECT_EQ(bucket.TryTake(later, interval, 3), interval);
  // A long idle time refills only up to the burst.
  const int64_t much_later = later + 100 * kSecond;
  EXPECT_TRUE(bucket.Full(much_later));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(bucket.TryTake(much_later, interval, 3), 0);
  EXPECT_GT(bucket.TryTake(much_later, interval, 3), 0);
}

TEST(TokenBucketTest, ConcurrentTakersGetExactlyTheBurst) {
  // Time stands still, so exactly `burst` takes succeed however the CAS
  // attempts interleave.
  TokenBucket bucket;
  constexpr int kThreads = 4;
  constexpr int kTriesEach = 2000;
  constexpr int64_t kBurst = 3000;
  std::atomic<int64_t> granted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kTriesEach; ++i) {
        if (bucket.TryTake(kStart, kSecond, kBurst) == 0) granted.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(granted.load(), kBurst);
}

TEST(IdentityRateLimiterTest, OffByDefault) {
  IdentityRateLimiter limiter(IdentityLimitOptions{});
  EXPECT_FALSE(limiter.enabled());
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(limiter.Take("a", kStart).allowed);
  EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(IdentityRateLimiterTest, IdentitiesHaveTheirOwnBuckets) {
  IdentityRateLimiter limiter({.rate_per_second = 2, .burst = 2});
  EXPECT_TRUE(limiter.Take("a", kStart).allowed);
  EXPECT_TRUE(limiter.Take("a", kStart).allowed);
  const RateDecision refused = limiter.Take("a", kStart);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, absl::Milliseconds(500));
  // Another identity is not affected.
  EXPECT_TRUE(limiter.Take("b", kStart).allowed);
  EXPECT_TRUE(limiter.Take("b", kStart).allowed);
  // After the hint, "a" may go on.
  EXPECT_TRUE(limiter.Take("a", kStart + kSecond / 2).allowed);
}

TEST(IdentityRateLimiterTest, BurstDefaultsToTheRate) {
  IdentityRateLimiter limiter({.rate_per_second = 3});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Take("a", kStart).allowed);
  EXPECT_FALSE(limiter.Take("a", kStart).allowed);
}

TEST(IdentityRateLimiterTest, TrackedIdentitiesAreBoundedAndIdleOnesAreDropped) {
  IdentityRateLimiter limiter({.rate_per_second = 1, .burst = 1, .max_tracked_identities = 4});
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(limiter.Take(absl::StrCat("id", i), kStart).allowed);
  EXPECT_EQ(limiter.tracked(), 4u);
  // Every tracked identity is busy: new ones share the overflow bucket, which
  // gives one request, and the map does not grow.
  EXPECT_TRUE(limiter.Take("new1", kStart).allowed);
  EXPECT_FALSE(limiter.Take("new2", kStart).allowed);
  EXPECT_EQ(limiter.tracked(), 4u);
  // The busy ones are still limited (their state was kept).
  EXPECT_FALSE(limiter.Take("id0", kStart).allowed);
  // Once they are idle (full again), a new identity evicts them without
  // changing any decision: a dropped bucket was a full one.
  const int64_t later = kStart + 10 * kSecond;
  EXPECT_TRUE(limiter.Take("new3", later).allowed);
  EXPECT_EQ(limiter.tracked(), 1u);
  EXPECT_TRUE(limiter.Take("id0", later).allowed);
  EXPECT_FALSE(limiter.Take("id0", later).allowed);
}

TEST(IdentityRateLimiterTest, ManyThreadsAndNewIdentitiesStayConsistent) {
  // Known identities on the lock-free path while others are published and
  // evicted: each identity gets exactly its burst at a fixed time.
  IdentityRateLimiter limiter({.rate_per_second = 1, .burst = 50, .max_tracked_identities = 64});
  // Tracked before the map fills up (later ones share the overflow bucket).
  ASSERT_TRUE(limiter.Take("shared0", kStart).allowed);
  ASSERT_TRUE(limiter.Take("shared1", kStart).allowed);
  constexpr int kThreads = 4;
  std::vector<std::atomic<int>> granted(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string mine = absl::StrCat("shared", t % 2);
      for (int i = 0; i < 200; ++i) {
        if (limiter.Take(mine, kStart).allowed) granted[t].fetch_add(1);
        // A stream of new identities forces publishes (and, at the bound,
        // the overflow bucket).
        (void)limiter.Take(absl::StrCat("t", t, "-", i), kStart);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(granted[0].load() + granted[2].load(), 49);
  EXPECT_EQ(granted[1].load() + granted[3].load(), 49);
  EXPECT_EQ(limiter.tracked(), 64u);
}

TEST(WatchStreamCounterTest, CountsPerIdentityAndReleasesWithTheHandle) {
  auto counter = std::make_shared<WatchStreamCounter>(2);
  auto a1 = counter->Acquire("a");
  auto a2 = counter->Acquire("a");
  ASSERT_TRUE(a1.ok());
  ASSERT_TRUE(a2.ok());
  auto a3 = counter->Acquire("a");
  ASSERT_FALSE(a3.ok());
  EXPECT_EQ(a3.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(a3.status().message(), HasSubstr("limit 2"));
  EXPECT_TRUE(counter->Acquire("b").ok());  // released at once, too
  a1->reset();
  EXPECT_EQ(counter->open("a"), 1);
  EXPECT_TRUE(counter->Acquire("a").ok());
  EXPECT_EQ(counter->open("b"), 0);
}

TEST(RateLimitedStatusTest, SaysWhenToRetryInWholeMilliseconds) {
  const absl::Status s = RateLimitedStatus(absl::Microseconds(1500));
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("retry after 2 ms"));
  EXPECT_THAT(s.message(), HasSubstr("retry-after-ms"));
}

}  // namespace
}  // namespace snapconf
