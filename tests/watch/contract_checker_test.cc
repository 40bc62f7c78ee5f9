// The contract checker must accept a correct trace and catch each kind of
// violation in hand-made traces.
#include "tests/watch/contract_checker.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <initializer_list>

namespace snapconf::watch_testing {
namespace {

// History of this test:
//   1: a/x1 = v1          2: b/y = y        3: a/x2 = two, a/x3 = three
//   4: a/x1 = v2          5: a/x1 deleted
v1::Entry E(const std::string& value, int64_t create, int64_t mod, int64_t version) {
  v1::Entry e;
  e.set_value(value);
  e.set_create_revision(create);
  e.set_mod_revision(mod);
  e.set_version(version);
  return e;
}

v1::Change C(const std::string& ns, const std::string& key, const v1::Entry* after) {
  v1::Change c;
  c.set_namespace_(ns);
  c.set_key(key);
  if (after != nullptr) *c.mutable_after() = *after;
  return c;
}

std::vector<v1::ChangeRecord> History() {
  std::vector<v1::ChangeRecord> h(5);
  const v1::Entry x1a = E("v1", 1, 1, 1), y = E("y", 2, 2, 1), x2 = E("two", 3, 3, 1),
                  x3 = E("three", 3, 3, 1), x1b = E("v2", 1, 4, 2);
  for (int i = 0; i < 5; ++i) h[i].set_revision(i + 1);
  *h[0].add_changes() = C("a", "x1", &x1a);
  *h[1].add_changes() = C("b", "y", &y);
  *h[2].add_changes() = C("a", "x2", &x2);
  *h[2].add_changes() = C("a", "x3", &x3);
  *h[3].add_changes() = C("a", "x1", &x1b);
  *h[4].add_changes() = C("a", "x1", nullptr);
  return h;
}

v1::WatchCreateRequest Watch(int64_t start, bool latest = false) {
  v1::WatchCreateRequest c;
  c.add_filters()->set_namespace_("a");
  c.set_start_revision(start);
  if (latest) c.set_mode(v1::DELIVERY_MODE_LATEST_STATE);
  return c;
}

v1::WatchResponse Reset(int64_t revision,
                        std::initializer_list<std::pair<std::string, v1::Entry>> entries,
                        v1::ResetReason reason = v1::RESET_REASON_INITIAL, bool more = false) {
  v1::WatchResponse r;
  r.mutable_reset()->set_revision(revision);
  r.mutable_reset()->set_reason(reason);
  r.mutable_reset()->set_more(more);
  for (const auto& [key, entry] : entries) {
    v1::Entry* e = r.mutable_reset()->add_entries();
    *e = entry;
    e->set_namespace_("a");
    e->set_key(key);
  }
  return r;
}

// Changes copied from history (all of `revisions`' changes, any namespace).
v1::WatchResponse Changes(int64_t after, int64_t revision, std::initializer_list<int64_t> revisions,
                          bool only_a = true) {
  const std::vector<v1::ChangeRecord> h = History();
  v1::WatchResponse r;
  r.mutable_changes()->set_after_revision(after);
  r.mutable_changes()->set_revision(revision);
  for (int64_t rev : revisions) {
    v1::RevisionChanges* rc = r.mutable_changes()->add_revisions();
    rc->set_revision(rev);
    for (const v1::Change& c : h[rev - 1].changes()) {
      if (!only_a || c.namespace_() == "a") *rc->add_changes() = c;
    }
  }
  return r;
}

v1::WatchResponse Progress(int64_t revision) {
  v1::WatchResponse r;
  r.mutable_progress()->set_revision(revision);
  return r;
}

std::vector<Violation> Kinds(const WatchTrace& trace) {
  std::vector<Violation> kinds;
  for (const Finding& f : ContractChecker(History()).Check(trace).findings) {
    kinds.push_back(f.kind);
  }
  return kinds;
}

using ::testing::Contains;
using ::testing::IsEmpty;

TEST(ContractCheckerTest, AcceptsACorrectTraceWithResetProgressAndResume) {
  WatchTrace t;
  t.Start(Watch(0));
  t.Receive(Reset(2, {{"x1", E("v1", 1, 1, 1)}}, v1::RESET_REASON_INITIAL, /*more=*/true));
  t.Receive(Reset(2, {}));
  t.Receive(Changes(2, 3, {3}));
  t.Receive(Progress(3));
  t.Start(Watch(4));  // resume at last + 1
  t.Receive(Changes(3, 5, {4, 5}));
  const CheckResult r = ContractChecker(History()).Check(t);
  EXPECT_THAT(r.findings, IsEmpty());
  EXPECT_EQ(r.final_revision, 5);
}

TEST(ContractCheckerTest, CatchesChangesOutsideTheFilter) {
  WatchTrace t;
  t.Start(Watch(1));
  t.Receive(Changes(0, 2, {1, 2}, /*only_a=*/false));
  EXPECT_THAT(Kinds(t), Contains(Violation::kFilter));
}

TEST(ContractCheckerTest, CatchesRevisionsOutOfOrder) {
  WatchTrace t;
  t.Start(Watch(3));
  t.Receive(Changes(2, 4, {4, 3}));
  EXPECT_THAT(Kinds(t), Contains(Violation::kOrdered));
}

TEST(ContractCheckerTest, CatchesARevisionDeliveredTwice) {
  WatchTrace t;
  t.Start(Watch(3));
  t.Receive(Changes(2, 4, {3, 4}));
  t.Receive(Changes(3, 4, {4}));
  EXPECT_THAT(Kinds(t), Contains(Violation::kUnique));
}

TEST(ContractCheckerTest, CatchesARevisionSplitOrIncomplete) {
  WatchTrace t;
  t.Start(Watch(3));
  v1::WatchResponse partial = Changes(2, 3, {3});
  partial.mutable_changes()->mutable_revisions(0)->mutable_changes()->RemoveLast();
  t.Receive(partial);
  EXPECT_THAT(Kinds(t), Contains(Violation::kAtomic));

  WatchTrace interrupted;
  interrupted.Start(Watch(0));
  interrupted.Receive(Reset(2, {{"x1", E("v1", 1, 1, 1)}}, v1::RESET_REASON_INITIAL, true));
  interrupted.Receive(Changes(2, 3, {3}));
  EXPECT_THAT(Kinds(interrupted), Contains(Violation::kAtomic));
}

TEST(ContractCheckerTest, CatchesASkippedRevision) {
  WatchTrace t;
  t.Start(Watch(0));
  t.Receive(Reset(2, {{"x1", E("v1", 1, 1, 1)}}));
  t.Receive(Changes(2, 4, {4}));  // 3 matches and is missing
  EXPECT_THAT(Kinds(t), Contains(Violation::kReliable));

  WatchTrace gap;
  gap.Start(Watch(0));
  gap.Receive(Reset(2, {{"x1", E("v1", 1, 1, 1)}}));
  gap.Receive(Changes(3, 4, {4}));  // the client held 2
  EXPECT_THAT(Kinds(gap), Contains(Violation::kReliable));

  WatchTrace progress;
  progress.Start(Watch(3));
  progress.Receive(Progress(4));  // vouches for 3 and 4 without them
  EXPECT_THAT(Kinds(progress), Contains(Violation::kReliable));
}

TEST(ContractCheckerTest, CatchesAWrongFirstMessageAfterAResume) {
  WatchTrace t;
  t.Start(Watch(3));
  t.Receive(Changes(2, 3, {3}));
  t.Start(Watch(4));
  t.Receive(Changes(3, 5, {5}));  // 4 is missing right after the resume
  EXPECT_THAT(Kinds(t), Contains(Violation::kResumable));
}

TEST(ContractCheckerTest, CatchesAnEventAtOrBelowAProgressRevision) {
  WatchTrace t;
  t.Start(Watch(3));
  t.Receive(Changes(2, 3, {3}));
  t.Receive(Progress(3));
  t.Receive(Changes(2, 3, {3}));
  EXPECT_THAT(Kinds(t), Contains(Violation::kBookmark));
}

TEST(ContractCheckerTest, CatchesAResetThatIsNotTheStateAtItsRevision) {
  WatchTrace t;
  t.Start(Watch(0));
  t.Receive(Reset(4, {{"x1", E("v1", 1, 1, 1)}, {"x2", E("two", 3, 3, 1)}}));  // x1 is v2; x3
  EXPECT_THAT(Kinds(t), Contains(Violation::kResetState));
}

TEST(ContractCheckerTest, ChecksNetMessagesAgainstTheStates) {
  const v1::Entry x2 = E("two", 3, 3, 1), x3 = E("three", 3, 3, 1), x1 = E("v1", 1, 1, 1);
  auto net = [&](bool with_x1) {
    v1::WatchResponse r;
    v1::WatchChanges* c = r.mutable_changes();
    c->set_after_revision(1);
    c->set_revision(5);
    c->set_net(true);
    v1::RevisionChanges* rc = c->add_revisions();
    rc->set_revision(5);
    if (with_x1) *rc->add_changes() = C("a", "x1", &x1);
    *rc->add_changes() = C("a", "x2", &x2);
    *rc->add_changes() = C("a", "x3", &x3);
    return r;
  };
  // From 1 to 5: x1 was deleted, x2 and x3 created; the deletion is missing.
  WatchTrace missing_delete;
  missing_delete.Start(Watch(2, /*latest=*/true));
  missing_delete.Receive(net(false));
  EXPECT_THAT(Kinds(missing_delete), Contains(Violation::kAtomic));
  WatchTrace extra;
  extra.Start(Watch(2, true));
  extra.Receive(net(true));  // x1 "put" although it ends deleted
  EXPECT_THAT(Kinds(extra), Contains(Violation::kAtomic));

  WatchTrace right;
  right.Start(Watch(2, true));
  v1::WatchResponse fixed = net(false);
  *fixed.mutable_changes()->mutable_revisions(0)->add_changes() = C("a", "x1", nullptr);
  right.Receive(fixed);
  EXPECT_THAT(Kinds(right), IsEmpty());

  WatchTrace every;
  every.Start(Watch(2));
  every.Receive(fixed);
  EXPECT_THAT(Kinds(every), Contains(Violation::kProtocol));
}

TEST(ContractCheckerTest, CatchesAFellBehindResetOnALatestStateWatch) {
  WatchTrace t;
  t.Start(Watch(3, true));
  t.Receive(Changes(2, 3, {3}));
  t.Receive(Reset(5, {{"x2", E("two", 3, 3, 1)}, {"x3", E("three", 3, 3, 1)}},
                  v1::RESET_REASON_FELL_BEHIND));
  EXPECT_THAT(Kinds(t), Contains(Violation::kProtocol));
}

}  // namespace
}  // namespace snapconf::watch_testing
