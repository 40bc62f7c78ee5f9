// EtcdStore: the Store of several snapconfd replicas sharing one etcd
// cluster. The banner of etcd_store.h explains the design; the reasons are in
// docs/adr/004-etcd-store.md.
#include "service/store/etcd/etcd_store.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/mutex.h"
#include "common/status_macros.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "service/log.h"
#include "service/store/etcd/etcd_codec.h"

namespace snapconf {
namespace {

using etcd::KeyLayout;

// A write that keeps losing races gives up after this many decisions.
constexpr int kMaxAttempts = 64;
// Pause before resending a Txn whose outcome etcd did not confirm.
constexpr absl::Duration kResendDelay = absl::Milliseconds(100);
// Out of touch with etcd for less than this still counts as healthy.
constexpr absl::Duration kHealthGrace = absl::Seconds(1);
// Keys per Range page while loading.
constexpr int64_t kLoadPage = 5000;

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  const std::string message = absl::StrCat(what, ": ", s.error_message());
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return absl::OkStatus();
    case grpc::StatusCode::INVALID_ARGUMENT:
      return absl::InvalidArgumentError(message);
    case grpc::StatusCode::OUT_OF_RANGE:
      return absl::OutOfRangeError(message);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return absl::ResourceExhaustedError(message);
    case grpc::StatusCode::FAILED_PRECONDITION:
      return absl::FailedPreconditionError(message);
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::PermissionDeniedError(message);
    default:
      return absl::UnavailableError(message);
  }
}

// etcd answers a read below its compaction with this message (OUT_OF_RANGE).
bool IsCompacted(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::OUT_OF_RANGE ||
         s.error_message().find("compacted") != std::string::npos;
}

std::chrono::system_clock::time_point Deadline(absl::Duration d) {
  return absl::ToChronoTime(absl::Now() + d);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// "host:port,..." -> a gRPC target over every resolved address, so the
// channel balances across members and skips one that is down.
absl::StatusOr<std::string> ResolveTarget(const std::vector<std::string>& endpoints) {
  std::vector<std::string> v4, v6;
  for (const std::string& endpoint : endpoints) {
    const size_t colon = endpoint.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == endpoint.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint \"", endpoint, "\" is not host:port"));
    }
    std::string host = endpoint.substr(0, colon);
    const std::string port = endpoint.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("etcd endpoint \"", endpoint, "\": cannot resolve ", host));
    }
    char text[NI_MAXHOST];
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
      if (getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof(text), nullptr, 0, NI_NUMERICHOST) !=
          0) {
        continue;
      }
      if (a->ai_family == AF_INET) {
        v4.push_back(absl::StrCat(text, ":", port));
      } else if (a->ai_family == AF_INET6) {
        v6.push_back(absl::StrCat("[", text, "]:", port));
      }
      break;  // one address per endpoint
    }
    freeaddrinfo(found);
  }
  if (!v4.empty() && v6.empty()) return absl::StrCat("ipv4:", absl::StrJoin(v4, ","));
  if (v4.empty() && !v6.empty()) return absl::StrCat("ipv6:", absl::StrJoin(v6, ","));
  if (v4.empty()) return absl::InvalidArgumentError("no etcd endpoint given");
  return absl::InvalidArgumentError("etcd endpoints mix IPv4 and IPv6 addresses");
}

std::string NewTxnId() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat(absl::Hex(rng(), absl::kZeroPad16), absl::Hex(rng(), absl::kZeroPad16));
}

EntryPtr ToEntry(const mvccpb::KeyValue& kv) {
  absl::StatusOr<etcd::DecodedValue> decoded = etcd::DecodeValue(kv.value());
  if (!decoded.ok()) return nullptr;
  auto entry = std::make_shared<Entry>();
  entry->value = std::move(decoded->value);
  entry->content_type = std::move(decoded->content_type);
  entry->create_revision = kv.create_revision();
  entry->mod_revision = kv.mod_revision();
  entry->version = kv.version();
  return entry;
}

bool ChangeLess(const EntryChange& a, const EntryChange& b) {
  return std::tie(a.ns, a.key) < std::tie(b.ns, b.key);
}

// The state read at one etcd revision.
struct Loaded {
  SnapshotPtr snapshot;
  absl::flat_hash_map<std::string, Revision> ns_revisions;
  Revision meta_revision = 0;
};

class EtcdStoreImpl final : public EtcdStore {
 public:
  EtcdStoreImpl(EtcdStoreOptions options, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)),
        layout_(options_.prefix),
        kv_(etcdserverpb::KV::NewStub(channel)),
        watch_(etcdserverpb::Watch::NewStub(channel)) {}

  ~EtcdStoreImpl() override { Close(); }

  absl::StatusOr<SnapshotPtr> Start(CommitListener* listener) override;
  void CommitAsync(WriteRequest request, CommitCallback done) override;
  absl::StatusOr<std::vector<CommitRecord>> ReadHistory(const HistoryQuery& query) override;
  Revision oldest_revision() const override { return oldest_.load(std::memory_order_acquire); }
  absl::Status Health() const override;
  std::string_view kind() const override { return "etcd"; }
  void Close() override;
  absl::Duration Staleness() const override;
  absl::StatusOr<std::string> SharedTokenKey(const std::string& candidate) override;

 private:
  // One write on its way through etcd.
  struct Pending {
    std::string id;  // also written into the metadata key
    WriteRequest request;
    CommitCallback done;
    absl::Time deadline;
    int attempts = 0;
    Revision etcd_head = 0;  // from a probe, when a compare named a future revision
    // The last decision: the snapshot it read and the Txn it sent.
    SnapshotPtr base;
    etcdserverpb::TxnRequest txn;
    Revision succeeded_at = 0;  // etcd said the Txn committed at this revision
    bool resend = false;        // the timer resends `txn` as it is (outcome unknown)
    bool finished = false;
  };
  using PendingPtr = std::shared_ptr<Pending>;

  absl::StatusOr<Loaded> Load();
  absl::Status RefreshOldest(Revision head);
  void WatchLoop();
  // Watches from head + 1 until the stream ends; true when etcd compacted
  // past the position (a reload is due).
  bool WatchOnce(absl::Status* error);
  void ApplyRevision(Revision revision, const std::vector<const mvccpb::Event*>& events);
  void InstallReload(Loaded loaded);
  void TimerLoop();

  void Attempt(const PendingPtr& p);
  void SendTxn(const PendingPtr& p);
  void OnTxnDone(const PendingPtr& p, const grpc::Status& status,
                 const etcdserverpb::TxnResponse& response);
  void Probe(const PendingPtr& p);
  void Finish(const PendingPtr& p, absl::StatusOr<CommitResult> result);
  void RetryAfter(const PendingPtr& p, absl::Duration delay, const absl::Status& why);
  // Work that became due (writes waiting for a revision); call outside mu_.
  void RunDue(std::vector<PendingPtr> due);
  std::vector<PendingPtr> TakeDueLocked(Revision head) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<EntryChange> Expected(const PendingPtr& p, Revision revision) const;

  // History: records of revisions [lo, last] replayed from etcd, oldest first.
  absl::StatusOr<std::vector<CommitRecord>> Replay(Revision lo, Revision last,
                                                   const HistoryQuery& query);
  // Revision of the newest change set at or before `revision` (0: none).
  absl::StatusOr<Revision> LastChangeAt(Revision revision);

  void CallStarted() {
    MutexLock lock(&mu_);
    ++in_flight_;
  }
  void CallDone() {
    MutexLock lock(&mu_);
    if (--in_flight_ == 0) cv_.SignalAll();
  }

  const EtcdStoreOptions options_;
  const KeyLayout layout_;
  const std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  const std::unique_ptr<etcdserverpb::Watch::Stub> watch_;

  CommitListener* listener_ = nullptr;
  std::thread watcher_;
  std::thread timer_;
  std::atomic<Revision> oldest_{1};
  std::atomic<Revision> seen_head_{0};  // newest revision handed to the listener

  mutable Mutex mu_;
  CondVar cv_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* watch_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // In sync with etcd (the watch is established); otherwise since when not.
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time disconnected_since_ ABSL_GUARDED_BY(mu_);
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  // The newest state, as the watch stream built it.
  SnapshotPtr snapshot_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Revision> ns_revisions_ ABSL_GUARDED_BY(mu_);
  Revision meta_revision_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, PendingPtr> pending_ ABSL_GUARDED_BY(mu_);
  // Writes waiting until this replica has seen a revision, then decided again.
  std::multimap<Revision, PendingPtr> waiting_ ABSL_GUARDED_BY(mu_);
  // Writes to resend (or decide again) at a time.
  std::multimap<absl::Time, PendingPtr> timed_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<Loaded> EtcdStoreImpl::Load() {
  etcdserverpb::RangeRequest request;
  request.set_key(options_.prefix);
  request.set_range_end(etcd::PrefixEnd(options_.prefix));
  request.set_limit(kLoadPage);
  Loaded loaded;
  SnapshotBuilder builder;
  Revision at = 0;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(options_.request_timeout));
    ctx.set_wait_for_ready(true);
    etcdserverpb::RangeResponse response;
    const grpc::Status s = kv_->Range(&ctx, request, &response);
    if (!s.ok()) return FromGrpc(s, "etcd Range");
    if (at == 0) {
      // Every later page is read at the first page's revision.
      at = response.header().revision();
      request.set_revision(at);
    }
    for (const mvccpb::KeyValue& kv : response.kvs()) {
      KeyLayout::Parsed parsed = layout_.Parse(kv.key());
      switch (parsed.kind) {
        case KeyLayout::Kind::kData:
          if (EntryPtr entry = ToEntry(kv)) {
            builder.Add(std::move(parsed.ns), std::move(parsed.key), std::move(entry));
          } else {
            LogEvent(LogLevel::kWarning, "etcd_undecodable_value",
                     {{"etcd_key", absl::CHexEscape(kv.key())}});
          }
          break;
        case KeyLayout::Kind::kMarker:
          loaded.ns_revisions[parsed.ns] = kv.mod_revision();
          break;
        case KeyLayout::Kind::kMeta:
          loaded.meta_revision = kv.mod_revision();
          break;
        case KeyLayout::Kind::kOther:
          break;
      }
    }
    if (!response.more() || response.kvs().empty()) break;
    request.set_key(response.kvs(response.kvs_size() - 1).key() + std::string(1, '\0'));
  }
  loaded.snapshot = std::move(builder).Build(at);
  return loaded;
}

// etcd does not report its compaction revision: find the oldest revision a
// Range can still read, by bisection over [1, head].
absl::Status EtcdStoreImpl::RefreshOldest(Revision head) {
  auto readable = [&](Revision r) -> absl::StatusOr<bool> {
    etcdserverpb::RangeRequest request;
    request.set_key(layout_.MetaKey());
    request.set_revision(r);
    request.set_count_only(true);
    grpc::ClientContext ctx;
    ctx.set_deadline(Deadline(options_.request_timeout));
    ctx.set_wait_for_ready(true);
    etcdserverpb::RangeResponse response;
    const grpc::Status s = kv_->Range(&ctx, request, &response);
    if (s.ok()) return true;
    if (IsCompacted(s)) return false;
    return FromGrpc(s, "etcd Range");
  };
  if (head < 1) return absl::OkStatus();
  ASSIGN_OR_RETURN(bool first_readable, readable(1));
  if (first_readable) return absl::OkStatus();
  Revision lo = 1, hi = head;  // lo unreadable, hi readable
  while (hi - lo > 1) {
    const Revision mid = lo + (hi - lo) / 2;
    ASSIGN_OR_RETURN(bool ok, readable(mid));
    (ok ? hi : lo) = mid;
  }
  // State at the compaction revision is readable, its events are not.
  Revision current = oldest_.load();
  while (current < hi + 1 && !oldest_.compare_exchange_weak(current, hi + 1)) {
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotPtr> EtcdStoreImpl::Start(CommitListener* listener) {
  listener_ = listener;
  const absl::Time give_up = absl::Now() + options_.start_timeout;
  absl::StatusOr<Loaded> loaded;
  for (absl::Duration backoff = absl::Milliseconds(50);;
       backoff = std::min(backoff * 2, absl::Seconds(1))) {
    loaded = Load();
    if (loaded.ok() || absl::Now() + backoff > give_up ||
        absl::IsInvalidArgument(loaded.status()) || absl::IsPermissionDenied(loaded.status())) {
      break;
    }
    absl::SleepFor(backoff);
  }
  if (!loaded.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot load from etcd at ",
                                               absl::StrJoin(options_.endpoints, ","), ": ",
                                               loaded.status().message()));
  }
  if (absl::Status s = RefreshOldest(loaded->snapshot->revision()); !s.ok()) {
    LogEvent(LogLevel::kWarning, "etcd_compaction_revision_unknown", {{"error", s.message()}});
  }
  const SnapshotPtr head = loaded->snapshot;
  {
    MutexLock lock(&mu_);
    snapshot_ = head;
    ns_revisions_ = std::move(loaded->ns_revisions);
    meta_revision_ = loaded->meta_revision;
    connected_ = true;
    started_ = true;
  }
  seen_head_.store(head->revision());
  watcher_ = std::thread([this] { WatchLoop(); });
  timer_ = std::thread([this] { TimerLoop(); });
  return head;
}

void EtcdStoreImpl::WatchLoop() {
  bool reload = false;
  absl::Duration backoff = absl::ZeroDuration();
  for (;;) {
    {
      MutexLock lock(&mu_);
      if (backoff > absl::ZeroDuration()) cv_.WaitUntil(&mu_, Deadline(backoff));
      if (stopping_) return;
    }
    absl::Status error;
    if (reload) {
      absl::StatusOr<Loaded> loaded = Load();
      if (loaded.ok()) {
        InstallReload(*std::move(loaded));
        reload = false;
      } else {
        error = loaded.status();
      }
    }
    if (!reload) {
      const absl::Time began = absl::Now();
      reload = WatchOnce(&error);
      if (absl::Now() - began > absl::Seconds(1)) backoff = absl::ZeroDuration();
    }
    MutexLock lock(&mu_);
    if (stopping_) return;
    if (reload && error.ok()) {
      backoff = absl::ZeroDuration();
      continue;
    }
    if (connected_) {
      connected_ = false;
      disconnected_since_ = absl::Now();
      LogEvent(LogLevel::kError, "etcd_lost", {{"error", error.message()}});
    }
    last_error_ = error;
    backoff = backoff == absl::ZeroDuration() ? absl::Milliseconds(20)
                                              : std::min(backoff * 2, absl::Milliseconds(500));
  }
}

bool EtcdStoreImpl::WatchOnce(absl::Status* error) {
  grpc::ClientContext ctx;
  // Without a leader the member could serve a watch that never moves: have
  // etcd end the stream instead, so the replica notices.
  ctx.AddMetadata("hasleader", "true");
  {
    MutexLock lock(&mu_);
    if (stopping_) return false;
    watch_ctx_ = &ctx;
  }
  std::unique_ptr<grpc::ClientReaderWriter<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>>
      stream = watch_->Watch(&ctx);
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(options_.prefix);
  create->set_range_end(etcd::PrefixEnd(options_.prefix));
  create->set_start_revision(seen_head_.load() + 1);
  bool compacted = false;
  *error = absl::UnavailableError("etcd watch ended");
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    std::vector<const mvccpb::Event*> group;
    while (stream->Read(&response)) {
      if (response.compact_revision() != 0) {
        Revision current = oldest_.load();
        const Revision oldest = response.compact_revision() + 1;
        while (current < oldest && !oldest_.compare_exchange_weak(current, oldest)) {
        }
        LogEvent(LogLevel::kWarning, "etcd_compacted_past_replica",
                 {{"compact_revision", response.compact_revision()},
                  {"replica_revision", seen_head_.load()},
                  {"action", "reloading"}});
        compacted = true;
        *error = absl::OkStatus();
        break;
      }
      if (response.canceled()) {
        *error =
            absl::UnavailableError(absl::StrCat("etcd watch canceled: ", response.cancel_reason()));
        break;
      }
      if (response.created()) {
        MutexLock lock(&mu_);
        if (!connected_) {
          LogEvent(LogLevel::kInfo, "etcd_in_sync", {{"revision", seen_head_.load()}});
        }
        connected_ = true;
        last_error_ = absl::OkStatus();
      }
      // A revision's events arrive together, in order.
      group.clear();
      Revision current = 0;
      for (const mvccpb::Event& event : response.events()) {
        const Revision r = event.kv().mod_revision();
        if (r != current && !group.empty()) {
          ApplyRevision(current, group);
          group.clear();
        }
        current = r;
        group.push_back(&event);
      }
      if (!group.empty()) ApplyRevision(current, group);
    }
  }
  ctx.TryCancel();
  const grpc::Status status = stream->Finish();
  if (!compacted && !status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
    *error = FromGrpc(status, "etcd watch");
  }
  MutexLock lock(&mu_);
  watch_ctx_ = nullptr;
  return compacted;
}

void EtcdStoreImpl::ApplyRevision(Revision revision,
                                  const std::vector<const mvccpb::Event*>& events) {
  if (revision <= seen_head_.load()) return;  // replayed after a reconnect
  SnapshotPtr base;
  {
    MutexLock lock(&mu_);
    base = snapshot_;
  }
  std::vector<RawEntry> raw;
  std::vector<EntryChange> changes;
  std::vector<std::pair<std::string, Revision>> markers;
  std::optional<etcd::Meta> meta;
  for (const mvccpb::Event* event : events) {
    KeyLayout::Parsed parsed = layout_.Parse(event->kv().key());
    const bool put = event->type() == mvccpb::Event::PUT;
    if (parsed.kind == KeyLayout::Kind::kData) {
      EntryPtr after;
      if (put) {
        after = ToEntry(event->kv());
        if (after == nullptr) {
          LogEvent(LogLevel::kWarning, "etcd_undecodable_value",
                   {{"etcd_key", absl::CHexEscape(event->kv().key())}});
          continue;
        }
      }
      EntryPtr before = base->FindShared(parsed.ns, parsed.key);
      if (before == nullptr && after == nullptr) continue;
      raw.push_back({parsed.ns, parsed.key, after});
      changes.push_back(
          {std::move(parsed.ns), std::move(parsed.key), std::move(before), std::move(after)});
    } else if (parsed.kind == KeyLayout::Kind::kMarker) {
      markers.emplace_back(std::move(parsed.ns), put ? revision : 0);
    } else if (parsed.kind == KeyLayout::Kind::kMeta && put) {
      absl::StatusOr<etcd::Meta> decoded = etcd::DecodeMeta(event->kv().value());
      if (decoded.ok()) meta = *std::move(decoded);
    }
  }
  // A revision without snapconf's metadata and without entry changes (the
  // shared token key, a stray key under the prefix) is not a change set.
  if (!meta.has_value() && changes.empty()) return;
  std::sort(changes.begin(), changes.end(), ChangeLess);
  SnapshotPtr next = base->Restore(raw, revision);
  CommitRecord record;
  record.revision = revision;
  if (meta.has_value()) {
    record.commit_time = meta->commit_time;
    record.author = meta->author;
    record.message = meta->message;
  } else {
    record.commit_time = absl::Now();
  }
  record.changes = changes;
  seen_head_.store(revision);
  listener_->OnCommitted(next, record);

  PendingPtr mine;
  std::vector<PendingPtr> due;
  {
    MutexLock lock(&mu_);
    snapshot_ = next;
    for (auto& [ns, r] : markers) {
      if (r == 0) {
        ns_revisions_.erase(ns);
      } else {
        ns_revisions_[ns] = r;
      }
    }
    if (meta.has_value()) {
      meta_revision_ = revision;
      auto it = pending_.find(meta->txn_id);
      if (it != pending_.end()) mine = it->second;
    }
    due = TakeDueLocked(revision);
  }
  if (mine != nullptr) Finish(mine, CommitResult{revision, std::move(changes)});
  RunDue(std::move(due));
}

void EtcdStoreImpl::InstallReload(Loaded loaded) {
  const SnapshotPtr snapshot = loaded.snapshot;
  const Revision revision = snapshot->revision();
  seen_head_.store(revision);
  listener_->OnReloaded(snapshot);
  std::vector<PendingPtr> covered;
  std::vector<PendingPtr> due;
  {
    MutexLock lock(&mu_);
    snapshot_ = snapshot;
    ns_revisions_ = std::move(loaded.ns_revisions);
    meta_revision_ = loaded.meta_revision;
    connected_ = true;
    last_error_ = absl::OkStatus();
    for (auto& [id, p] : pending_) {
      if (p->succeeded_at > 0 && p->succeeded_at <= revision) covered.push_back(p);
    }
    due = TakeDueLocked(revision);
  }
  LogEvent(LogLevel::kInfo, "etcd_reloaded", {{"revision", revision}});
  for (const PendingPtr& p : covered) {
    Finish(p, CommitResult{p->succeeded_at, Expected(p, p->succeeded_at)});
  }
  RunDue(std::move(due));
}

std::vector<EtcdStoreImpl::PendingPtr> EtcdStoreImpl::TakeDueLocked(Revision head) {
  std::vector<PendingPtr> due;
  while (!waiting_.empty() && waiting_.begin()->first <= head) {
    due.push_back(waiting_.begin()->second);
    waiting_.erase(waiting_.begin());
  }
  return due;
}

void EtcdStoreImpl::RunDue(std::vector<PendingPtr> due) {
  for (const PendingPtr& p : due) Attempt(p);
}

void EtcdStoreImpl::TimerLoop() {
  for (;;) {
    std::vector<PendingPtr> due;
    std::vector<PendingPtr> expired;
    {
      MutexLock lock(&mu_);
      if (stopping_) return;
      absl::Time wake = absl::Now() + absl::Milliseconds(100);
      if (!timed_.empty()) wake = std::min(wake, timed_.begin()->first);
      cv_.WaitUntil(&mu_, absl::ToChronoTime(wake));
      if (stopping_) return;
      const absl::Time now = absl::Now();
      while (!timed_.empty() && timed_.begin()->first <= now) {
        due.push_back(timed_.begin()->second);
        timed_.erase(timed_.begin());
      }
      // A write etcd accepted but the watch never delivered (the watch is
      // down), or one waiting for a revision that never comes.
      for (auto& [id, p] : pending_) {
        if (now > p->deadline + options_.request_timeout) expired.push_back(p);
      }
    }
    for (const PendingPtr& p : expired) {
      if (p->succeeded_at > 0) {
        Finish(p, absl::UnavailableError(
                      absl::StrCat("etcd committed the write at revision ", p->succeeded_at,
                                   " but this replica has not received it from etcd yet")));
      } else {
        Finish(p, absl::UnavailableError("etcd did not answer the write in time"));
      }
    }
    for (const PendingPtr& p : due) {
      if (p->resend) {
        SendTxn(p);
      } else {
        Attempt(p);
      }
    }
  }
}

void EtcdStoreImpl::CommitAsync(WriteRequest request, CommitCallback done) {
  auto p = std::make_shared<Pending>();
  p->id = NewTxnId();
  p->request = std::move(request);
  p->done = std::move(done);
  p->deadline = absl::Now() + options_.request_timeout;
  absl::Status refuse;
  {
    MutexLock lock(&mu_);
    if (!started_) refuse = absl::UnavailableError("store not started");
    if (stopping_) refuse = absl::UnavailableError("store is closed");
    if (refuse.ok() && !connected_ &&
        absl::Now() - disconnected_since_ > options_.request_timeout) {
      refuse = absl::UnavailableError(
          absl::StrCat("etcd is unreachable (", last_error_.message(), "); writes are refused"));
    }
    if (refuse.ok()) pending_[p->id] = p;
  }
  if (!refuse.ok()) {
    std::move(p->done)(refuse);
    return;
  }
  Attempt(p);
}

void EtcdStoreImpl::Attempt(const PendingPtr& p) {
  if (++p->attempts > kMaxAttempts) {
    Finish(p, absl::AbortedError(absl::StrCat("the write lost ", kMaxAttempts,
                                              " races with concurrent writes; try again")));
    return;
  }
  if (absl::Now() > p->deadline) {
    Finish(p, absl::UnavailableError("etcd did not accept the write in time"));
    return;
  }
  SnapshotPtr base;
  absl::flat_hash_map<std::string, Revision> ns_revisions;
  Revision meta_revision = 0;
  {
    MutexLock lock(&mu_);
    if (p->finished) return;
    if (stopping_) {
      // Finish below, outside the lock.
    } else {
      base = snapshot_;
      for (const Compare& c : p->request.compares) {
        if (c.target != Compare::Target::kNamespaceRevision) continue;
        auto it = ns_revisions_.find(c.ns);
        ns_revisions[c.ns] = it == ns_revisions_.end() ? 0 : it->second;
      }
      meta_revision = meta_revision_;
    }
  }
  if (base == nullptr) {
    Finish(p, absl::UnavailableError("store is closed"));
    return;
  }
  const WriteRequest& request = p->request;
  for (const Mutation& m : request.changes.mutations()) {
    if (!etcd::StorableName(m.ns) || !etcd::StorableName(m.key)) {
      Finish(p, absl::InvalidArgumentError("names with '!' cannot be stored in etcd"));
      return;
    }
  }
  // A compare naming a revision this replica has not seen yet: it may exist
  // (written through another replica) or be in the future. Ask etcd.
  Revision newest_named = 0;
  for (const Compare& c : request.compares) {
    if (!etcd::StorableName(c.ns) || !etcd::StorableName(c.key)) {
      Finish(p, absl::InvalidArgumentError("names with '!' cannot be stored in etcd"));
      return;
    }
    if (c.target == Compare::Target::kModRevision || c.target == Compare::Target::kCreateRevision ||
        c.target == Compare::Target::kNamespaceRevision) {
      newest_named = std::max(newest_named, c.number);
    }
  }
  if (newest_named > base->revision()) {
    if (p->etcd_head == 0) {
      Probe(p);
      return;
    }
    if (p->etcd_head >= newest_named) {
      {
        MutexLock lock(&mu_);
        if (seen_head_.load() < newest_named) {
          waiting_.emplace(newest_named, p);
          return;
        }
      }
      // Seen meanwhile: decide on the newer snapshot.
      --p->attempts;
      Attempt(p);
      return;
    }
    // Otherwise it really is in the future: CheckCompare says so.
  }
  for (size_t i = 0; i < request.compares.size(); ++i) {
    const Compare& c = request.compares[i];
    const auto it = ns_revisions.find(c.ns);
    const Revision ns_revision = it == ns_revisions.end() ? 0 : it->second;
    if (absl::Status s = CheckCompare(*base, ns_revision, c, i); !s.ok()) {
      Finish(p, s);
      return;
    }
  }
  absl::StatusOr<Snapshot::Applied> applied = base->Apply(request.changes, base->revision() + 1);
  if (!applied.ok()) {
    Finish(p, applied.status());
    return;
  }

  // Guards: everything the decision read is still as in `base`.
  absl::flat_hash_map<std::string, Revision> guards;
  for (const Compare& c : request.compares) {
    if (c.target == Compare::Target::kNamespaceRevision) {
      guards[layout_.MarkerKey(c.ns)] = ns_revisions[c.ns];
    } else {
      const Entry* e = base->Find(c.ns, c.key);
      guards[layout_.DataKey(c.ns, c.key)] = e ? e->mod_revision : 0;
    }
  }
  for (const Mutation& m : request.changes.mutations()) {
    const Entry* e = base->Find(m.ns, m.key);
    guards[layout_.DataKey(m.ns, m.key)] = e ? e->mod_revision : 0;
  }
  // A change set that changes nothing still takes a revision; guarding the
  // metadata key makes a resent one apply at most once.
  if (applied->changes.empty()) guards[layout_.MetaKey()] = meta_revision;

  etcdserverpb::TxnRequest txn;
  for (const auto& [key, mod] : guards) {
    etcdserverpb::Compare* cmp = txn.add_compare();
    cmp->set_key(key);
    cmp->set_target(etcdserverpb::Compare::MOD);
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_mod_revision(mod);
  }
  absl::flat_hash_set<std::string> touched;
  for (const EntryChange& c : applied->changes) {
    etcdserverpb::RequestOp* op = txn.add_success();
    if (c.after) {
      etcdserverpb::PutRequest* put = op->mutable_request_put();
      put->set_key(layout_.DataKey(c.ns, c.key));
      put->set_value(etcd::EncodeValue(c.after->content_type, c.after->value));
    } else {
      op->mutable_request_delete_range()->set_key(layout_.DataKey(c.ns, c.key));
    }
    touched.insert(c.ns);
  }
  for (const std::string& ns : touched) {
    etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
    put->set_key(layout_.MarkerKey(ns));
  }
  etcdserverpb::PutRequest* meta = txn.add_success()->mutable_request_put();
  meta->set_key(layout_.MetaKey());
  meta->set_value(etcd::EncodeMeta({.txn_id = p->id,
                                    .commit_time = absl::Now(),
                                    .author = request.author,
                                    .message = request.message}));
  p->base = base;
  p->txn = std::move(txn);
  SendTxn(p);
}

void EtcdStoreImpl::SendTxn(const PendingPtr& p) {
  struct Call {
    grpc::ClientContext ctx;
    etcdserverpb::TxnRequest request;
    etcdserverpb::TxnResponse response;
  };
  auto call = std::make_shared<Call>();
  // One attempt gets a fraction of the write's budget: a Txn that a follower
  // forwarded to a leader that then died is never answered, and resending
  // it (safe, see OnTxnDone) to a member with the new leader is faster.
  call->ctx.set_deadline(absl::ToChronoTime(std::min(
      p->deadline, absl::Now() + std::max(options_.request_timeout / 4, absl::Milliseconds(250)))));
  call->ctx.set_wait_for_ready(true);
  call->request = p->txn;
  CallStarted();
  kv_->async()->Txn(&call->ctx, &call->request, &call->response,
                    [this, p, call](grpc::Status status) {
                      OnTxnDone(p, status, call->response);
                      CallDone();
                    });
}

void EtcdStoreImpl::OnTxnDone(const PendingPtr& p, const grpc::Status& status,
                              const etcdserverpb::TxnResponse& response) {
  if (!status.ok()) {
    const absl::Status error = FromGrpc(status, "etcd Txn");
    if (absl::IsInvalidArgument(error) || absl::IsResourceExhausted(error) ||
        absl::IsFailedPrecondition(error) || absl::IsPermissionDenied(error)) {
      // Refused before it was applied: nothing to resend.
      Finish(p, error);
      return;
    }
    // The outcome is unknown. Resending the same Txn is safe: its guards
    // let at most one of the copies apply (the first changes a guarded key,
    // or the metadata key for a change set that changes nothing).
    p->resend = true;
    RetryAfter(p, kResendDelay, error);
    return;
  }
  p->resend = false;
  if (response.succeeded()) {
    const Revision r = response.header().revision();
    bool covered = false;
    {
      MutexLock lock(&mu_);
      if (p->finished) return;
      p->succeeded_at = r;
      // The watch passed r without our id: a reload skipped over it.
      covered = seen_head_.load() >= r && pending_.contains(p->id) && snapshot_->revision() >= r;
    }
    if (covered) {
      // Give the watch thread's own delivery priority: it finishes first if it
      // saw the id, and Finish is idempotent.
      Finish(p, CommitResult{r, Expected(p, r)});
    }
    return;
  }
  // A guard failed: someone changed what the decision read. Decide again once
  // this replica has seen the revision etcd answered at (it may also show
  // that an earlier copy of this very Txn applied).
  const Revision r = response.header().revision();
  {
    MutexLock lock(&mu_);
    if (p->finished) return;
    if (seen_head_.load() < r) {
      waiting_.emplace(r, p);
      return;
    }
  }
  Attempt(p);
}

void EtcdStoreImpl::Probe(const PendingPtr& p) {
  struct Call {
    grpc::ClientContext ctx;
    etcdserverpb::RangeRequest request;
    etcdserverpb::RangeResponse response;
  };
  auto call = std::make_shared<Call>();
  call->ctx.set_deadline(
      absl::ToChronoTime(std::min(p->deadline, absl::Now() + options_.request_timeout)));
  call->ctx.set_wait_for_ready(true);
  call->request.set_key(layout_.MetaKey());
  call->request.set_count_only(true);
  CallStarted();
  kv_->async()->Range(&call->ctx, &call->request, &call->response,
                      [this, p, call](grpc::Status status) {
                        if (status.ok()) {
                          p->etcd_head = std::max<Revision>(1, call->response.header().revision());
                          --p->attempts;  // a probe is not a lost race
                          Attempt(p);
                        } else {
                          RetryAfter(p, kResendDelay, FromGrpc(status, "etcd Range"));
                        }
                        CallDone();
                      });
}

void EtcdStoreImpl::RetryAfter(const PendingPtr& p, absl::Duration delay, const absl::Status& why) {
  const absl::Time when = absl::Now() + delay;
  {
    MutexLock lock(&mu_);
    if (p->finished) return;
    if (when < p->deadline && !stopping_) {
      timed_.emplace(when, p);
      cv_.SignalAll();
      return;
    }
  }
  Finish(p, absl::UnavailableError(
                absl::StrCat(why.message(), " (the write may or may not have been applied)")));
}

std::vector<EntryChange> EtcdStoreImpl::Expected(const PendingPtr& p, Revision revision) const {
  if (p->base == nullptr) return {};
  absl::StatusOr<Snapshot::Applied> applied = p->base->Apply(p->request.changes, revision);
  return applied.ok() ? std::move(applied->changes) : std::vector<EntryChange>{};
}

void EtcdStoreImpl::Finish(const PendingPtr& p, absl::StatusOr<CommitResult> result) {
  CommitCallback done;
  {
    MutexLock lock(&mu_);
    if (p->finished) return;
    p->finished = true;
    pending_.erase(p->id);
    done = std::move(p->done);
  }
  std::move(done)(std::move(result));
}

// ---- History ----

absl::StatusOr<Revision> EtcdStoreImpl::LastChangeAt(Revision revision) {
  etcdserverpb::RangeRequest request;
  request.set_key(layout_.MetaKey());
  request.set_revision(revision);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(options_.request_timeout));
  ctx.set_wait_for_ready(true);
  etcdserverpb::RangeResponse response;
  const grpc::Status s = kv_->Range(&ctx, request, &response);
  if (!s.ok()) {
    if (IsCompacted(s)) {
      (void)RefreshOldest(seen_head_.load());
      return absl::OutOfRangeError(absl::StrCat(
          "revision ", revision, " is compacted in etcd; oldest retained is ", oldest_revision()));
    }
    return FromGrpc(s, "etcd Range");
  }
  return response.kvs().empty() ? 0 : response.kvs(0).mod_revision();
}

absl::StatusOr<std::vector<CommitRecord>> EtcdStoreImpl::Replay(Revision lo, Revision last,
                                                                const HistoryQuery& query) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(options_.request_timeout));
  ctx.set_wait_for_ready(true);
  auto stream = watch_->Watch(&ctx);
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(options_.prefix);
  create->set_range_end(etcd::PrefixEnd(options_.prefix));
  create->set_start_revision(lo);
  create->set_prev_kv(true);
  std::vector<CommitRecord> out;
  absl::Status error;
  bool complete = false;
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    while (!complete && stream->Read(&response)) {
      if (response.compact_revision() != 0) {
        Revision current = oldest_.load();
        while (current < response.compact_revision() + 1 &&
               !oldest_.compare_exchange_weak(current, response.compact_revision() + 1)) {
        }
        error = absl::OutOfRangeError(absl::StrCat(
            "revision ", lo, " is compacted in etcd; oldest retained is ", oldest_revision()));
        break;
      }
      if (response.canceled()) {
        error =
            absl::UnavailableError(absl::StrCat("etcd watch canceled: ", response.cancel_reason()));
        break;
      }
      for (const mvccpb::Event& event : response.events()) {
        const Revision r = event.kv().mod_revision();
        if (r > last) {
          complete = true;
          break;
        }
        if (out.empty() || out.back().revision != r) {
          out.emplace_back();
          out.back().revision = r;
          out.back().commit_time = absl::InfinitePast();
        }
        CommitRecord& record = out.back();
        KeyLayout::Parsed parsed = layout_.Parse(event.kv().key());
        if (parsed.kind == KeyLayout::Kind::kMeta && event.type() == mvccpb::Event::PUT) {
          absl::StatusOr<etcd::Meta> meta = etcd::DecodeMeta(event.kv().value());
          if (meta.ok()) {
            record.commit_time = meta->commit_time;
            record.author = std::move(meta->author);
            record.message = std::move(meta->message);
          }
        }
        if (parsed.kind != KeyLayout::Kind::kData) continue;
        EntryPtr before = event.has_prev_kv() ? ToEntry(event.prev_kv()) : nullptr;
        EntryPtr after = event.type() == mvccpb::Event::PUT ? ToEntry(event.kv()) : nullptr;
        if (before == nullptr && after == nullptr) continue;
        record.changes.push_back(
            {std::move(parsed.ns), std::move(parsed.key), std::move(before), std::move(after)});
      }
      if (!out.empty() && out.back().revision >= last) complete = true;
    }
  }
  ctx.TryCancel();
  const grpc::Status status = stream->Finish();
  if (!error.ok()) return error;
  if (!complete) {
    return absl::UnavailableError(
        absl::StrCat("reading history from etcd did not complete: ", status.error_message()));
  }
  // Only change sets (with metadata or entry changes), filtered.
  std::vector<CommitRecord> kept;
  for (CommitRecord& record : out) {
    if (record.commit_time == absl::InfinitePast() && record.changes.empty()) continue;
    if (record.commit_time == absl::InfinitePast()) record.commit_time = absl::UnixEpoch();
    if (!query.ns.empty()) {
      std::erase_if(record.changes, [&](const EntryChange& c) {
        return c.ns != query.ns || (!query.key.empty() && c.key != query.key);
      });
      if (record.changes.empty()) continue;
    }
    std::sort(record.changes.begin(), record.changes.end(), ChangeLess);
    kept.push_back(std::move(record));
  }
  return kept;
}

absl::StatusOr<std::vector<CommitRecord>> EtcdStoreImpl::ReadHistory(const HistoryQuery& query) {
  if (!query.key.empty() && query.ns.empty()) {
    return absl::InvalidArgumentError("history query names a key without its namespace");
  }
  if (query.from_revision < 0 || query.to_revision < 0) {
    return absl::InvalidArgumentError("history revisions must not be negative");
  }
  const Revision head = seen_head_.load();
  const Revision oldest = oldest_revision();
  if (query.from_revision != 0 && query.from_revision < oldest) {
    return absl::OutOfRangeError(absl::StrCat("revision ", query.from_revision,
                                              " is compacted; oldest retained is ", oldest));
  }
  if (query.to_revision != 0 && query.to_revision < oldest) {
    return absl::OutOfRangeError(
        absl::StrCat("revision ", query.to_revision, " is compacted; oldest retained is ", oldest));
  }
  if (query.from_revision > head || query.to_revision > head) {
    return absl::OutOfRangeError(absl::StrCat("revision ",
                                              std::max(query.from_revision, query.to_revision),
                                              " is in the future; head is ", head));
  }
  const Revision from = query.from_revision == 0 ? oldest : query.from_revision;
  const Revision to = query.to_revision == 0 ? head : query.to_revision;
  if (query.from_revision != 0 && query.to_revision != 0 && from > to) {
    return absl::InvalidArgumentError("history query has from_revision after to_revision");
  }
  const size_t limit = query.limit == 0 ? HistoryQuery{}.limit : query.limit;
  std::vector<CommitRecord> result;  // newest first
  // etcd replays history forwards only: walk back in growing windows.
  Revision hi = to;
  Revision window = std::max<Revision>(64, static_cast<Revision>(limit) * 2);
  while (hi >= from && result.size() < limit) {
    ASSIGN_OR_RETURN(Revision last, LastChangeAt(hi));
    if (last < from) break;
    const Revision lo = std::max(from, last - window + 1);
    ASSIGN_OR_RETURN(std::vector<CommitRecord> records, Replay(lo, last, query));
    for (auto it = records.rbegin(); it != records.rend() && result.size() < limit; ++it) {
      result.push_back(std::move(*it));
    }
    hi = lo - 1;
    window = std::min<Revision>(window * 4, 1 << 20);
  }
  return result;
}

// ---- Health and shutdown ----

absl::Status EtcdStoreImpl::Health() const {
  MutexLock lock(&mu_);
  if (!started_) return absl::UnavailableError("store not started");
  if (stopping_) return absl::UnavailableError("store is shutting down");
  // A watch that is re-established at once (a member restarted) is not worth
  // taking the replica out of a load balancer for.
  if (!connected_ && absl::Now() - disconnected_since_ >= kHealthGrace) {
    return absl::UnavailableError(absl::StrCat(
        "out of touch with etcd for ", absl::FormatDuration(absl::Now() - disconnected_since_),
        " (", last_error_.message(), "); serving the snapshot at revision ", seen_head_.load()));
  }
  return absl::OkStatus();
}

absl::Duration EtcdStoreImpl::Staleness() const {
  MutexLock lock(&mu_);
  if (!started_ || connected_) return absl::ZeroDuration();
  return absl::Now() - disconnected_since_;
}

absl::StatusOr<std::string> EtcdStoreImpl::SharedTokenKey(const std::string& candidate) {
  const std::string key = layout_.TokenKey();
  etcdserverpb::TxnRequest txn;
  etcdserverpb::Compare* absent = txn.add_compare();
  absent->set_key(key);
  absent->set_target(etcdserverpb::Compare::CREATE);
  absent->set_result(etcdserverpb::Compare::EQUAL);
  absent->set_create_revision(0);
  etcdserverpb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(candidate);
  txn.add_failure()->mutable_request_range()->set_key(key);
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(options_.request_timeout));
  ctx.set_wait_for_ready(true);
  etcdserverpb::TxnResponse response;
  const grpc::Status s = kv_->Txn(&ctx, txn, &response);
  if (!s.ok()) return FromGrpc(s, "etcd Txn");
  if (response.succeeded()) return candidate;
  if (response.responses_size() == 1 && response.responses(0).response_range().kvs_size() == 1) {
    return response.responses(0).response_range().kvs(0).value();
  }
  return absl::DataLossError("the shared page-token key in etcd is unreadable");
}

void EtcdStoreImpl::Close() {
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    stopping_ = true;
    if (watch_ctx_ != nullptr) watch_ctx_->TryCancel();
    cv_.SignalAll();
  }
  if (watcher_.joinable()) watcher_.join();
  if (timer_.joinable()) timer_.join();
  std::vector<PendingPtr> left;
  {
    MutexLock lock(&mu_);
    while (in_flight_ > 0) cv_.Wait(&mu_);
    for (auto& [id, p] : pending_) left.push_back(p);
    waiting_.clear();
    timed_.clear();
  }
  for (const PendingPtr& p : left) {
    Finish(p, absl::UnavailableError("the server is shutting down; the write's outcome is "
                                     "unknown"));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdStore>> OpenEtcdStore(const EtcdStoreOptions& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("--etcd-endpoints is empty");
  }
  if (options.prefix.empty()) return absl::InvalidArgumentError("--etcd-prefix is empty");
  ASSIGN_OR_RETURN(std::string target, ResolveTarget(options.endpoints));
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  grpc::ChannelArguments args;
  if (options.ca_file.empty() && options.cert_file.empty() && options.key_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    if (options.cert_file.empty() != options.key_file.empty()) {
      return absl::InvalidArgumentError("--etcd-cert and --etcd-key go together");
    }
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(options.ca_file));
    }
    if (!options.cert_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFile(options.cert_file));
      ASSIGN_OR_RETURN(ssl.pem_private_key, ReadFile(options.key_file));
    }
    credentials = grpc::SslCredentials(ssl);
    // The certificate names the first endpoint's host, not the resolved IP.
    const std::string& first = options.endpoints.front();
    std::string host = first.substr(0, first.rfind(':'));
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    args.SetSslTargetNameOverride(host);
  }
  args.SetLoadBalancingPolicyName("round_robin");
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Reconnect to a member that comes back soon, not after minutes.
  // (Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: gRPC also uses it as the bound of
  // one connection attempt, and a TLS handshake on a busy machine needs more.)
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(target, credentials, args);
  return std::make_unique<EtcdStoreImpl>(options, std::move(channel));
}

}  // namespace snapconf
