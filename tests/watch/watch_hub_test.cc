// Unit tests of WatchHub and Watcher with a fake sink: the watch contract
// (watch_service.proto) mode by mode, the log's bounds, limits and shutdown.
#include "service/watch/watch_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/store/memory/memory_store.h"
#include "service/watch/watch_service.h"
#include "tests/watch/contract_checker.h"
#include "tests/watch/watch_test_util.h"

namespace snapconf {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using watch_testing::CheckResult;
using watch_testing::ContractChecker;
using watch_testing::FakeSink;
using watch_testing::ViolationName;

void ToProto(const Entry& e, v1::Entry* out) {
  out->set_value(e.value);
  if (!e.content_type.empty()) out->set_content_type(e.content_type);
  out->set_create_revision(e.create_revision);
  out->set_mod_revision(e.mod_revision);
  out->set_version(e.version);
}

v1::ChangeRecord ToProto(const CommitRecord& record) {
  v1::ChangeRecord out;
  out.set_revision(record.revision);
  for (const EntryChange& c : record.changes) {
    v1::Change* change = out.add_changes();
    change->set_namespace_(c.ns);
    change->set_key(c.key);
    if (c.before) ToProto(*c.before, change->mutable_before());
    if (c.after) ToProto(*c.after, change->mutable_after());
  }
  return out;
}

v1::WatchCreateRequest Create(std::vector<std::pair<std::string, std::vector<std::string>>> filters,
                              int64_t start = 0,
                              v1::DeliveryMode mode = v1::DELIVERY_MODE_EVERY_REVISION) {
  v1::WatchCreateRequest create;
  for (auto& [ns, prefixes] : filters) {
    v1::WatchFilter* f = create.add_filters();
    f->set_namespace_(ns);
    for (auto& p : prefixes) f->add_prefixes(p);
  }
  create.set_start_revision(start);
  create.set_mode(mode);
  return create;
}

struct Stream {
  FakeSink sink;
  std::shared_ptr<Watcher> watcher;
  v1::WatchCreateRequest create;
};

class WatchHubTest : public ::testing::Test {
 protected:
  void MakeHub(WatchHubOptions options = {}) {
    hub_ = std::make_unique<WatchHub>(options, [this](Revision r) -> absl::StatusOr<SnapshotPtr> {
      MutexLock lock(&mu_);
      auto it = snapshots_.find(r);
      if (it == snapshots_.end()) return absl::OutOfRangeError("gone");
      return it->second;
    });
    MutexLock lock(&mu_);
    hub_->OnReloaded(head_);
  }

  void TearDown() override {
    if (hub_) hub_->Shutdown();
    for (auto& s : streams_) {
      while (s->sink.Ack(s->watcher.get())) {
      }
      EXPECT_EQ(s->sink.contract_errors(), 0);
      if (hub_) hub_->Close(s->watcher);
    }
  }

  Revision Commit(const ChangeSet& changes) {
    MutexLock lock(&mu_);
    const Revision rev = head_->revision() + 1 + std::exchange(skip_next_, 0);
    absl::StatusOr<Snapshot::Applied> applied = head_->Apply(changes, rev);
    EXPECT_TRUE(applied.ok()) << applied.status();
    head_ = applied->snapshot;
    snapshots_[rev] = head_;
    CommitRecord record;
    record.revision = rev;
    record.changes = applied->changes;
    history_.push_back(ToProto(record));
    if (hub_) hub_->OnCommitted(head_, record);
    return rev;
  }

  Revision Put(const std::string& ns, const std::string& key, const std::string& value) {
    ChangeSet changes;
    changes.Put(ns, key, value);
    return Commit(changes);
  }

  Revision head() {
    MutexLock lock(&mu_);
    return head_->revision();
  }

  Stream* Open(const v1::WatchCreateRequest& create, const std::string& peer = "ipv4:10.0.0.1:1") {
    auto stream = std::make_unique<Stream>();
    stream->create = create;
    absl::StatusOr<std::shared_ptr<Watcher>> w = hub_->Open(peer, &stream->sink);
    EXPECT_TRUE(w.ok()) << w.status();
    if (!w.ok()) return nullptr;
    stream->watcher = *w;
    stream->sink.StartTrace(create);
    absl::StatusOr<WatchSpec> spec = ParseWatchCreate(create, nullptr);
    EXPECT_TRUE(spec.ok()) << spec.status();
    stream->watcher->Start(*spec);
    streams_.push_back(std::move(stream));
    return streams_.back().get();
  }

  bool Await(Stream* s, Revision r) {
    return s->sink.AwaitRevision(s->watcher.get(), r, absl::Seconds(10));
  }

  CheckResult Check(Stream* s) {
    std::vector<v1::ChangeRecord> history;
    {
      MutexLock lock(&mu_);
      history = history_;
    }
    CheckResult result = ContractChecker(history).Check(s->sink.trace());
    for (const auto& f : result.findings) {
      ADD_FAILURE() << ViolationName(f.kind) << ": " << f.detail;
    }
    return result;
  }

  Mutex mu_;
  SnapshotPtr head_ ABSL_GUARDED_BY(mu_) = Snapshot::Empty();
  std::map<Revision, SnapshotPtr> snapshots_ ABSL_GUARDED_BY(mu_) = {{0, head_}};
  std::vector<v1::ChangeRecord> history_ ABSL_GUARDED_BY(mu_);
  // Revision numbers the next Commit skips (the etcd store's revisions skip
  // numbers taken by writes outside snapconf).
  Revision skip_next_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::unique_ptr<Stream>> streams_;
  std::unique_ptr<WatchHub> hub_;
};

TEST_F(WatchHubTest, StartAtZeroSendsInitialResetThenChanges) {
  MakeHub();
  Put("app", "a", "1");
  Put("app", "b", "2");
  Put("other", "c", "3");
  Stream* s = Open(Create({{"app", {}}}));
  ASSERT_TRUE(Await(s, 3));
  const Revision r = Put("app", "a", "10");
  ASSERT_TRUE(Await(s, r));
  const auto responses = s->sink.responses();
  ASSERT_EQ(responses.size(), 2u);
  ASSERT_TRUE(responses[0].has_reset());
  EXPECT_EQ(responses[0].reset().reason(), v1::RESET_REASON_INITIAL);
  EXPECT_EQ(responses[0].reset().revision(), 3);
  EXPECT_EQ(responses[0].reset().entries_size(), 2);
  EXPECT_FALSE(responses[0].reset().more());
  ASSERT_TRUE(responses[1].has_changes());
  EXPECT_EQ(responses[1].changes().after_revision(), 3);
  EXPECT_EQ(responses[1].changes().revision(), 4);
  ASSERT_EQ(responses[1].changes().revisions_size(), 1);
  EXPECT_EQ(responses[1].changes().revisions(0).changes(0).after().value(), "10");
  EXPECT_FALSE(responses[1].changes().revisions(0).changes(0).has_before());
  Check(s);
}

TEST_F(WatchHubTest, SkippedRevisionNumbersAreNotGaps) {
  MakeHub();
  Put("app", "a", "1");  // 1
  {
    MutexLock lock(&mu_);
    skip_next_ = 3;
  }
  const Revision r5 = Put("app", "a", "2");
  ASSERT_EQ(r5, 5);
  const Revision r6 = Put("app", "b", "3");
  // Replaying from before, from inside and from after the skipped numbers
  // needs no reset: nothing was committed at 2..4.
  Stream* from_start = Open(Create({{"app", {}}}, 1));
  Stream* inside = Open(Create({{"app", {}}}, 3));
  Stream* latest = Open(Create({{"app", {}}}, 2, v1::DELIVERY_MODE_LATEST_STATE));
  for (Stream* s : {from_start, inside, latest}) {
    ASSERT_TRUE(Await(s, r6));
    for (const auto& r : s->sink.responses()) EXPECT_FALSE(r.has_reset());
    const CheckResult result = Check(s);
    EXPECT_EQ(result.final_revision, r6);
  }
  const auto replayed = from_start->sink.responses();
  ASSERT_EQ(replayed.size(), 1u);
  ASSERT_EQ(replayed[0].changes().revisions_size(), 3);
  EXPECT_EQ(replayed[0].changes().revisions(1).revision(), 5);
  EXPECT_EQ(hub_->oldest_revision(), 1);
}

TEST_F(WatchHubTest, SharedBytesAreCanonicalProtobuf) {
  MakeHub();
  Stream* s = Open(Create({{"app", {"db."}}, {"web", {}}}));
  ASSERT_TRUE(Await(s, 0));
  ChangeSet txn;
  txn.Put("app", "db.max", std::string(300, 'x'), "text/plain");
  txn.Put("app", "http.port", "80");
  txn.Put("web", "z", "1");
  txn.Put("app", "db.min", "1");
  const Revision r = Commit(txn);
  ASSERT_TRUE(Await(s, r));
  const auto raw = s->sink.raw();
  const auto responses = s->sink.responses();
  ASSERT_EQ(raw.size(), 2u);
  // Hand-framed bytes parse and re-serialize to exactly the same bytes.
  EXPECT_EQ(responses[1].SerializeAsString(), raw[1]);
  const auto& changes = responses[1].changes().revisions(0).changes();
  ASSERT_EQ(changes.size(), 3);
  EXPECT_EQ(changes[0].key(), "db.max");
  EXPECT_EQ(changes[1].key(), "db.min");
  EXPECT_EQ(changes[2].namespace_(), "web");
  Check(s);
}

// WatchMany's framing around the hub's bytes is canonical protobuf too, for
// ids that proto3 leaves out (0), short and long varints, negative ids, and
// ended watches with and without a message; the responses are referenced,
// in several slices, not copied.
TEST_F(WatchHubTest, WatchManyFramingIsCanonicalProtobuf) {
  MakeHub();
  Stream* s = Open(Create({{"app", {}}}));
  ASSERT_TRUE(Await(s, 0));
  ChangeSet txn;
  txn.Put("app", "k", std::string(200, 'v'));
  ASSERT_TRUE(Await(s, Commit(txn)));
  const auto raw = s->sink.raw();
  ASSERT_EQ(raw.size(), 2u);
  // The hub's message as the sink got it: a reset, then a change in slices.
  const grpc::Slice head(raw[1].substr(0, 7));
  const grpc::Slice tail(raw[1].substr(7));
  const grpc::Slice parts[] = {head, tail};
  const grpc::ByteBuffer change(parts, 2);
  const grpc::Slice whole(raw[0]);
  const grpc::ByteBuffer reset(&whole, 1);
  const grpc::Status cancelled(grpc::StatusCode::CANCELLED, "watch cancelled by the client");
  const grpc::Status no_message(grpc::StatusCode::RESOURCE_EXHAUSTED, "");
  const grpc::ByteBuffer encoded = EncodeWatchManyResponse({{0, &reset, nullptr},
                                                            {1, &change, nullptr},
                                                            {300, nullptr, &cancelled},
                                                            {-2, &change, nullptr},
                                                            {0, nullptr, &no_message},
                                                            {int64_t{1} << 40, &reset, nullptr}});
  const std::string bytes = watch_testing::BufferBytes(encoded);
  v1::WatchManyResponse parsed;
  ASSERT_TRUE(parsed.ParseFromString(bytes));
  EXPECT_EQ(parsed.SerializeAsString(), bytes);
  ASSERT_EQ(parsed.events_size(), 6);
  EXPECT_EQ(parsed.events(0).watch_id(), 0);
  EXPECT_EQ(parsed.events(0).response().SerializeAsString(), raw[0]);
  EXPECT_EQ(parsed.events(1).watch_id(), 1);
  EXPECT_EQ(parsed.events(1).response().SerializeAsString(), raw[1]);
  EXPECT_EQ(parsed.events(2).watch_id(), 300);
  EXPECT_EQ(parsed.events(2).ended().code(), static_cast<int>(grpc::StatusCode::CANCELLED));
  EXPECT_EQ(parsed.events(2).ended().message(), "watch cancelled by the client");
  EXPECT_EQ(parsed.events(3).watch_id(), -2);
  EXPECT_EQ(parsed.events(3).response().SerializeAsString(), raw[1]);
  EXPECT_TRUE(parsed.events(4).has_ended());
  EXPECT_EQ(parsed.events(4).ended().code(),
            static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_EQ(parsed.events(5).watch_id(), int64_t{1} << 40);
  // An empty WatchEnded (code OK, no message) still says the watch ended.
  const grpc::Status ok_status;
  const std::string empty_ended =
      watch_testing::BufferBytes(EncodeWatchManyResponse({{5, nullptr, &ok_status}}));
  ASSERT_TRUE(parsed.ParseFromString(empty_ended));
  EXPECT_TRUE(parsed.events(0).has_ended());
  EXPECT_EQ(parsed.SerializeAsString(), empty_ended);
}

TEST_F(WatchHubTest, LargeResetComesInChunksMarkedMore) {
  WatchHubOptions options;
  options.reset_chunk_bytes = 100;
  MakeHub(options);
  ChangeSet txn;
  for (int i = 0; i < 20; ++i) txn.Put("app", absl::StrCat("k", 100 + i), std::string(30, 'v'));
  Commit(txn);
  Stream* s = Open(Create({{"app", {}}}));
  ASSERT_TRUE(Await(s, 1));
  const auto responses = s->sink.responses();
  ASSERT_GT(responses.size(), 3u);
  int entries = 0;
  for (size_t i = 0; i < responses.size(); ++i) {
    ASSERT_TRUE(responses[i].has_reset());
    EXPECT_EQ(responses[i].reset().more(), i + 1 < responses.size());
    EXPECT_EQ(responses[i].reset().revision(), 1);
    entries += responses[i].reset().entries_size();
  }
  EXPECT_EQ(entries, 20);
  Check(s);
}

TEST_F(WatchHubTest, RetainedStartRevisionReplaysInOneMessage) {
  MakeHub();
  for (int i = 0; i < 5; ++i) Put("app", absl::StrCat("k", i), "v");
  Stream* s = Open(Create({{"app", {}}}, 3));
  ASSERT_TRUE(Await(s, 5));
  const auto responses = s->sink.responses();
  ASSERT_EQ(responses.size(), 1u);
  const v1::WatchChanges& c = responses[0].changes();
  EXPECT_EQ(c.after_revision(), 2);
  EXPECT_EQ(c.revision(), 5);
  ASSERT_EQ(c.revisions_size(), 3);
  EXPECT_EQ(c.revisions(0).revision(), 3);
  EXPECT_EQ(c.revisions(2).revision(), 5);
  Check(s);
}

TEST_F(WatchHubTest, FilterListsOnlyMatchingRevisions) {
  MakeHub();
  Stream* s = Open(Create({{"b", {"x", "xy", "q"}}}, 1));
  Put("a", "x1", "1");
  Put("b", "x1", "2");
  Put("b", "y1", "3");
  Put("b", "q", "4");
  const Revision r = Put("a", "q", "5");
  ASSERT_TRUE(s->sink.AwaitRevision(s->watcher.get(), 4, absl::Seconds(5)));
  s->watcher->RequestProgress();
  ASSERT_TRUE(Await(s, r));
  std::vector<int64_t> listed;
  for (const auto& m : s->sink.responses()) {
    if (!m.has_changes()) continue;
    for (const auto& rc : m.changes().revisions()) listed.push_back(rc.revision());
  }
  EXPECT_THAT(listed, ElementsAre(2, 4));
  Check(s);
}

TEST_F(WatchHubTest, StartOlderThanLogGetsHistoryCompactedReset) {
  WatchHubOptions options;
  options.log_max_revisions = 3;
  MakeHub(options);
  for (int i = 0; i < 10; ++i) Put("app", "k", absl::StrCat(i));
  EXPECT_EQ(hub_->oldest_revision(), 8);
  Stream* s = Open(Create({{"app", {}}}, 2));
  ASSERT_TRUE(Await(s, 10));
  const auto responses = s->sink.responses();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].reset().reason(), v1::RESET_REASON_HISTORY_COMPACTED);
  EXPECT_EQ(responses[0].reset().revision(), 10);
  Check(s);
}

TEST_F(WatchHubTest, FutureStartRevisionWaits) {
  MakeHub();
  Put("app", "k", "1");
  Stream* s = Open(Create({{"app", {}}}, 4));
  s->watcher->RequestProgress();
  Put("app", "k", "2");
  // Nothing to vouch for until the head reaches start - 1.
  EXPECT_FALSE(s->sink.AwaitPending(absl::Milliseconds(50)));
  Put("app", "k", "3");
  ASSERT_TRUE(Await(s, 3));
  Put("app", "k", "4");
  ASSERT_TRUE(Await(s, 4));
  const auto responses = s->sink.responses();
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].progress().revision(), 3);
  ASSERT_TRUE(responses[1].has_changes());
  EXPECT_EQ(responses[1].changes().after_revision(), 3);
  EXPECT_EQ(responses[1].changes().revisions(0).revision(), 4);
  Check(s);
}

TEST_F(WatchHubTest, EveryRevisionWatcherThatFallsBehindIsReset) {
  WatchHubOptions options;
  options.log_max_revisions = 4;
  MakeHub(options);
  Stream* s = Open(Create({{"app", {}}}));
  ASSERT_TRUE(Await(s, 0));
  Put("app", "k", "first");
  ASSERT_TRUE(s->sink.AwaitPending(absl::Seconds(5)));  // not acknowledged: a slow client
  for (int i = 0; i < 10; ++i) Put("app", "k", absl::StrCat(i));
  const Revision last = head();
  ASSERT_TRUE(Await(s, last));
  const auto responses = s->sink.responses();
  ASSERT_GE(responses.size(), 3u);
  EXPECT_EQ(responses[2].reset().reason(), v1::RESET_REASON_FELL_BEHIND);
  EXPECT_LE(hub_->log_bytes(), 4 * 1024u);
  Check(s);
}

TEST_F(WatchHubTest, LatestStateWatcherThatFallsBehindGetsOneNetMessage) {
  WatchHubOptions options;
  options.log_max_revisions = 4;
  MakeHub(options);
  Put("app", "gone", "x");
  Stream* s = Open(Create({{"app", {}}}, 0, v1::DELIVERY_MODE_LATEST_STATE));
  ASSERT_TRUE(Await(s, 1));
  Put("app", "k", "first");
  ASSERT_TRUE(s->sink.AwaitPending(absl::Seconds(5)));
  for (int i = 0; i < 10; ++i) Put("app", "k", absl::StrCat(i));
  ChangeSet del;
  del.Delete("app", "gone");
  del.Put("app", "new", "n");
  Commit(del);
  const Revision last = head();
  ASSERT_TRUE(Await(s, last));
  const auto responses = s->sink.responses();
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_FALSE(responses[1].changes().net());  // one pending: the shared bytes
  const v1::WatchChanges& net = responses[2].changes();
  EXPECT_TRUE(net.net());
  EXPECT_EQ(net.after_revision(), 2);
  EXPECT_EQ(net.revision(), last);
  ASSERT_EQ(net.revisions_size(), 1);
  EXPECT_EQ(net.revisions(0).changes_size(), 3);  // gone (deleted), k, new
  const CheckResult result = Check(s);
  EXPECT_EQ(result.resets, 1);
}

TEST_F(WatchHubTest, LatestStateNetOfNothingStillAccountsForTheRange) {
  MakeHub();
  Stream* s = Open(Create({{"app", {}}}, 0, v1::DELIVERY_MODE_LATEST_STATE));
  ASSERT_TRUE(Await(s, 0));
  Put("app", "first", "1");
  ASSERT_TRUE(s->sink.AwaitPending(absl::Seconds(5)));  // a slow client
  Put("app", "tmp", "x");                               // created ...
  ChangeSet del;
  del.Delete("app", "tmp");
  Commit(del);  // ... and deleted again: no net difference
  ASSERT_TRUE(Await(s, 3));
  const Revision r = Put("app", "later", "y");  // one matching revision, shared bytes
  ASSERT_TRUE(Await(s, r));
  const auto responses = s->sink.responses();
  ASSERT_EQ(responses.size(), 4u);
  EXPECT_TRUE(responses[2].changes().net());
  EXPECT_EQ(responses[2].changes().revisions(0).changes_size(), 0);
  EXPECT_EQ(responses[3].changes().after_revision(), 3);
  Check(s);
}

TEST_F(WatchHubTest, LatestStateFromRevisionOneGetsTheWholeState) {
  MakeHub();
  for (int i = 0; i < 3; ++i) Put("app", absl::StrCat("k", i), "v");
  {
    // The engine's SnapshotAt reads revision 0 as "current", like the read
    // RPCs; the hub must not take that for the empty state a client at 0 holds.
    MutexLock lock(&mu_);
    snapshots_[0] = head_;
  }
  Stream* s = Open(Create({{"app", {}}}, 1, v1::DELIVERY_MODE_LATEST_STATE));
  ASSERT_TRUE(Await(s, 3));
  const auto responses = s->sink.responses();
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_TRUE(responses[0].changes().net());
  ASSERT_EQ(responses[0].changes().revisions_size(), 1);
  EXPECT_EQ(responses[0].changes().revisions(0).changes_size(), 3);
  Check(s);
}

TEST_F(WatchHubTest, ProgressOnRequestAndOnIdleStreams) {
  WatchHubOptions options;
  options.progress_interval = absl::Milliseconds(40);
  MakeHub(options);
  Put("app", "k", "1");
  Put("zzz", "k", "1");
  Stream* s = Open(Create({{"app", {}}}, 2));
  ASSERT_TRUE(s->sink.AwaitPending(absl::Seconds(5)));  // the idle progress
  auto responses = s->sink.responses();
  ASSERT_TRUE(responses.back().has_progress());
  EXPECT_EQ(responses.back().progress().revision(), 2);
  s->sink.Ack(s->watcher.get());
  const Revision r = Put("zzz", "k", "2");
  s->watcher->RequestProgress();
  ASSERT_TRUE(Await(s, r));
  EXPECT_TRUE(s->sink.responses().back().has_progress());
  Check(s);
}

// With external pumps the hub starts no thread: a commit wakes every shard
// that has watchers, and a watcher behind is sent to only when its own shard
// is pumped.
TEST_F(WatchHubTest, ExternalPumpsAreWokenPerShardAndDoTheSending) {
  MakeHub();
  std::array<std::atomic<int>, 2> wakes{};
  std::array<std::atomic<int>, 2> shutdown_wakes{};
  hub_->SetExternalPumps(2, [&](size_t shard) {
    wakes.at(shard).fetch_add(1);
    if (hub_->shutting_down()) shutdown_wakes.at(shard).fetch_add(1);
  });
  auto stream = std::make_unique<Stream>();
  stream->create = Create({{"app", {}}});
  absl::StatusOr<std::shared_ptr<Watcher>> w = hub_->Open("ipv4:10.0.0.1:1", &stream->sink, 1);
  ASSERT_TRUE(w.ok()) << w.status();
  stream->watcher = *w;
  stream->sink.StartTrace(stream->create);
  stream->watcher->Start(*ParseWatchCreate(stream->create, nullptr));
  // The initial state is sent by Start itself.
  ASSERT_EQ(stream->sink.responses().size(), 1u);
  ASSERT_TRUE(stream->sink.Ack(stream->watcher.get()));

  const Revision r = Put("app", "k", "1");
  EXPECT_EQ(wakes[0].load(), 0) << "shard 0 has no watcher";
  EXPECT_EQ(wakes[1].load(), 1);
  absl::SleepFor(absl::Milliseconds(50));  // no dispatcher would send it
  EXPECT_EQ(stream->sink.responses().size(), 1u);
  hub_->PumpShard(0);  // another shard's pump leaves it alone
  EXPECT_EQ(stream->sink.responses().size(), 1u);
  hub_->PumpShard(1);
  ASSERT_EQ(stream->sink.responses().size(), 2u);
  EXPECT_EQ(stream->sink.responses().back().changes().revision(), r);

  // Shutdown wakes every shard once more, with shutting_down() already
  // true, so each pump's owner can end what the hub does not know; after
  // that, no wake.
  EXPECT_FALSE(hub_->shutting_down());
  hub_->Shutdown();
  EXPECT_TRUE(hub_->shutting_down());
  EXPECT_EQ(shutdown_wakes[0].load(), 1);
  EXPECT_EQ(shutdown_wakes[1].load(), 1);
  EXPECT_EQ(wakes[0].load(), 1);
  EXPECT_EQ(wakes[1].load(), 2);
  Put("app", "k", "2");
  EXPECT_EQ(wakes[0].load(), 1) << "no wake after Shutdown";
  EXPECT_EQ(wakes[1].load(), 2) << "no wake after Shutdown";
  streams_.push_back(std::move(stream));  // TearDown acknowledges and checks it
}

TEST_F(WatchHubTest, WithPreviousCarriesBeforeEntries) {
  MakeHub();
  Put("app", "k", "old");
  v1::WatchCreateRequest create = Create({{"app", {}}}, 2);
  create.set_with_previous(true);
  Stream* s = Open(create);
  const Revision r = Put("app", "k", "new");
  ASSERT_TRUE(Await(s, r));
  const auto responses = s->sink.responses();
  ASSERT_EQ(responses.size(), 1u);
  const v1::Change& c = responses[0].changes().revisions(0).changes(0);
  EXPECT_EQ(c.before().value(), "old");
  EXPECT_EQ(c.after().value(), "new");
  Check(s);
}

TEST_F(WatchHubTest, StreamLimitsAreEnforcedInTotalAndPerPeer) {
  WatchHubOptions options;
  options.max_streams = 2;
  options.max_streams_per_peer = 1;
  MakeHub(options);
  FakeSink a, a2, b, c;
  auto wa = hub_->Open("ipv4:10.0.0.1:100", &a);
  ASSERT_TRUE(wa.ok());
  auto wa2 = hub_->Open("ipv4:10.0.0.1:101", &a2);
  EXPECT_EQ(wa2.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(wa2.status().message()), HasSubstr("ipv4:10.0.0.1"));
  auto wb = hub_->Open("ipv4:10.0.0.2:100", &b);
  ASSERT_TRUE(wb.ok());
  auto wc = hub_->Open("ipv4:10.0.0.3:100", &c);
  EXPECT_EQ(wc.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(hub_->open_streams().load(), 2);
  hub_->Close(*wa);
  EXPECT_EQ(hub_->open_streams().load(), 1);
  auto again = hub_->Open("ipv4:10.0.0.1:102", &a2);
  EXPECT_TRUE(again.ok());
  hub_->Close(*wb);
  hub_->Close(*again);
  EXPECT_EQ(hub_->open_streams().load(), 0);
}

TEST_F(WatchHubTest, ShutdownEndsStreamsWithUnavailableAfterTheWriteInFlight) {
  MakeHub();
  Stream* busy = Open(Create({{"app", {}}}));
  ASSERT_TRUE(busy->sink.AwaitPending(absl::Seconds(5)));
  Stream* idle = Open(Create({{"app", {}}}));
  ASSERT_TRUE(Await(idle, 0));
  hub_->Shutdown();
  EXPECT_TRUE(idle->sink.ended());
  EXPECT_EQ(idle->sink.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(busy->sink.ended());  // never Finish with a write in flight
  busy->sink.Ack(busy->watcher.get());
  EXPECT_TRUE(busy->sink.ended());
  EXPECT_EQ(busy->sink.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  FakeSink late;
  EXPECT_EQ(hub_->Open("ipv4:10.0.0.1:1", &late).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(WatchHubTest, FinishIsCalledExactlyOnce) {
  MakeHub();
  Stream* s = Open(Create({{"app", {}}}));
  ASSERT_TRUE(s->sink.AwaitPending(absl::Seconds(5)));
  s->watcher->Finish(grpc::Status(grpc::StatusCode::CANCELLED, ""));
  s->watcher->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, ""));
  EXPECT_FALSE(s->sink.ended());
  s->sink.Ack(s->watcher.get(), /*ok=*/false);
  EXPECT_TRUE(s->sink.ended());
  EXPECT_EQ(s->sink.status().error_code(), grpc::StatusCode::CANCELLED);
  Put("app", "k", "v");  // nothing is sent after the end
  EXPECT_FALSE(s->sink.AwaitPending(absl::Milliseconds(30)));
}

// Access re-checks (a policy or token change) run on their own thread while
// commits are fanned out: only the stream whose check fails ends, with the
// check's status, and the other keeps every revision.
TEST_F(WatchHubTest, ConcurrentRecheckEndsOnlyStreamsThatLostAccess) {
  MakeHub();
  std::atomic<bool> revoked{false};
  auto open = [&](Watcher::Recheck recheck) {
    auto stream = std::make_unique<Stream>();
    stream->create = Create({{"app", {}}});
    stream->watcher = *hub_->Open("ipv4:10.0.0.1:1", &stream->sink);
    stream->sink.StartTrace(stream->create);
    stream->watcher->set_recheck(std::move(recheck));
    stream->watcher->Start(*ParseWatchCreate(stream->create, nullptr));
    streams_.push_back(std::move(stream));
    return streams_.back().get();
  };
  Stream* lost = open(
      [&] { return revoked.load() ? absl::PermissionDeniedError("revoked") : absl::OkStatus(); });
  Stream* kept = open([] { return absl::OkStatus(); });
  std::atomic<bool> stop{false};
  std::thread rechecker([&] {
    while (!stop.load()) {
      hub_->RecheckAll();
      std::this_thread::yield();
    }
  });
  for (int i = 0; i < 200; ++i) {
    Put("app", "k", absl::StrCat(i));
    if (i == 100) revoked = true;
    for (Stream* s : {lost, kept}) {
      while (s->sink.Ack(s->watcher.get())) {
      }
    }
  }
  stop = true;
  rechecker.join();
  hub_->RecheckAll();  // in case the thread did not run after the revocation
  while (lost->sink.Ack(lost->watcher.get())) {
  }
  EXPECT_TRUE(lost->sink.ended());
  EXPECT_EQ(lost->sink.status().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Await(kept, head()));
  EXPECT_FALSE(kept->sink.ended());
  EXPECT_TRUE(Check(kept).findings.empty());
}

TEST_F(WatchHubTest, PreloadFromHistoryLetsWatchersResumeAfterRestart) {
  std::unique_ptr<MemoryStore> store = NewMemoryStore();
  WatchHubOptions options;
  options.log_max_revisions = 5;
  auto first = std::make_unique<WatchHub>(options, nullptr);
  absl::StatusOr<SnapshotPtr> start = store->Start(first.get());
  ASSERT_TRUE(start.ok()) << start.status();
  for (int i = 0; i < 8; ++i) {
    WriteRequest request;
    request.changes.Put("app", absl::StrCat("k", i), "v");
    ASSERT_TRUE(store->Commit(std::move(request)).ok());
  }
  // A "restarted" hub sees only the head snapshot, then reads history.
  HistoryQuery query;
  query.limit = 1000;
  absl::StatusOr<std::vector<CommitRecord>> all = store->ReadHistory(query);
  ASSERT_TRUE(all.ok());
  WatchHub second(options, nullptr);
  SnapshotPtr head = Snapshot::Empty();
  for (auto it = all->rbegin(); it != all->rend(); ++it) {
    ChangeSet cs;
    for (const auto& c : it->changes) {
      if (c.after) cs.Put(c.ns, c.key, c.after->value);
    }
    head = head->Apply(cs, it->revision)->snapshot;
  }
  second.OnReloaded(head);
  EXPECT_EQ(second.oldest_revision(), 9);
  ASSERT_TRUE(second.Preload(*store).ok());
  EXPECT_EQ(second.oldest_revision(), 4);
  EXPECT_EQ(second.head_revision(), 8);
  FakeSink sink;
  auto w = second.Open("ipv4:10.0.0.1:1", &sink);
  ASSERT_TRUE(w.ok());
  (*w)->Start(*ParseWatchCreate(Create({{"app", {}}}, 6), nullptr));
  ASSERT_TRUE(sink.AwaitRevision(w->get(), 8, absl::Seconds(5)));
  ASSERT_TRUE(sink.responses()[0].has_changes());
  EXPECT_EQ(sink.responses()[0].changes().after_revision(), 5);
  second.Shutdown();
  second.Close(*w);
  store->Close();
  first->Shutdown();
}

TEST(ParseWatchCreateTest, RejectsMalformedCreates) {
  auto code = [](const v1::WatchCreateRequest& c) {
    return ParseWatchCreate(c, nullptr).status().code();
  };
  EXPECT_EQ(code(v1::WatchCreateRequest()), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Create({{"a", {}}, {"a", {"x"}}})), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Create({{"", {}}})), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Create({{"a", {}}}, -1)), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code(Create({{"a", {}}}, 0, static_cast<v1::DeliveryMode>(7))),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(
      ParseWatchCreate(Create({{"a", {}}}, 0, v1::DELIVERY_MODE_UNSPECIFIED), nullptr).ok());
  const auto bad = ParseWatchCreate(Create({{"a", {"BAD"}}}),
                                    [](std::string_view, const std::vector<std::string>&) {
                                      return absl::InvalidArgumentError("prefix: bad byte");
                                    });
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("create.filters[0]: prefix"));
}

TEST(PeerHostTest, DropsThePort) {
  EXPECT_EQ(PeerHost("ipv4:127.0.0.1:5000"), "ipv4:127.0.0.1");
  EXPECT_EQ(PeerHost("ipv6:[::1]:5000"), "ipv6:[::1]");
  EXPECT_EQ(PeerHost("unix:/tmp/s"), "unix:/tmp/s");
}

// Writers commit while watchers with random filters, modes and start points
// read at random speeds, cancel and resume; every trace must satisfy the
// contract and reach the head.
TEST_F(WatchHubTest, ConcurrentWritersAndWatchersKeepTheContract) {
  WatchHubOptions options;
  options.log_max_revisions = 16;
  options.progress_interval = absl::Milliseconds(20);
  options.max_message_bytes = 512;
  // Several dispatcher threads; each reader below is its own connection, so
  // the streams are spread over them.
  options.dispatch_threads = 3;
  MakeHub(options);
  constexpr int kRevisions = 400;
  constexpr int kWatchers = 6;
  const std::vector<std::string> namespaces = {"a", "b", "c"};
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    std::mt19937 rng(7);
    for (int i = 0; i < kRevisions; ++i) {
      ChangeSet txn;
      const int n = 1 + static_cast<int>(rng() % 3);
      for (int j = 0; j < n; ++j) {
        const std::string& ns = namespaces[rng() % namespaces.size()];
        const std::string key = absl::StrCat(rng() % 2 ? "x" : "y", rng() % 5);
        if (rng() % 5 == 0) {
          txn.Delete(ns, key);
        } else {
          txn.Put(ns, key, absl::StrCat(i));
        }
      }
      Commit(txn);
      if (i % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    writing = false;
  });
  struct Reader {
    std::unique_ptr<FakeSink> sink = std::make_unique<FakeSink>();
    std::shared_ptr<Watcher> watcher;
    std::vector<std::unique_ptr<FakeSink>> old_sinks;
  };
  std::vector<Reader> readers(kWatchers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWatchers; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937 rng(100 + i);
      Reader& r = readers[i];
      v1::WatchCreateRequest create =
          i % 3 == 0 ? Create({{"a", {}}, {"b", {"x"}}}) : Create({{namespaces[i % 3], {"y"}}});
      create.set_mode(i % 2 ? v1::DELIVERY_MODE_LATEST_STATE : v1::DELIVERY_MODE_EVERY_REVISION);
      if (i == 4) create.set_start_revision(std::min<Revision>(head() + 3, kRevisions));  // future
      r.sink->StartTrace(create);
      r.watcher = *hub_->Open(absl::StrCat("ipv4:10.0.0.9:", 100 + i), r.sink.get());
      r.watcher->Start(*ParseWatchCreate(create, nullptr));
      const absl::Time deadline = absl::Now() + absl::Seconds(30);
      while (absl::Now() < deadline) {
        if (!writing && r.sink->last_revision() == head() && !r.sink->pending()) break;
        if (rng() % 200 == 0 && r.sink->last_revision() >= 0) {
          // Cancel and resume from last + 1 on a new stream.
          r.watcher->Finish(grpc::Status(grpc::StatusCode::CANCELLED, ""));
          while (r.sink->Ack(r.watcher.get(), false)) {
          }
          EXPECT_TRUE(r.sink->ended());
          hub_->Close(r.watcher);
          auto next = std::make_unique<FakeSink>();
          watch_testing::WatchTrace trace = r.sink->trace();
          create.set_start_revision(r.sink->last_revision() + 1);
          trace.Start(create);
          next->set_trace(trace);
          r.old_sinks.push_back(std::move(r.sink));
          r.sink = std::move(next);
          r.watcher = *hub_->Open(absl::StrCat("ipv4:10.0.0.9:", 100 + i), r.sink.get());
          r.watcher->Start(*ParseWatchCreate(create, nullptr));
          continue;
        }
        if (!r.sink->Ack(r.watcher.get())) r.sink->AwaitPending(absl::Milliseconds(5));
        if (i == 1 && rng() % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }
  writer.join();
  for (auto& t : threads) t.join();
  std::vector<v1::ChangeRecord> history;
  {
    MutexLock lock(&mu_);
    history = history_;
  }
  ContractChecker checker(history);
  for (int i = 0; i < kWatchers; ++i) {
    Reader& r = readers[i];
    CheckResult result = checker.Check(r.sink->trace());
    EXPECT_TRUE(result.findings.empty()) << "watcher " << i;
    for (const auto& f : result.findings)
      ADD_FAILURE() << ViolationName(f.kind) << ": " << f.detail;
    EXPECT_EQ(result.final_revision, head()) << "watcher " << i;
    EXPECT_EQ(r.sink->contract_errors(), 0);
    for (auto& old : r.old_sinks) EXPECT_EQ(old->contract_errors(), 0);
  }
  hub_->Shutdown();
  for (Reader& r : readers) {
    while (r.sink->Ack(r.watcher.get())) {
    }
    EXPECT_TRUE(r.sink->ended());
    hub_->Close(r.watcher);
  }
  EXPECT_EQ(hub_->open_streams().load(), 0);
}

// Metrics (service/metrics): resets by reason, and how far a watcher whose
// write is stuck falls behind.
TEST_F(WatchHubTest, MetricsCountResetsAndTheLagOfAStalledWatcher) {
  MakeHub();
  Put("app", "a", "1");
  Stream* s = Open(Create({{"app", {}}}));  // the initial reset is in flight, not acknowledged
  EXPECT_EQ(hub_->resets(v1::RESET_REASON_INITIAL), 1u);
  for (int i = 0; i < 3; ++i) Put("app", "a", absl::StrCat(i));
  EXPECT_THAT(hub_->WatcherLags(), ElementsAre(3));
  ASSERT_TRUE(Await(s, head()));
  EXPECT_THAT(hub_->WatcherLags(), ElementsAre(0));
  EXPECT_EQ(hub_->resets(v1::RESET_REASON_FELL_BEHIND), 0u);
}

}  // namespace
}  // namespace snapconf
