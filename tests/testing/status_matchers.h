// tests/testing/status_matchers.h
//
// GoogleTest matchers for absl::Status and absl::StatusOr (Debian's Abseil has
// no status_matchers.h).
//
//   EXPECT_THAT(store.Commit(cs), IsOk());
//   EXPECT_THAT(client.Put("ns", "", "v"), StatusIs(absl::StatusCode::kInvalidArgument));
//   ASSERT_OK_AND_ASSIGN(auto rev, store.Commit(cs));
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace snapconf::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = ::snapconf::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status is " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code, "has status code " + ::testing::PrintToString(code)) {
  const absl::Status& s = ::snapconf::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher, "has status code and message") {
  const absl::Status& s = ::snapconf::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

}  // namespace snapconf::testing

#define SNAPCONF_TESTING_CONCAT_INNER(a, b) a##b
#define SNAPCONF_TESTING_CONCAT(a, b) SNAPCONF_TESTING_CONCAT_INNER(a, b)
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  ASSERT_OK_AND_ASSIGN_IMPL(SNAPCONF_TESTING_CONCAT(_snapconf_or_, __LINE__), lhs, expr)
#define ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  ASSERT_TRUE(tmp.ok()) << tmp.status();          \
  lhs = std::move(tmp).value()
