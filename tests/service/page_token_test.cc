#include "service/page_token.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::StatusIs;

PageTokenCodec Codec() { return PageTokenCodec(std::string(32, 'k')); }

TEST(PageTokenTest, RoundTrips) {
  const std::string token = Codec().Encode({.revision = 42, .binding = "b", .position = "k\x01"});
  ASSERT_OK_AND_ASSIGN(PageToken decoded, Codec().Decode(token, "b"));
  EXPECT_EQ(decoded.revision, 42);
  EXPECT_EQ(decoded.position, "k\x01");
}

TEST(PageTokenTest, RejectsEveryAlteredByte) {
  const std::string token = Codec().Encode({.revision = 7, .binding = "b", .position = "key"});
  for (size_t i = 0; i < token.size(); ++i) {
    std::string altered = token;
    altered[i] = altered[i] == 'A' ? 'B' : 'A';
    EXPECT_THAT(Codec().Decode(altered, "b"), StatusIs(absl::StatusCode::kInvalidArgument))
        << "byte " << i;
  }
}

TEST(PageTokenTest, RejectsTokenOfAnotherRequest) {
  const std::string token = Codec().Encode({.revision = 7, .binding = "list:a", .position = "k"});
  EXPECT_THAT(Codec().Decode(token, "list:b"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PageTokenTest, RejectsTokenUnderAnotherKey) {
  const std::string token = Codec().Encode({.revision = 7, .binding = "b", .position = "k"});
  PageTokenCodec other(std::string(32, 'x'));
  EXPECT_THAT(other.Decode(token, "b"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PageTokenTest, RejectsGarbage) {
  for (const char* garbage : {"", "!!!", "AAAA", "not-a-token-at-all"}) {
    EXPECT_THAT(Codec().Decode(garbage, "b"), StatusIs(absl::StatusCode::kInvalidArgument))
        << garbage;
  }
}

}  // namespace
}  // namespace snapconf
