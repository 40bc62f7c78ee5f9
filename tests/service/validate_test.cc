#include "service/validate.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::IsOk;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;

const Limits kLimits;

TEST(ValidateNamespaceTest, AcceptsCanonicalNames) {
  for (const char* ns : {"payments/prod", "shared/feature-flags", "a", "0", "a.b_c-d/e9"}) {
    EXPECT_THAT(ValidateNamespace(ns, kLimits), IsOk()) << ns;
  }
}

TEST(ValidateNamespaceTest, RejectsEveryMalformedName) {
  struct Case {
    std::string ns;
    const char* why;
  };
  const Case cases[] = {
      {"", "is empty"},
      {"Payments", "invalid character"},
      {"/payments", "empty segment"},
      {"payments/", "empty segment"},
      {"a//b", "empty segment"},
      {"-a", "invalid character"},
      {"a b", "invalid character"},
      {std::string("a\0b", 3), "invalid character"},
      {"caf\xc3\xa9", "invalid character"},
      {"\xff\xfe", "not valid UTF-8"},
      {std::string(129, 'a'), "over the limit"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ValidateNamespace(c.ns, kLimits),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.why)))
        << c.ns;
  }
}

TEST(ValidateKeyTest, AcceptsDocumentedAlphabet) {
  for (const char* key : {"db.pool.max", "http/timeout", "A-Z_0:9@x", "a/b/c"}) {
    EXPECT_THAT(ValidateKey(key, kLimits), IsOk()) << key;
  }
  EXPECT_THAT(ValidateKey(std::string(256, 'k'), kLimits), IsOk());
}

TEST(ValidateKeyTest, RejectsEveryMalformedKey) {
  struct Case {
    std::string key;
    const char* why;
  };
  const Case cases[] = {
      {"", "is empty"},
      {std::string(257, 'k'), "over the limit of 256"},
      {"a b", "outside"},
      {"tab\tkey", "outside"},
      {"/lead", "start with '/'"},
      {"trail/", "end with '/'"},
      {"a//b", "empty segment"},
      {"\xc3\x28", "not valid UTF-8"},
      {"\xed\xa0\x80", "not valid UTF-8"},  // a UTF-16 surrogate
      {"\xc0\xaf", "not valid UTF-8"},      // overlong '/'
      {"caf\xc3\xa9", "outside"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ValidateKey(c.key, kLimits),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.why)))
        << c.key;
  }
}

TEST(ValidatePrefixTest, AllowsEmptyAndTrailingSlash) {
  EXPECT_THAT(ValidatePrefix("", kLimits), IsOk());
  EXPECT_THAT(ValidatePrefix("http/", kLimits), IsOk());
  EXPECT_THAT(ValidatePrefix("/http", kLimits), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ValidateValueTest, EnforcesSizeLimit) {
  EXPECT_THAT(ValidateValue(std::string(kLimits.max_value_bytes, 'v'), kLimits), IsOk());
  EXPECT_THAT(ValidateValue(std::string(kLimits.max_value_bytes + 1, 'v'), kLimits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("over the limit")));
}

TEST(ValidateMessageTest, RequiresUtf8) {
  EXPECT_THAT(ValidateMessage("raise pool size \xe2\x9c\x93", kLimits), IsOk());
  EXPECT_THAT(ValidateMessage("\x80", kLimits), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(IsValidUtf8Test, HandlesTruncatedSequences) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xf0\x9f\x98"));
  EXPECT_FALSE(IsValidUtf8("\xe2"));
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
}

}  // namespace
}  // namespace snapconf
