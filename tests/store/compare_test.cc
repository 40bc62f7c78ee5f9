// CheckCompare: every target and operator, absent keys, values and the
// messages a client sees.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "service/store/store.h"
#include "tests/store/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::Cmp;
using ::snapconf::testing::IsOk;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;
using Op = Compare::Op;
using Target = Compare::Target;

// "payments/prod" "db.pool.max": created at 2, modified at 5 (version 3); head 6.
SnapshotPtr Fixture() {
  SnapshotPtr s = Snapshot::Empty();
  for (Revision rev = 1; rev <= 6; ++rev) {
    ChangeSet cs;
    if (rev == 2 || rev == 4 || rev == 5)
      cs.Put("payments/prod", "db.pool.max", "v" + std::to_string(rev));
    if (rev == 6) cs.Put("other", "k", "x");
    auto applied = s->Apply(cs, rev);
    EXPECT_TRUE(applied.ok());
    s = applied->snapshot;
  }
  return s;
}

TEST(CheckCompareTest, NumbersOfPresentKey) {
  SnapshotPtr s = Fixture();
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kModRevision, Op::kEqual, 5),
                   0),
      IsOk());
  EXPECT_THAT(
      CheckCompare(*s, 5,
                   Cmp("payments/prod", "db.pool.max", Target::kCreateRevision, Op::kEqual, 2), 0),
      IsOk());
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kVersion, Op::kEqual, 3), 0),
      IsOk());
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kExists, Op::kEqual, 1), 0),
      IsOk());
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kModRevision, Op::kLess, 6),
                   0),
      IsOk());
  EXPECT_THAT(
      CheckCompare(*s, 5,
                   Cmp("payments/prod", "db.pool.max", Target::kModRevision, Op::kGreater, 4), 0),
      IsOk());
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kVersion, Op::kNotEqual, 2),
                   0),
      IsOk());

  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kModRevision, Op::kLess, 5),
                   0),
      StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(
      CheckCompare(*s, 5,
                   Cmp("payments/prod", "db.pool.max", Target::kModRevision, Op::kGreater, 5), 0),
      StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kVersion, Op::kNotEqual, 3),
                   0),
      StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kExists, Op::kEqual, 0), 0),
      StatusIs(absl::StatusCode::kAborted));
}

TEST(CheckCompareTest, AbsentKeyReadsAsZero) {
  SnapshotPtr s = Fixture();
  for (Target t :
       {Target::kModRevision, Target::kCreateRevision, Target::kVersion, Target::kExists}) {
    EXPECT_THAT(CheckCompare(*s, 0, Cmp("payments/prod", "missing", t, Op::kEqual, 0), 0), IsOk());
    EXPECT_THAT(CheckCompare(*s, 0, Cmp("payments/prod", "missing", t, Op::kGreater, 0), 0),
                StatusIs(absl::StatusCode::kAborted));
  }
}

TEST(CheckCompareTest, FailureMessageNamesCompareAndActualValue) {
  SnapshotPtr s = Fixture();
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kModRevision, Op::kEqual, 4),
                   2),
      StatusIs(absl::StatusCode::kAborted,
               "compare 2 failed: payments/prod db.pool.max mod_revision is 5, expected == 4"));
}

TEST(CheckCompareTest, Values) {
  SnapshotPtr s = Fixture();
  Compare eq = Cmp("payments/prod", "db.pool.max", Target::kValue, Op::kEqual, 0);
  eq.value = "v5";
  EXPECT_THAT(CheckCompare(*s, 5, eq, 0), IsOk());
  eq.value = "v4";
  EXPECT_THAT(
      CheckCompare(*s, 5, eq, 1),
      StatusIs(absl::StatusCode::kAborted, HasSubstr("value is \"v5\", expected == \"v4\"")));
  Compare ne = eq;
  ne.op = Op::kNotEqual;
  EXPECT_THAT(CheckCompare(*s, 5, ne, 0), IsOk());

  // An absent key's value equals nothing, not even the empty value.
  Compare absent = Cmp("payments/prod", "missing", Target::kValue, Op::kEqual, 0);
  EXPECT_THAT(CheckCompare(*s, 5, absent, 0),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("value is absent")));
  absent.op = Op::kNotEqual;
  EXPECT_THAT(CheckCompare(*s, 5, absent, 0), IsOk());
}

TEST(CheckCompareTest, ValuesOnlyCompareForEquality) {
  SnapshotPtr s = Fixture();
  for (Op op : {Op::kLess, Op::kGreater}) {
    Compare c = Cmp("payments/prod", "db.pool.max", Target::kValue, op, 0);
    c.value = "v1";
    EXPECT_THAT(CheckCompare(*s, 5, c, 0), StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

TEST(CheckCompareTest, RevisionInTheFutureIsInvalidArgument) {
  SnapshotPtr s = Fixture();  // head 6
  for (Target t : {Target::kModRevision, Target::kCreateRevision}) {
    EXPECT_THAT(CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", t, Op::kEqual, 7), 0),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("future")));
  }
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "", Target::kNamespaceRevision, Op::kLess, 7), 0),
      StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "db.pool.max", Target::kModRevision, Op::kLess, 6),
                   0),
      IsOk());
}

TEST(CheckCompareTest, NamespaceRevision) {
  SnapshotPtr s = Fixture();
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "", Target::kNamespaceRevision, Op::kEqual, 5), 0),
      IsOk());
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "", Target::kNamespaceRevision, Op::kEqual, 4), 3),
      StatusIs(absl::StatusCode::kAborted,
               "compare 3 failed: namespace payments/prod revision is 5, expected == 4"));
  EXPECT_THAT(
      CheckCompare(*s, 5, Cmp("payments/prod", "k", Target::kNamespaceRevision, Op::kEqual, 5), 0),
      StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CheckCompareTest, BinaryKeysAreEscapedInMessages) {
  SnapshotPtr s = Fixture();
  EXPECT_THAT(
      CheckCompare(*s, 0, Cmp("ns", std::string("a\0\n", 3), Target::kExists, Op::kEqual, 1), 0),
      StatusIs(absl::StatusCode::kAborted, HasSubstr("ns a\\x00\\n exists is 0")));
}

}  // namespace
}  // namespace snapconf
