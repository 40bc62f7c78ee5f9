// Unit tests of Snapshot, ChangeSet, Diff and SnapshotBuilder: edge cases first, then a
// randomized differential test against a std::map model that keeps every revision.
#include "snapshot/snapshot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::IsOk;
using ::snapconf::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> ScanKeys(const Snapshot& s, std::string_view ns, std::string_view prefix,
                                  std::string_view start_after = {}, size_t limit = 0) {
  std::vector<std::string> keys;
  s.Scan(ns, prefix, start_after, limit, [&](std::string_view key, const EntryPtr& e) {
    EXPECT_NE(e, nullptr);
    keys.emplace_back(key);
    return true;
  });
  return keys;
}

SnapshotPtr ApplyOrDie(const SnapshotPtr& s, const ChangeSet& cs, Revision rev) {
  absl::StatusOr<Snapshot::Applied> applied = s->Apply(cs, rev);
  EXPECT_THAT(applied, IsOk());
  return applied.ok() ? applied->snapshot : nullptr;
}

TEST(SnapshotTest, EmptyHasRevisionZeroAndNothingInIt) {
  SnapshotPtr s = Snapshot::Empty();
  EXPECT_EQ(s->revision(), 0);
  EXPECT_EQ(s->size(), 0u);
  EXPECT_EQ(s->Find("", ""), nullptr);
  EXPECT_THAT(s->Namespaces(), IsEmpty());
  EXPECT_THAT(ScanKeys(*s, "ns", ""), IsEmpty());
}

TEST(SnapshotTest, PutCreatesThenUpdatesWithVersionsAndRevisions) {
  ChangeSet cs;
  cs.Put("ns", "k", "v1", "text/plain");
  SnapshotPtr s1 = ApplyOrDie(Snapshot::Empty(), cs, 5);
  const Entry* e = s1->Find("ns", "k");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->value, "v1");
  EXPECT_EQ(e->content_type, "text/plain");
  EXPECT_EQ(e->version, 1);
  EXPECT_EQ(e->create_revision, 5);
  EXPECT_EQ(e->mod_revision, 5);

  ChangeSet update;
  update.Put("ns", "k", "v2");
  ASSERT_OK_AND_ASSIGN(Snapshot::Applied applied, s1->Apply(update, 9));
  e = applied.snapshot->Find("ns", "k");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->value, "v2");
  EXPECT_EQ(e->content_type, "");
  EXPECT_EQ(e->version, 2);
  EXPECT_EQ(e->create_revision, 5);
  EXPECT_EQ(e->mod_revision, 9);
  ASSERT_EQ(applied.changes.size(), 1u);
  EXPECT_EQ(applied.changes[0].before->value, "v1");
  EXPECT_EQ(applied.changes[0].after->value, "v2");
  // The old snapshot is untouched.
  EXPECT_EQ(s1->Find("ns", "k")->value, "v1");
  EXPECT_EQ(s1->revision(), 5);
}

TEST(SnapshotTest, ApplyRejectsNonIncreasingRevision) {
  ChangeSet cs;
  cs.Put("ns", "k", "v");
  SnapshotPtr s = ApplyOrDie(Snapshot::Empty(), cs, 3);
  EXPECT_THAT(s->Apply(cs, 3), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(s->Apply(cs, 2), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Snapshot::Empty()->Apply(cs, 0), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(s->Apply(cs, 4), IsOk());
}

TEST(SnapshotTest, EmptyNamespaceAndEmptyKeyAreOrdinary) {
  ChangeSet cs;
  cs.Put("", "", "root");
  cs.Put("", "a", "x");
  cs.Put("ns", "", "empty-key");
  SnapshotPtr s = ApplyOrDie(Snapshot::Empty(), cs, 1);
  ASSERT_NE(s->Find("", ""), nullptr);
  EXPECT_EQ(s->Find("", "")->value, "root");
  EXPECT_EQ(s->Find("ns", "")->value, "empty-key");
  EXPECT_THAT(s->Namespaces(), ElementsAre("", "ns"));
  EXPECT_EQ(s->NamespaceSize(""), 2u);
  EXPECT_THAT(ScanKeys(*s, "", ""), ElementsAre("", "a"));
  // Empty ns means "all namespaces" for Diff.
  EXPECT_EQ(Diff(*Snapshot::Empty(), *s).size(), 3u);
}

TEST(SnapshotTest, BinaryValuesAndKeysSurvive) {
  const std::string value("a\0b\xff\0", 5);
  const std::string key("k\0\x01", 3);
  ChangeSet cs;
  cs.Put("ns", key, value, "application/octet-stream");
  cs.Put("ns", std::string("k\0", 2), "shorter");
  SnapshotPtr s = ApplyOrDie(Snapshot::Empty(), cs, 1);
  ASSERT_NE(s->Find("ns", key), nullptr);
  EXPECT_EQ(s->Find("ns", key)->value, value);
  EXPECT_EQ(s->Find("ns", "k"), nullptr);
  EXPECT_THAT(ScanKeys(*s, "ns", std::string("k\0", 2)), ElementsAre(std::string("k\0", 2), key));
}

TEST(SnapshotTest, DeletingAbsentKeysIsANoOpThatSharesEverything) {
  ChangeSet cs;
  cs.Put("ns", "k", "v");
  SnapshotPtr s = ApplyOrDie(Snapshot::Empty(), cs, 1);
  ChangeSet del;
  del.Delete("ns", "missing");
  del.Delete("other", "missing");
  ASSERT_OK_AND_ASSIGN(Snapshot::Applied applied, s->Apply(del, 2));
  EXPECT_THAT(applied.changes, IsEmpty());
  EXPECT_EQ(applied.snapshot->revision(), 2);
  EXPECT_EQ(applied.snapshot->size(), 1u);
  EXPECT_THAT(applied.snapshot->Namespaces(), ElementsAre("ns"));
  EXPECT_THAT(Diff(*s, *applied.snapshot), IsEmpty());
}

TEST(SnapshotTest, LaterMutationOfTheSameKeyWins) {
  ChangeSet cs;
  cs.Put("ns", "k", "first");
  cs.Put("ns", "k", "second");
  cs.Put("ns", "gone", "x");
  cs.Delete("ns", "gone");
  ASSERT_OK_AND_ASSIGN(Snapshot::Applied applied, Snapshot::Empty()->Apply(cs, 1));
  EXPECT_EQ(applied.snapshot->Find("ns", "k")->value, "second");
  EXPECT_EQ(applied.snapshot->Find("ns", "k")->version, 1);
  EXPECT_EQ(applied.snapshot->Find("ns", "gone"), nullptr);
  ASSERT_EQ(applied.changes.size(), 1u);
}

TEST(SnapshotTest, ChangeSetTouchingManyNamespacesReportsSortedChanges) {
  ChangeSet cs;
  for (int i = 99; i >= 0; --i) {
    cs.Put(absl::StrCat("ns", i), absl::StrCat("k", i % 7), "v");
    cs.Put(absl::StrCat("ns", i), "a", "v");
  }
  ASSERT_OK_AND_ASSIGN(Snapshot::Applied applied, Snapshot::Empty()->Apply(cs, 1));
  EXPECT_EQ(applied.snapshot->size(), 200u);
  EXPECT_EQ(applied.snapshot->Namespaces().size(), 100u);
  ASSERT_EQ(applied.changes.size(), 200u);
  for (size_t i = 1; i < applied.changes.size(); ++i) {
    const EntryChange& p = applied.changes[i - 1];
    const EntryChange& c = applied.changes[i];
    EXPECT_LT(std::tie(p.ns, p.key), std::tie(c.ns, c.key));
  }
  // Deleting everything of some namespaces removes them from Namespaces().
  ChangeSet del;
  for (int i = 0; i < 50; ++i) {
    del.Delete(absl::StrCat("ns", i), absl::StrCat("k", i % 7));
    del.Delete(absl::StrCat("ns", i), "a");
  }
  SnapshotPtr s2 = ApplyOrDie(applied.snapshot, del, 2);
  EXPECT_EQ(s2->Namespaces().size(), 50u);
  EXPECT_EQ(s2->size(), 100u);
  EXPECT_EQ(s2->NamespaceSize("ns0"), 0u);
  EXPECT_TRUE(s2->CheckInvariantsForTest());
  EXPECT_EQ(Diff(*applied.snapshot, *s2).size(), 100u);
  EXPECT_EQ(Diff(*applied.snapshot, *s2, "ns7").size(), 2u);
}

TEST(SnapshotTest, ScanHonoursPrefixStartAfterAndLimit) {
  ChangeSet cs;
  const std::string prefix(200, 'p');  // long shared prefix
  for (int i = 0; i < 500; ++i) cs.Put("ns", prefix + absl::StrCat(1000 + i), "v");
  cs.Put("ns", "a", "v");
  cs.Put("ns", "z", "v");
  SnapshotPtr s = ApplyOrDie(Snapshot::Empty(), cs, 1);
  EXPECT_EQ(ScanKeys(*s, "ns", "").size(), 502u);
  EXPECT_EQ(ScanKeys(*s, "ns", prefix).size(), 500u);
  EXPECT_THAT(ScanKeys(*s, "ns", prefix + "1001", "", 0), ElementsAre(prefix + "1001"));
  EXPECT_EQ(ScanKeys(*s, "ns", prefix + "10").size(), 100u);
  EXPECT_THAT(ScanKeys(*s, "ns", prefix, prefix + "1000", 2),
              ElementsAre(prefix + "1001", prefix + "1002"));
  // start_after before the prefix range starts at the prefix; after it, nothing.
  EXPECT_EQ(ScanKeys(*s, "ns", prefix, "b", 3).front(), prefix + "1000");
  EXPECT_THAT(ScanKeys(*s, "ns", prefix, "q"), IsEmpty());
  // Paginating visits each key once.
  std::vector<std::string> all;
  std::string after;
  while (true) {
    std::vector<std::string> page = ScanKeys(*s, "ns", prefix, after, 7);
    all.insert(all.end(), page.begin(), page.end());
    if (page.size() < 7) break;
    after = page.back();
  }
  EXPECT_EQ(all, ScanKeys(*s, "ns", prefix));
  // The callback can stop early.
  int calls = 0;
  s->Scan("ns", "", "", 0, [&](std::string_view, const EntryPtr&) { return ++calls < 3; });
  EXPECT_EQ(calls, 3);
}

TEST(SnapshotTest, RestoreInstallsExactEntries) {
  ChangeSet cs;
  cs.Put("ns", "a", "1");
  cs.Put("ns", "b", "2");
  SnapshotPtr s = ApplyOrDie(Snapshot::Empty(), cs, 1);
  auto old = std::make_shared<const Entry>(Entry{"old", "text/plain", 3, 4, 7});
  std::vector<RawEntry> raw = {{"ns", "a", old}, {"ns", "b", nullptr}, {"x", "y", old}};
  SnapshotPtr r = s->Restore(raw, 10);
  EXPECT_EQ(r->revision(), 10);
  EXPECT_EQ(r->FindShared("ns", "a"), old);
  EXPECT_EQ(r->Find("ns", "b"), nullptr);
  EXPECT_EQ(r->Find("x", "y")->version, 7);
  EXPECT_EQ(r->size(), 2u);
  EXPECT_TRUE(r->CheckInvariantsForTest());
}

TEST(SnapshotBuilderTest, BuildsFromUnsortedInputWithLaterDuplicatesWinning) {
  SnapshotBuilder b;
  for (int i = 999; i >= 0; --i) {
    b.Add(absl::StrCat("ns", i % 3), absl::StrCat("k", i),
          std::make_shared<const Entry>(Entry{std::to_string(i), "", 1, 1, 1}));
  }
  b.Add("ns0", "k0", std::make_shared<const Entry>(Entry{"dup", "", 1, 2, 2}));
  SnapshotPtr s = std::move(b).Build(7);
  EXPECT_EQ(s->revision(), 7);
  EXPECT_EQ(s->size(), 1000u);
  EXPECT_EQ(s->Find("ns0", "k0")->value, "dup");
  EXPECT_EQ(s->Find("ns2", "k998")->value, "998");
  EXPECT_TRUE(s->CheckInvariantsForTest());
}

// Path copying: a one-key update allocates one node per level, not a copy of the map.
TEST(SnapshotStructureTest, OneKeyUpdateCopiesOnlyOnePath) {
  SnapshotBuilder b;
  for (int i = 0; i < 100000; ++i) {
    b.Add("ns", absl::StrCat("key/", 100000 + i), std::make_shared<const Entry>());
  }
  SnapshotPtr s = std::move(b).Build(1);
  const int64_t nodes_before = snapshot_internal::LiveNodesForTest();
  ChangeSet cs;
  cs.Put("ns", "key/150000", "new");
  SnapshotPtr s2 = ApplyOrDie(s, cs, 2);
  const int64_t new_nodes = snapshot_internal::LiveNodesForTest() - nodes_before;
  // 100k keys at fan-out 32: 4 levels of keys plus the namespace tree; a full leaf splits.
  EXPECT_LE(new_nodes, 8);
  EXPECT_GT(new_nodes, 0);
  EXPECT_TRUE(s2->CheckInvariantsForTest());
  EXPECT_EQ(Diff(*s, *s2).size(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Randomized differential test.

struct ModelEntry {
  std::string value, content_type;
  Revision create_revision, mod_revision;
  int64_t version;
};
using Model = std::map<std::pair<std::string, std::string>, ModelEntry>;

void ExpectEntryEq(const Entry* got, const ModelEntry* want, const std::string& what) {
  ASSERT_EQ(got == nullptr, want == nullptr) << what;
  if (got == nullptr) return;
  EXPECT_EQ(got->value, want->value) << what;
  EXPECT_EQ(got->content_type, want->content_type) << what;
  EXPECT_EQ(got->create_revision, want->create_revision) << what;
  EXPECT_EQ(got->mod_revision, want->mod_revision) << what;
  EXPECT_EQ(got->version, want->version) << what;
}

class Universe {
 public:
  Universe(std::mt19937_64& rng, int keys_per_ns, std::vector<std::string> namespaces)
      : namespaces_(std::move(namespaces)) {
    const std::string shared(48, '/');  // long shared prefix, then branching tails
    const std::string alphabet("ab\0\xff/", 5);
    for (const std::string& ns : namespaces_) {
      std::vector<std::string> keys = {"", "a", shared};
      while (static_cast<int>(keys.size()) < keys_per_ns) {
        std::string k = (rng() % 4 == 0) ? "" : shared;
        const int len = static_cast<int>(rng() % 6);
        for (int i = 0; i < len; ++i) k.push_back(alphabet[rng() % alphabet.size()]);
        keys.push_back(std::move(k));
      }
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
      keys_[ns] = std::move(keys);
    }
  }
  const std::vector<std::string>& namespaces() const { return namespaces_; }
  const std::vector<std::string>& keys(const std::string& ns) const { return keys_.at(ns); }
  std::string RandomNs(std::mt19937_64& rng) const {
    return namespaces_[rng() % namespaces_.size()];
  }
  std::string RandomKey(std::mt19937_64& rng, const std::string& ns) const {
    const auto& k = keys_.at(ns);
    return k[rng() % k.size()];
  }

 private:
  std::vector<std::string> namespaces_;
  std::map<std::string, std::vector<std::string>> keys_;
};

std::string RandomValue(std::mt19937_64& rng) {
  std::string v(rng() % 12, '\0');
  for (char& c : v) c = static_cast<char>(rng() % 4 == 0 ? 0 : rng() % 256);
  return v;
}

void ApplyToModel(const ChangeSet& cs, Revision rev, Model& model) {
  // Later mutations of a key win: apply only the last one per key.
  std::map<std::pair<std::string, std::string>, const Mutation*> last;
  for (const Mutation& m : cs.mutations()) last[{m.ns, m.key}] = &m;
  for (const auto& [k, m] : last) {
    auto it = model.find(k);
    if (m->kind == Mutation::Kind::kDelete) {
      if (it != model.end()) model.erase(it);
    } else if (it == model.end()) {
      model[k] = ModelEntry{m->value, m->content_type, rev, rev, 1};
    } else {
      it->second = ModelEntry{m->value, m->content_type, it->second.create_revision, rev,
                              it->second.version + 1};
    }
  }
}

std::vector<std::pair<std::string, std::string>> ModelDiff(const Model& a, const Model& b,
                                                           const std::string& only_ns,
                                                           const std::string& prefix) {
  std::vector<std::pair<std::string, std::string>> out;
  auto differs = [](const ModelEntry& x, const ModelEntry& y) {
    return x.value != y.value || x.content_type != y.content_type ||
           x.create_revision != y.create_revision || x.mod_revision != y.mod_revision ||
           x.version != y.version;
  };
  std::map<std::pair<std::string, std::string>, int> keys;
  for (const auto& [k, v] : a) keys[k] = 0;
  for (const auto& [k, v] : b) keys[k] = 0;
  for (const auto& [k, unused] : keys) {
    if (!only_ns.empty() && k.first != only_ns) continue;
    if (!k.second.starts_with(prefix)) continue;
    auto ia = a.find(k), ib = b.find(k);
    if (ia == a.end() || ib == b.end() || differs(ia->second, ib->second)) out.push_back(k);
  }
  return out;
}

void CheckAgainstModel(const Snapshot& s, const Model& model, const Universe& u,
                       std::mt19937_64& rng) {
  ASSERT_EQ(s.size(), model.size());
  ASSERT_TRUE(s.CheckInvariantsForTest());
  for (const std::string& ns : u.namespaces()) {
    size_t in_ns = 0;
    for (const std::string& key : u.keys(ns)) {
      auto it = model.find({ns, key});
      in_ns += it != model.end();
      ExpectEntryEq(s.Find(ns, key), it == model.end() ? nullptr : &it->second, ns + "|" + key);
    }
    EXPECT_EQ(s.NamespaceSize(ns), in_ns);
    // A prefix scan page, resuming after a random (possibly absent) key.
    const std::string prefix = u.RandomKey(rng, ns).substr(0, rng() % 52);
    const std::string after = rng() % 2 == 0 ? std::string() : u.RandomKey(rng, ns);
    const size_t limit = rng() % 6;
    std::vector<std::string> want;
    for (auto it = model.lower_bound({ns, prefix}); it != model.end() && it->first.first == ns;
         ++it) {
      if (!it->first.second.starts_with(prefix)) break;
      if (!after.empty() && it->first.second <= after) continue;
      if (limit != 0 && want.size() == limit) break;
      want.push_back(it->first.second);
    }
    std::vector<std::string> got;
    s.Scan(ns, prefix, after, limit, [&](std::string_view key, const EntryPtr& e) {
      got.emplace_back(key);
      ExpectEntryEq(e.get(), &model.at({ns, std::string(key)}), "scan");
      return true;
    });
    EXPECT_EQ(got, want) << "ns=" << ns << " prefix=" << prefix << " after=" << after;
  }
  std::vector<std::string> want_ns;
  for (const auto& [k, v] : model) {
    if (want_ns.empty() || want_ns.back() != k.first) want_ns.push_back(k.first);
  }
  EXPECT_EQ(s.Namespaces(), want_ns);
}

void CheckDiff(const Snapshot& a, const Model& ma, const Snapshot& b, const Model& mb,
               const std::string& ns, const std::string& prefix) {
  const std::vector<EntryChange> got = Diff(a, b, ns, prefix);
  const auto want = ModelDiff(ma, mb, ns, prefix);
  ASSERT_EQ(got.size(), want.size()) << "diff " << a.revision() << "->" << b.revision();
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].ns, want[i].first);
    ASSERT_EQ(got[i].key, want[i].second);
    auto ia = ma.find(want[i]), ib = mb.find(want[i]);
    ExpectEntryEq(got[i].before.get(), ia == ma.end() ? nullptr : &ia->second, "before");
    ExpectEntryEq(got[i].after.get(), ib == mb.end() ? nullptr : &ib->second, "after");
  }
}

// Many small change sets over a small key space: every revision is kept and re-checked.
TEST(SnapshotDifferentialTest, EveryRetainedRevisionMatchesTheModel) {
  std::mt19937_64 rng(20240601);
  const Universe u(rng, 70, {"", "app/prod", "app/prod/x", std::string("b\0n", 3)});
  std::vector<SnapshotPtr> snaps = {Snapshot::Empty()};
  std::vector<Model> models = {Model()};
  constexpr int kRevisions = 1200;
  for (int r = 1; r <= kRevisions; ++r) {
    ChangeSet cs;
    const int n = 1 + static_cast<int>(rng() % (rng() % 10 == 0 ? 60 : 6));
    // Phases of growth and shrinkage so trees split and merge at several levels.
    const int put_pct = (r / 200) % 2 == 0 ? 70 : 30;
    for (int i = 0; i < n; ++i) {
      const std::string ns = u.RandomNs(rng);
      if (static_cast<int>(rng() % 100) < put_pct) {
        cs.Put(ns, u.RandomKey(rng, ns), RandomValue(rng), rng() % 3 == 0 ? "text/plain" : "");
      } else {
        cs.Delete(ns, u.RandomKey(rng, ns));
      }
    }
    const Revision rev = snaps.back()->revision() + 1 + static_cast<Revision>(rng() % 2);
    ASSERT_OK_AND_ASSIGN(Snapshot::Applied applied, snaps.back()->Apply(cs, rev));
    Model m = models.back();
    ApplyToModel(cs, rev, m);
    // The reported changes are exactly the model's difference.
    const auto want = ModelDiff(models.back(), m, "", "");
    ASSERT_EQ(applied.changes.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_EQ(std::make_pair(applied.changes[i].ns, applied.changes[i].key), want[i]);
    }
    EXPECT_EQ(applied.snapshot->revision(), rev);
    snaps.push_back(applied.snapshot);
    models.push_back(std::move(m));
    if (r % 50 == 0) CheckAgainstModel(*snaps.back(), models.back(), u, rng);
  }
  // Every retained revision still answers like its model (nothing was mutated in place).
  for (size_t i = 0; i < snaps.size(); ++i) {
    CheckAgainstModel(*snaps[i], models[i], u, rng);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (int t = 0; t < 600; ++t) {
    const size_t a = rng() % snaps.size();
    const size_t b = rng() % 10 == 0 ? rng() % snaps.size() : std::min(snaps.size() - 1, a + 3);
    const std::string ns = rng() % 2 == 0 ? std::string() : u.RandomNs(rng);
    const std::string prefix =
        rng() % 2 == 0 || ns.empty() ? std::string() : u.RandomKey(rng, ns).substr(0, rng() % 52);
    CheckDiff(*snaps[a], models[a], *snaps[b], models[b], ns, prefix);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Fewer, larger change sets over a larger key space: deep trees, splits and merges of internal
// nodes, bulk build, Restore; revisions retained every few steps.
TEST(SnapshotDifferentialTest, DeepTreesMatchTheModel) {
  std::mt19937_64 rng(7);
  const Universe u(rng, 6000, {"big", "small"});
  SnapshotBuilder builder;
  Model model;
  for (const std::string& key : u.keys("big")) {
    if (rng() % 2 == 0) continue;
    const std::string v = RandomValue(rng);
    builder.Add("big", key, std::make_shared<const Entry>(Entry{v, "", 1, 1, 1}));
    model[{"big", key}] = ModelEntry{v, "", 1, 1, 1};
  }
  std::vector<SnapshotPtr> snaps = {std::move(builder).Build(1)};
  std::vector<Model> models = {model};
  CheckAgainstModel(*snaps.back(), models.back(), u, rng);
  for (int r = 2; r <= 80; ++r) {
    ChangeSet cs;
    const int n = static_cast<int>(rng() % 400);
    const int put_pct = r < 30 ? 80 : (r < 60 ? 5 : 60);
    for (int i = 0; i < n; ++i) {
      const std::string ns = rng() % 8 == 0 ? "small" : "big";
      if (static_cast<int>(rng() % 100) < put_pct) {
        cs.Put(ns, u.RandomKey(rng, ns), RandomValue(rng));
      } else {
        cs.Delete(ns, u.RandomKey(rng, ns));
      }
    }
    if (r % 10 == 0) {
      // Restore: install the state of an older revision for some keys.
      const size_t old = rng() % models.size();
      std::vector<RawEntry> raw;
      Model m = model;
      for (int i = 0; i < 100; ++i) {
        const std::string key = u.RandomKey(rng, "big");
        auto it = models[old].find({"big", key});
        EntryPtr e;
        if (it != models[old].end()) {
          e = snaps[old]->FindShared("big", key);
          m[{"big", key}] = it->second;
        } else {
          m.erase({"big", key});
        }
        raw.push_back(RawEntry{"big", key, e});
      }
      snaps.push_back(snaps.back()->Restore(raw, r));
      models.push_back(m);
      model = std::move(m);
    } else {
      ASSERT_OK_AND_ASSIGN(Snapshot::Applied applied, snaps.back()->Apply(cs, r));
      ApplyToModel(cs, r, model);
      snaps.push_back(applied.snapshot);
      models.push_back(model);
    }
    CheckAgainstModel(*snaps.back(), models.back(), u, rng);
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (size_t i = 0; i < snaps.size(); i += 7) CheckAgainstModel(*snaps[i], models[i], u, rng);
  for (int t = 0; t < 200; ++t) {
    const size_t a = rng() % snaps.size(), b = rng() % snaps.size();
    const std::string prefix = rng() % 2 == 0 ? "" : u.RandomKey(rng, "big").substr(0, 50);
    CheckDiff(*snaps[a], models[a], *snaps[b], models[b], rng() % 2 ? "big" : "", prefix);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// ---------------------------------------------------------------------------------------------
// Memory comes back after deletes.

TEST(SnapshotMemoryTest, DeletingMostKeysReturnsNodeMemory) {
#if defined(SNAPCONF_SANITIZER)
  constexpr int kKeys = 200000;  // sanitizers are ~10x slower; the shape is the same
#else
  constexpr int kKeys = 1000000;
#endif
  const int64_t baseline = snapshot_internal::LiveNodeBytesForTest();
  auto entry = std::make_shared<const Entry>(Entry{"v", "", 1, 1, 1});
  auto key = [](int i) { return absl::StrCat("service/config/key-", 10000000 + i); };
  SnapshotPtr s;
  {
    SnapshotBuilder b;
    b.Reserve(kKeys);
    for (int i = 0; i < kKeys; ++i) b.Add("ns", key(i), entry);
    s = std::move(b).Build(1);
  }
  const int64_t full_bytes = snapshot_internal::LiveNodeBytesForTest() - baseline;
  // Delete 99% in a few large change sets, keeping every 100th key.
  Revision rev = 1;
  for (int part = 0; part < 4; ++part) {
    ChangeSet cs;
    for (int i = part; i < kKeys; i += 4) {
      if (i % 100 != 0) cs.Delete("ns", key(i));
    }
    s = ApplyOrDie(s, cs, ++rev);  // drops the previous snapshot
  }
  ASSERT_EQ(s->size(), static_cast<size_t>(kKeys / 100));
  EXPECT_TRUE(s->CheckInvariantsForTest());
  const int64_t after_delete = snapshot_internal::LiveNodeBytesForTest() - baseline;

  SnapshotPtr fresh;
  {
    SnapshotBuilder b;
    for (int i = 0; i < kKeys; i += 100) b.Add("ns", key(i), entry);
    fresh = std::move(b).Build(1);
  }
  const int64_t fresh_bytes = snapshot_internal::LiveNodeBytesForTest() - baseline - after_delete;
  RecordProperty("full_bytes", std::to_string(full_bytes));
  RecordProperty("after_delete_bytes", std::to_string(after_delete));
  RecordProperty("fresh_bytes", std::to_string(fresh_bytes));
  EXPECT_GT(fresh_bytes, 0);
  EXPECT_LE(after_delete, fresh_bytes * 3 / 2)
      << "full=" << full_bytes << " after=" << after_delete << " fresh=" << fresh_bytes;
  s.reset();
  fresh.reset();
  EXPECT_EQ(snapshot_internal::LiveNodeBytesForTest(), baseline);
}

}  // namespace
}  // namespace snapconf
