// Unit tests of the ConfigClient's cache codec and typed value parsing: no server.
#include "client/internal/config_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "client/config_client.h"
#include "tests/testing/status_matchers.h"

namespace snapconf::client {
namespace {

using internal::CanonicalWatches;
using internal::DecodeCache;
using internal::EncodeCache;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;

SnapshotPtr SampleSnapshot() {
  SnapshotBuilder b;
  b.Add("app", "a",
        std::make_shared<const snapconf::Entry>(snapconf::Entry{"1", "text/plain", 3, 5, 2}));
  b.Add("app", "b", std::make_shared<const snapconf::Entry>(snapconf::Entry{"", "", 4, 4, 1}));
  b.Add("web", "x/y",
        std::make_shared<const snapconf::Entry>(
            snapconf::Entry{std::string("\0\xff", 2), "", 6, 7, 2}));
  return std::move(b).Build(9);
}

std::vector<WatchFilter> Watches() { return CanonicalWatches({{"web", {"x/"}}, {"app", {}}}); }

TEST(ConfigCacheTest, RoundTripKeepsEntriesMetadataAndRevision) {
  const SnapshotPtr snap = SampleSnapshot();
  const std::string bytes = EncodeCache(Watches(), *snap);
  ASSERT_OK_AND_ASSIGN(SnapshotPtr back, DecodeCache(bytes, Watches()));
  EXPECT_EQ(back->revision(), 9);
  EXPECT_EQ(back->size(), 3u);
  EXPECT_TRUE(Diff(*snap, *back).empty());
  const snapconf::Entry* a = back->Find("app", "a");
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(SameEntry(*a, snapconf::Entry{"1", "text/plain", 3, 5, 2}));
}

TEST(ConfigCacheTest, WatchOrderDoesNotMatter) {
  const std::string bytes = EncodeCache(Watches(), *SampleSnapshot());
  EXPECT_TRUE(DecodeCache(bytes, CanonicalWatches({{"app", {}}, {"web", {"x/", "x/"}}})).ok());
}

TEST(ConfigCacheTest, RejectsOtherWatches) {
  const std::string bytes = EncodeCache(Watches(), *SampleSnapshot());
  EXPECT_THAT(DecodeCache(bytes, CanonicalWatches({{"app", {}}})),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("other watches")));
}

TEST(ConfigCacheTest, RejectsGarbage) {
  EXPECT_THAT(DecodeCache("hello, this is not a cache file at all", Watches()),
              StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(DecodeCache("", Watches()), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(ConfigCacheTest, RejectsEveryTruncation) {
  const std::string bytes = EncodeCache(Watches(), *SampleSnapshot());
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(DecodeCache(bytes.substr(0, n), Watches()).ok()) << "length " << n;
  }
}

TEST(ConfigCacheTest, RejectsEveryFlippedByte) {
  const std::string bytes = EncodeCache(Watches(), *SampleSnapshot());
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string damaged = bytes;
    damaged[i] = static_cast<char>(damaged[i] ^ 0x10);
    EXPECT_FALSE(DecodeCache(damaged, Watches()).ok()) << "byte " << i;
  }
}

TEST(ConfigCacheTest, FileIsWrittenAtomicallyWithMode0600) {
  std::string dir = ::testing::TempDir() + "/cachetestXXXXXX";
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  const std::string bytes = EncodeCache(Watches(), *SampleSnapshot());
  ASSERT_THAT(internal::WriteCacheFile(dir, bytes), ::snapconf::testing::IsOk());
  ASSERT_THAT(internal::WriteCacheFile(dir, bytes), ::snapconf::testing::IsOk());
  struct stat st;
  ASSERT_EQ(::stat((dir + "/" + internal::kCacheFileName).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_OK_AND_ASSIGN(std::string read, internal::ReadCacheFile(dir));
  EXPECT_EQ(read, bytes);
  EXPECT_THAT(internal::ReadCacheFile(dir + "/missing"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(ConfigParseTest, ParsesTypedValues) {
  EXPECT_EQ(*config_parse::Int64("ns", "k", std::string("-42")), -42);
  EXPECT_DOUBLE_EQ(*config_parse::Double("ns", "k", std::string("2.5")), 2.5);
  EXPECT_TRUE(*config_parse::Bool("ns", "k", std::string("true")));
  EXPECT_FALSE(*config_parse::Bool("ns", "k", std::string("0")));
  EXPECT_EQ(*config_parse::Duration("ns", "k", std::string("1.5s")), absl::Milliseconds(1500));
  EXPECT_EQ(*config_parse::Json("ns", "k", std::string(R"({"a":[1,2]})")), R"({"a":[1,2]})");
}

TEST(ConfigParseTest, AbsentIsNotFound) {
  EXPECT_THAT(config_parse::Int64("ns", "k", std::nullopt),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("ns/k")));
}

TEST(ConfigParseTest, ParseErrorNamesKeyAndText) {
  EXPECT_THAT(config_parse::Int64("pay", "pool", std::string("12x")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pay/pool")));
  EXPECT_THAT(config_parse::Int64("pay", "pool", std::string("12x")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"12x\"")));
  EXPECT_THAT(config_parse::Bool("n", "b", std::string("maybe")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bool")));
  EXPECT_THAT(config_parse::Duration("n", "d", std::string("5 parsecs")),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(config_parse::Json("n", "j", std::string("{")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("JSON")));
}

}  // namespace
}  // namespace snapconf::client
