#include "service/watch/watch_hub.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "grpcpp/impl/grpc_library.h"
#include "grpcpp/support/slice.h"
#include "service/watch/wire.h"

namespace snapconf {
namespace {

// grpc::Slice and grpc::ByteBuffer go through gRPC's codegen interface, which
// this initializer installs even when no channel or server was created yet
// (the hub builds records before the server starts, and in unit tests).
grpc::internal::GrpcLibraryInitializer g_grpc_library_initializer;

// Records copied per step while scanning the log, so the hub's lock is held
// only briefly.
constexpr size_t kScanWindow = 256;
// Rough cost of a record beyond its bytes (the record, vectors, strings).
constexpr size_t kRecordOverhead = 128;

// Protobuf wire tags used by the hand-built messages.
constexpr char kTagResponseChanges = 0x12;  // WatchResponse.changes (2, LEN)
constexpr char kTagAfterRevision = 0x08;    // WatchChanges.after_revision (1, VARINT)
constexpr char kTagRevision = 0x10;         // WatchChanges.revision (2, VARINT)
constexpr char kTagRevisions = 0x1a;        // WatchChanges.revisions (3, LEN)
constexpr char kTagRcRevision = 0x08;       // RevisionChanges.revision (1, VARINT)
constexpr char kTagRcChange = 0x12;         // RevisionChanges.changes (2, LEN)

using watch_wire::PutVarint;
using watch_wire::VarintSize;

void FillEntry(std::string_view ns, std::string_view key, const Entry& entry, v1::Entry* out) {
  if (!ns.empty()) out->set_namespace_(std::string(ns));
  if (!key.empty()) out->set_key(std::string(key));
  out->set_value(entry.value);
  if (!entry.content_type.empty()) out->set_content_type(entry.content_type);
  out->set_create_revision(entry.create_revision);
  out->set_mod_revision(entry.mod_revision);
  out->set_version(entry.version);
}

void FillChange(const EntryChange& change, bool with_before, v1::Change* out) {
  out->set_namespace_(change.ns);
  out->set_key(change.key);
  if (with_before && change.before) FillEntry({}, {}, *change.before, out->mutable_before());
  if (change.after) FillEntry({}, {}, *change.after, out->mutable_after());
}

// Moves `bytes` into a slice without copying them again.
grpc::Slice SliceOf(std::string bytes) {
  auto* owned = new std::string(std::move(bytes));
  return grpc::Slice(
      owned->data(), owned->size(), [](void* p) { delete static_cast<std::string*>(p); }, owned);
}

grpc::ByteBuffer BufferOf(const google::protobuf::MessageLite& message) {
  grpc::Slice slice = SliceOf(message.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

// The `changes` elements of one revision, serialized once.
struct Encoded {
  grpc::Slice bytes;
  std::vector<uint32_t> offsets;  // change i is [offsets[i], offsets[i + 1])
};

Encoded Encode(const std::vector<EntryChange>& changes, bool with_before) {
  std::string bytes;
  Encoded out;
  out.offsets.reserve(changes.size() + 1);
  v1::Change proto;
  for (const EntryChange& change : changes) {
    out.offsets.push_back(static_cast<uint32_t>(bytes.size()));
    proto.Clear();
    FillChange(change, with_before, &proto);
    bytes.push_back(kTagRcChange);
    PutVarint(&bytes, proto.ByteSizeLong());
    proto.AppendToString(&bytes);
  }
  out.offsets.push_back(static_cast<uint32_t>(bytes.size()));
  out.bytes = SliceOf(std::move(bytes));
  return out;
}

const std::string kAllKeys;

}  // namespace

// One committed revision in the log. Immutable once built except for the
// lazily built variant with previous entries (call_once makes it safe).
struct LogRecord {
  Revision revision = 0;
  // The revision before this one in the stream. Usually revision - 1; with
  // the etcd store revisions may skip numbers (writes outside snapconf's
  // prefix), and this record then covers every revision in (after, revision].
  Revision after = 0;
  std::vector<EntryChange> changes;  // sorted by (ns, key)
  Encoded plain;                     // Change.after only
  size_t byte_size = 0;

  mutable std::once_flag with_before_once;
  mutable Encoded with_before;

  // Watchers asking for previous entries are rare: their encoding is built on
  // first use only, so the common case costs one serialization per revision.
  const Encoded& Get(bool before) const {
    if (!before) return plain;
    std::call_once(with_before_once, [this] { with_before = Encode(changes, true); });
    return with_before;
  }

  static std::shared_ptr<const LogRecord> Make(Revision after, Revision revision,
                                               std::vector<EntryChange> changes) {
    auto record = std::make_shared<LogRecord>();
    record->revision = revision;
    record->after = after;
    record->changes = std::move(changes);
    record->plain = Encode(record->changes, false);
    record->byte_size = record->plain.bytes.size() + kRecordOverhead;
    for (const EntryChange& c : record->changes) {
      record->byte_size += c.ns.size() + c.key.size() + sizeof(EntryChange);
      if (c.before) record->byte_size += c.before->value.size();
    }
    return record;
  }
};

// A changes message being assembled from log records: framing built here,
// change bytes referenced as sub-slices of the records.
struct Watcher::Message {
  struct Piece {
    const grpc::Slice* slice = nullptr;  // null: a range of `framing`
    size_t begin = 0, end = 0;
  };
  std::string framing;
  std::vector<Piece> pieces;
  std::vector<std::shared_ptr<const LogRecord>> keep;  // owners of the slices
  size_t payload = 0;                                  // bytes of `revisions` elements
  size_t revisions = 0;

  struct Mark {
    size_t framing, pieces, keep, payload, revisions;
  };
  Mark mark() const { return {framing.size(), pieces.size(), keep.size(), payload, revisions}; }
  void Rewind(const Mark& m) {
    framing.resize(m.framing);
    pieces.resize(m.pieces);
    keep.resize(m.keep);
    payload = m.payload;
    revisions = m.revisions;
  }

  grpc::ByteBuffer Build(Revision after, Revision revision) const {
    size_t body = 1 + VarintSize(revision) + payload;
    if (after != 0) body += 1 + VarintSize(after);
    std::string head;
    head.push_back(kTagResponseChanges);
    PutVarint(&head, body);
    if (after != 0) {
      head.push_back(kTagAfterRevision);
      PutVarint(&head, after);
    }
    head.push_back(kTagRevision);
    PutVarint(&head, revision);
    std::vector<grpc::Slice> slices;
    slices.reserve(pieces.size() + 1);
    slices.push_back(SliceOf(std::move(head)));
    const grpc::Slice frame = grpc::Slice(framing);
    for (const Piece& p : pieces) {
      slices.push_back((p.slice == nullptr ? frame : *p.slice).sub(p.begin, p.end));
    }
    return grpc::ByteBuffer(slices.data(), slices.size());
  }
};

absl::StatusOr<WatchSpec> ParseWatchCreate(const v1::WatchCreateRequest& request,
                                           const WatchNameValidator& validate) {
  WatchSpec spec;
  if (request.filters_size() == 0) {
    return absl::InvalidArgumentError("create.filters: at least one filter is required");
  }
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < request.filters_size(); ++i) {
    const v1::WatchFilter& f = request.filters(i);
    const std::string field = absl::StrCat("create.filters[", i, "]");
    if (f.namespace_().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".namespace: must not be empty"));
    }
    if (!seen.insert(f.namespace_()).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".namespace: \"", f.namespace_(),
                                                     "\" appears in more than one filter"));
    }
    WatchFilterSpec filter;
    filter.ns = f.namespace_();
    filter.prefixes.assign(f.prefixes().begin(), f.prefixes().end());
    if (validate) {
      if (absl::Status s = validate(filter.ns, filter.prefixes); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": ", s.message()));
      }
    }
    spec.filters.push_back(std::move(filter));
  }
  if (request.start_revision() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("create.start_revision: must be >= 0 (0 starts with the current state), got ",
                     request.start_revision()));
  }
  spec.start_revision = request.start_revision();
  switch (request.mode()) {
    case v1::DELIVERY_MODE_UNSPECIFIED:
    case v1::DELIVERY_MODE_EVERY_REVISION:
      spec.mode = v1::DELIVERY_MODE_EVERY_REVISION;
      break;
    case v1::DELIVERY_MODE_LATEST_STATE:
      spec.mode = v1::DELIVERY_MODE_LATEST_STATE;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("create.mode: unknown delivery mode ", static_cast<int>(request.mode())));
  }
  spec.with_previous = request.with_previous();
  return spec;
}

std::string PeerHost(std::string_view peer) {
  // "ipv4:1.2.3.4:5", "ipv6:[::1]:5": drop the port; anything else as is.
  const size_t colon = peer.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == peer.size()) return std::string(peer);
  for (size_t i = colon + 1; i < peer.size(); ++i) {
    if (peer[i] < '0' || peer[i] > '9') return std::string(peer);
  }
  if (!peer.starts_with("ipv4:") && !peer.starts_with("ipv6:")) return std::string(peer);
  return std::string(peer.substr(0, colon));
}

// ---------------------------------------------------------------------------
// Watcher

Watcher::Watcher(WatchHub* hub, std::string peer, WatchSink* sink, size_t shard,
                 std::string connection)
    : hub_(hub),
      peer_(std::move(peer)),
      sink_(sink),
      shard_(shard),
      connection_(std::move(connection)) {}

void Watcher::Activate() {
  grpc::Status status;
  {
    MutexLock lock(&mu_);
    if (active_) return;
    active_ = true;
    if (!finish_requested_ || ended_) return;
    ended_ = true;
    status = finish_status_;
  }
  sink_->End(status);
}

void Watcher::Start(WatchSpec spec) {
  Activate();
  {
    MutexLock lock(&mu_);
    if (started_ || finish_requested_) return;
    started_ = true;
    // Filters sorted by namespace and prefixes made disjoint (a prefix covered
    // by a shorter one is dropped), so resets and net differences come out in
    // (namespace, key) order without merging.
    std::sort(spec.filters.begin(), spec.filters.end(),
              [](const WatchFilterSpec& a, const WatchFilterSpec& b) { return a.ns < b.ns; });
    for (WatchFilterSpec& f : spec.filters) {
      std::sort(f.prefixes.begin(), f.prefixes.end());
      std::vector<std::string> kept;
      bool all = false;
      for (std::string& p : f.prefixes) {
        if (p.empty()) all = true;
        if (!kept.empty() && p.starts_with(kept.back())) continue;
        kept.push_back(std::move(p));
      }
      f.prefixes = all ? std::vector<std::string>{} : std::move(kept);
    }
    spec_ = std::move(spec);
    last_send_ = absl::Now();

    const WatchHub::View view = hub_->GetView();
    const Revision head = view.head ? view.head->revision() : 0;
    const Revision start = spec_.start_revision;
    if (start == 0) {
      reset_due_ = v1::RESET_REASON_INITIAL;
    } else if (start - 1 >= head || start >= view.oldest) {
      // Retained (replay from the log), current (head + 1) or future (wait).
      scan_position_ = client_revision_ = start - 1;
    } else if (spec_.mode == v1::DELIVERY_MODE_LATEST_STATE) {
      // Older than the log, but the engine may still rebuild the state the
      // client holds: then one net difference replaces a reset.
      absl::StatusOr<SnapshotPtr> held = hub_->SnapshotAt(start - 1);
      if (held.ok()) {
        held_ = *std::move(held);
        scan_position_ = client_revision_ = start - 1;
      } else {
        reset_due_ = v1::RESET_REASON_HISTORY_COMPACTED;
      }
    } else {
      reset_due_ = v1::RESET_REASON_HISTORY_COMPACTED;
    }
  }
  Pump();
}

bool Watcher::finishing() const {
  MutexLock lock(&mu_);
  return finish_requested_;
}

Revision Watcher::client_revision() const {
  MutexLock lock(&mu_);
  return client_revision_;
}

Revision Watcher::scanned_revision() const {
  MutexLock lock(&mu_);
  return started_ ? std::max(scan_position_, client_revision_) : -1;
}

void Watcher::RequestProgress() {
  {
    MutexLock lock(&mu_);
    progress_requested_ = true;
  }
  Pump();
}

void Watcher::Finish(const grpc::Status& status) {
  {
    MutexLock lock(&mu_);
    if (finish_requested_) return;
    finish_requested_ = true;
    finish_status_ = status;
    if (!active_ || write_in_flight_) return;  // Activate or OnWriteDone ends the stream
    ended_ = true;
  }
  sink_->End(status);
}

void Watcher::set_recheck(Recheck recheck) {
  MutexLock lock(&mu_);
  recheck_ = std::move(recheck);
}

bool Watcher::RunRecheck() {
  Recheck recheck;
  {
    MutexLock lock(&mu_);
    if (finish_requested_ || !recheck_) return false;
    recheck = recheck_;
  }
  // Outside mu_: the check reads credentials and policy, never this watcher.
  const absl::Status allowed = recheck();
  if (allowed.ok()) return false;
  Finish(
      grpc::Status(static_cast<grpc::StatusCode>(allowed.code()), std::string(allowed.message())));
  return true;
}

void Watcher::OnWriteDone(bool ok) {
  grpc::Status end_status;
  bool end_now = false;
  {
    MutexLock lock(&mu_);
    write_in_flight_ = false;
    in_flight_.Clear();
    if (!ok && !finish_requested_) {
      // The transport gave up on the stream (client gone or cancelled).
      finish_requested_ = true;
      finish_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "watch stream broken");
    }
    if (finish_requested_ && !ended_) {
      ended_ = true;
      end_now = true;
      end_status = finish_status_;
    }
  }
  if (end_now) {
    sink_->End(end_status);
    return;
  }
  Pump();
}

void Watcher::Pump() {
  const grpc::ByteBuffer* message = nullptr;
  {
    MutexLock lock(&mu_);
    if (!started_ || write_in_flight_ || finish_requested_) return;
    const absl::Time now = absl::Now();
    grpc::ByteBuffer next;
    if (!NextMessage(now, &next)) return;
    in_flight_.Swap(&next);
    write_in_flight_ = true;
    last_send_ = now;
    message = &in_flight_;  // untouched until OnWriteDone
  }
  sink_->Send(message);
}

bool Watcher::NextMessage(absl::Time now, grpc::ByteBuffer* out) {
  if (reset_) {
    NextResetChunk(out);
    return true;
  }
  const WatchHub::View view = hub_->GetView();
  if (view.head == nullptr) return false;
  if (reset_due_) {
    BeginReset(*reset_due_, view.head);
    reset_due_.reset();
    NextResetChunk(out);
    return true;
  }
  const Revision head = view.head->revision();
  if (scan_position_ < head) {
    const bool sent = spec_.mode == v1::DELIVERY_MODE_LATEST_STATE ? CatchUpLatestState(out)
                                                                   : CatchUpEveryRevision(out);
    if (sent) return true;
  }
  // Progress only once caught up; a watch waiting for a future start revision
  // has nothing to vouch for yet.
  if (scan_position_ <= hub_->head_revision() &&
      (progress_requested_ || now - last_send_ >= hub_->options_.progress_interval)) {
    progress_requested_ = false;
    v1::WatchResponse response;
    response.mutable_progress()->set_revision(scan_position_);
    client_revision_ = scan_position_;
    *out = BufferOf(response);
    return true;
  }
  return false;
}

bool Watcher::Matches(std::string_view ns, std::string_view key) const {
  const auto it =
      std::lower_bound(spec_.filters.begin(), spec_.filters.end(), ns,
                       [](const WatchFilterSpec& f, std::string_view n) { return f.ns < n; });
  if (it == spec_.filters.end() || it->ns != ns) return false;
  if (it->prefixes.empty()) return true;
  for (const std::string& p : it->prefixes) {
    if (key.starts_with(p)) return true;
  }
  return false;
}

bool Watcher::AddRevision(const LogRecord& record, Message* message) const {
  const Encoded& encoded = record.Get(spec_.with_previous);
  const size_t n = record.changes.size();
  Message::Mark mark = message->mark();
  // Reserve the framing of the element; its length is known after the runs.
  const size_t frame_index = message->pieces.size();
  message->pieces.push_back({});
  size_t run_bytes = 0;
  size_t i = 0;
  while (i < n) {
    if (!Matches(record.changes[i].ns, record.changes[i].key)) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < n && Matches(record.changes[j].ns, record.changes[j].key)) ++j;
    message->pieces.push_back({&encoded.bytes, encoded.offsets[i], encoded.offsets[j]});
    run_bytes += encoded.offsets[j] - encoded.offsets[i];
    i = j;
  }
  if (run_bytes == 0) {
    message->Rewind(mark);
    return false;
  }
  const size_t inner = 1 + VarintSize(record.revision) + run_bytes;
  const size_t begin = message->framing.size();
  message->framing.push_back(kTagRevisions);
  PutVarint(&message->framing, inner);
  message->framing.push_back(kTagRcRevision);
  PutVarint(&message->framing, record.revision);
  message->pieces[frame_index] = {nullptr, begin, message->framing.size()};
  message->payload += (message->framing.size() - begin) + run_bytes;
  message->revisions += 1;
  return true;
}

bool Watcher::CatchUpEveryRevision(grpc::ByteBuffer* out) {
  const Revision head = hub_->head_revision();
  Message message;
  Revision end = scan_position_;
  bool full = false;
  while (end < head && !full) {
    std::vector<std::shared_ptr<const LogRecord>> records =
        hub_->Records(end + 1, head, kScanWindow);
    if (records.empty() || records.front()->after > end) {
      if (message.revisions > 0) break;  // send what is whole; the next pump resets
      const WatchHub::View view = hub_->GetView();
      const bool reloaded = view.reloaded_at > 0 && end < view.reloaded_at;
      BeginReset(reloaded ? v1::RESET_REASON_STORE_RELOADED : v1::RESET_REASON_FELL_BEHIND,
                 view.head);
      NextResetChunk(out);
      return true;
    }
    for (const std::shared_ptr<const LogRecord>& record : records) {
      const Message::Mark mark = message.mark();
      if (AddRevision(*record, &message)) {
        message.keep.push_back(record);
        if (mark.revisions > 0 && message.payload > hub_->options_.max_message_bytes) {
          message.Rewind(mark);  // whole revisions only: this one goes next
          full = true;
          break;
        }
      }
      end = record->revision;
    }
  }
  if (message.revisions == 0) {
    scan_position_ = end;
    return false;
  }
  *out = message.Build(client_revision_, end);
  scan_position_ = client_revision_ = end;
  return true;
}

bool Watcher::CatchUpLatestState(grpc::ByteBuffer* out) {
  const WatchHub::View view = hub_->GetView();
  const Revision head = view.head->revision();
  if (scan_position_ + 1 >= view.oldest) {
    std::vector<std::shared_ptr<const LogRecord>> records =
        hub_->Records(scan_position_ + 1, head, static_cast<size_t>(head - scan_position_));
    if (!records.empty() && records.front()->after <= scan_position_ &&
        records.back()->revision == head) {
      Message message;
      std::shared_ptr<const LogRecord> only;
      for (const std::shared_ptr<const LogRecord>& record : records) {
        if (AddRevision(*record, &message)) {
          only = record;
          if (message.revisions > 1) break;
        }
      }
      if (message.revisions == 0) {
        scan_position_ = head;
        held_ = view.head;
        return false;
      }
      if (message.revisions == 1) {
        // One matching revision: the shared bytes, not a per-watcher diff.
        message.keep.push_back(only);
        *out = message.Build(client_revision_, head);
        scan_position_ = client_revision_ = head;
        held_ = view.head;
        return true;
      }
    }
  }
  if (held_ == nullptr) {
    absl::StatusOr<SnapshotPtr> held = hub_->SnapshotAt(scan_position_);
    if (!held.ok()) {
      if (scan_position_ + 1 >= view.oldest) return CatchUpEveryRevision(out);
      const bool reloaded = view.reloaded_at > 0 && scan_position_ < view.reloaded_at;
      BeginReset(reloaded ? v1::RESET_REASON_STORE_RELOADED : v1::RESET_REASON_FELL_BEHIND,
                 view.head);
      NextResetChunk(out);
      return true;
    }
    held_ = *std::move(held);
  }
  return NetMessage(held_, view.head, out);
}

bool Watcher::NetMessage(const SnapshotPtr& from, const SnapshotPtr& to, grpc::ByteBuffer* out) {
  v1::WatchResponse response;
  v1::WatchChanges* changes = response.mutable_changes();
  v1::RevisionChanges* revision = changes->add_revisions();
  revision->set_revision(to->revision());
  for (const WatchFilterSpec& f : spec_.filters) {
    const size_t n = std::max<size_t>(1, f.prefixes.size());
    for (size_t i = 0; i < n; ++i) {
      const std::string& prefix = f.prefixes.empty() ? kAllKeys : f.prefixes[i];
      for (const EntryChange& c : Diff(*from, *to, f.ns, prefix)) {
        FillChange(c, spec_.with_previous, revision->add_changes());
      }
    }
  }
  scan_position_ = to->revision();
  held_ = to;
  // Sent even when the difference is empty (say a key created and deleted
  // again): the range held matching revisions, and skipping it silently would
  // let a later message claim a range it does not account for.
  changes->set_after_revision(client_revision_);
  changes->set_revision(to->revision());
  changes->set_net(true);
  client_revision_ = to->revision();
  *out = BufferOf(response);
  return true;
}

void Watcher::BeginReset(v1::ResetReason reason, SnapshotPtr snapshot) {
  hub_->resets_[static_cast<size_t>(reason) % hub_->resets_.size()].fetch_add(
      1, std::memory_order_relaxed);
  ResetCursor cursor;
  cursor.snapshot = std::move(snapshot);
  cursor.reason = reason;
  reset_ = std::move(cursor);
  held_ = nullptr;
}

bool Watcher::HasMoreReset(ResetCursor cursor) const {
  while (cursor.filter < spec_.filters.size()) {
    const WatchFilterSpec& f = spec_.filters[cursor.filter];
    const std::string& prefix = f.prefixes.empty() ? kAllKeys : f.prefixes[cursor.prefix];
    bool found = false;
    cursor.snapshot->Scan(f.ns, prefix, cursor.after, 1, [&](std::string_view, const EntryPtr&) {
      found = true;
      return false;
    });
    if (found) return true;
    cursor.after.clear();
    if (++cursor.prefix >= std::max<size_t>(1, f.prefixes.size())) {
      cursor.prefix = 0;
      ++cursor.filter;
    }
  }
  return false;
}

void Watcher::NextResetChunk(grpc::ByteBuffer* out) {
  ResetCursor& c = *reset_;
  v1::WatchResponse response;
  v1::WatchReset* reset = response.mutable_reset();
  const Revision revision = c.snapshot->revision();
  reset->set_revision(revision);
  reset->set_reason(c.reason);
  size_t bytes = 0;
  bool full = false;
  while (c.filter < spec_.filters.size() && !full) {
    const WatchFilterSpec& f = spec_.filters[c.filter];
    const std::string& prefix = f.prefixes.empty() ? kAllKeys : f.prefixes[c.prefix];
    c.snapshot->Scan(f.ns, prefix, c.after, 0, [&](std::string_view key, const EntryPtr& e) {
      v1::Entry* entry = reset->add_entries();
      FillEntry(f.ns, key, *e, entry);
      bytes += entry->ByteSizeLong() + 4;
      c.after.assign(key);
      if (bytes >= hub_->options_.reset_chunk_bytes) full = true;
      return !full;
    });
    if (!full) {
      c.after.clear();
      if (++c.prefix >= std::max<size_t>(1, f.prefixes.size())) {
        c.prefix = 0;
        ++c.filter;
      }
    }
  }
  const bool more = full && HasMoreReset(c);
  reset->set_more(more);
  if (!more) {
    scan_position_ = client_revision_ = revision;
    if (spec_.mode == v1::DELIVERY_MODE_LATEST_STATE) held_ = c.snapshot;
    reset_.reset();
  }
  *out = BufferOf(response);
}

// ---------------------------------------------------------------------------
// WatchHub

WatchHub::WatchHub(WatchHubOptions options, SnapshotSource snapshot_at)
    : options_(options), snapshot_at_(std::move(snapshot_at)) {
  size_t threads = options_.dispatch_threads > 0
                       ? static_cast<size_t>(options_.dispatch_threads)
                       : static_cast<size_t>(std::max(1u, std::thread::hardware_concurrency()));
  MutexLock lock(&mu_);
  shards_.resize(threads);
}

void WatchHub::StartDispatchersLocked() {
  if (external_pumps_ || !dispatchers_.empty()) return;
  for (size_t i = 0; i < shards_.size(); ++i) {
    dispatchers_.emplace_back([this, i] { DispatchLoop(i); });
  }
}

void WatchHub::SetExternalPumps(size_t shards, std::function<void(size_t shard)> wake) {
  {
    MutexLock lock(&mu_);
    // Before the first Open: no dispatcher started, no watcher placed.
    if (external_pumps_ || !dispatchers_.empty() || shards == 0) return;
    external_pumps_ = true;
    shards_.assign(shards, {});
  }
  MutexLock lock(&wake_mu_);
  external_wake_ = std::move(wake);
  external_shards_ = shards;
}

absl::Duration WatchHub::pump_tick() const {
  // Often enough that an idle stream's progress is at most a quarter of the
  // interval late.
  return std::clamp(options_.progress_interval / 4, absl::Milliseconds(5), absl::Seconds(1));
}

void WatchHub::WakePumps() {
  wake_.SignalAll();
  MutexLock lock(&wake_mu_);
  if (external_shards_ == 0) return;
  // Only shards with watchers: a commit with few watchers stays cheap however
  // many pumps there are. A watcher placed after this check started after
  // the commit's head was published, so its Start already saw it.
  std::vector<char> busy(external_shards_);
  {
    MutexLock hub_lock(&mu_);
    for (size_t i = 0; i < busy.size() && i < shards_.size(); ++i) busy[i] = !shards_[i].empty();
  }
  for (size_t i = 0; i < busy.size(); ++i) {
    if (busy[i]) external_wake_(i);
  }
}

std::vector<std::shared_ptr<Watcher>> WatchHub::ShardWatchers(size_t shard) const {
  MutexLock lock(&mu_);
  if (shard >= shards_.size()) return {};
  return {shards_[shard].begin(), shards_[shard].end()};
}

void WatchHub::PumpShard(size_t shard) {
  for (const std::shared_ptr<Watcher>& w : ShardWatchers(shard)) w->Pump();
}

WatchHub::~WatchHub() { Shutdown(); }

void WatchHub::OnCommitted(const SnapshotPtr& snapshot, const CommitRecord& record) {
  // Serialized here, once, on the writer thread, outside the lock.
  // Revisions only increase; the etcd store may skip numbers that belong to
  // writes outside snapconf, which the record's `after` bridges.
  Revision after = record.revision - 1;
  {
    MutexLock lock(&mu_);
    if (head_ != nullptr && head_->revision() < record.revision) after = head_->revision();
  }
  std::shared_ptr<const LogRecord> entry = LogRecord::Make(after, record.revision, record.changes);
  {
    MutexLock lock(&mu_);
    if (head_ != nullptr && head_->revision() >= record.revision) {
      // Going backwards (never expected): drop the log rather than hide a
      // gap; watchers behind it are reset.
      log_.clear();
      log_bytes_ = 0;
    }
    head_ = snapshot;
    AppendLocked(std::move(entry));
    ++commits_seen_;
  }
  WakePumps();
}

void WatchHub::OnReloaded(const SnapshotPtr& snapshot) {
  {
    MutexLock lock(&mu_);
    if (head_ != nullptr) {
      // Continuity is lost: nobody may replay across this point.
      log_.clear();
      log_bytes_ = 0;
      reloaded_at_ = snapshot->revision();
      ++reloads_;
    }
    head_ = snapshot;
    ++commits_seen_;
  }
  WakePumps();
}

void WatchHub::AppendLocked(std::shared_ptr<const LogRecord> record) {
  log_bytes_ += record->byte_size;
  log_.push_back(std::move(record));
  TrimLocked();
}

void WatchHub::TrimLocked() {
  while (log_.size() > 1 && (static_cast<int64_t>(log_.size()) > options_.log_max_revisions ||
                             log_bytes_ > options_.log_max_bytes)) {
    log_bytes_ -= log_.front()->byte_size;
    log_.pop_front();
  }
}

absl::Status WatchHub::Preload(Store& store) {
  Revision upper = 0;
  int64_t budget = 0;
  {
    MutexLock lock(&mu_);
    if (head_ == nullptr) return absl::OkStatus();
    upper = log_.empty() ? head_->revision() : log_.front()->after;
    budget = options_.log_max_revisions - static_cast<int64_t>(log_.size());
  }
  // History holds every change set, but revision numbers may skip (etcd):
  // each record follows the next older one, and the oldest one fetched is
  // only kept when history has nothing older (its predecessor is unknown).
  std::vector<CommitRecord> fetched;  // newest first
  bool exhausted = false;
  Revision next = upper;
  while (static_cast<int64_t>(fetched.size()) <= budget) {
    if (next < 1) {
      exhausted = true;
      break;
    }
    HistoryQuery query;
    query.to_revision = next;
    query.limit = static_cast<size_t>(std::min<int64_t>(1000, budget + 1 - fetched.size()));
    absl::StatusOr<std::vector<CommitRecord>> page = store.ReadHistory(query);
    if (absl::IsOutOfRange(page.status())) break;  // nothing retained that old
    if (!page.ok()) return page.status();
    if (page->empty()) {
      exhausted = true;
      break;
    }
    next = page->back().revision - 1;
    for (CommitRecord& record : *page) fetched.push_back(std::move(record));
  }
  std::vector<std::shared_ptr<const LogRecord>> older;  // newest first
  size_t bytes = 0;
  for (size_t i = 0; i < fetched.size() && static_cast<int64_t>(older.size()) < budget; ++i) {
    Revision after = 0;
    if (i + 1 < fetched.size()) {
      after = fetched[i + 1].revision;
    } else if (exhausted) {
      after = std::clamp<Revision>(store.oldest_revision() - 1, 0, fetched[i].revision - 1);
    } else {
      break;
    }
    std::shared_ptr<const LogRecord> entry =
        LogRecord::Make(after, fetched[i].revision, std::move(fetched[i].changes));
    if (bytes + entry->byte_size > options_.log_max_bytes) break;
    bytes += entry->byte_size;
    older.push_back(std::move(entry));
  }
  {
    MutexLock lock(&mu_);
    const Revision now_upper = log_.empty() ? head_->revision() : log_.front()->after;
    if (now_upper != upper) return absl::OkStatus();  // the log moved on; not contiguous
    for (std::shared_ptr<const LogRecord>& entry : older) {
      if (static_cast<int64_t>(log_.size()) >= options_.log_max_revisions ||
          log_bytes_ + entry->byte_size > options_.log_max_bytes) {
        break;
      }
      log_bytes_ += entry->byte_size;
      log_.push_front(std::move(entry));
    }
  }
  return absl::OkStatus();
}

WatchHub::View WatchHub::GetView() const {
  MutexLock lock(&mu_);
  View view;
  view.head = head_;
  const Revision head = head_ ? head_->revision() : 0;
  view.oldest = log_.empty() ? head + 1 : log_.front()->after + 1;
  view.reloaded_at = reloads_ > 0 ? reloaded_at_ : 0;
  return view;
}

Revision WatchHub::head_revision() const {
  MutexLock lock(&mu_);
  return head_ ? head_->revision() : 0;
}

Revision WatchHub::oldest_revision() const { return GetView().oldest; }

uint64_t WatchHub::resets(v1::ResetReason reason) const {
  return resets_[static_cast<size_t>(reason) % resets_.size()].load(std::memory_order_relaxed);
}

std::vector<int64_t> WatchHub::WatcherLags() const {
  // Lock order is Watcher::mu_ before mu_: collect the watchers, then ask
  // each one without holding mu_.
  std::vector<std::shared_ptr<Watcher>> watchers;
  Revision head = 0;
  {
    MutexLock lock(&mu_);
    head = head_ ? head_->revision() : 0;
    for (const auto& shard : shards_) watchers.insert(watchers.end(), shard.begin(), shard.end());
  }
  std::vector<int64_t> lags;
  lags.reserve(watchers.size());
  for (const auto& w : watchers) {
    const Revision scanned = w->scanned_revision();
    if (scanned < 0) continue;  // not started
    lags.push_back(std::max<int64_t>(0, head - scanned));
  }
  return lags;
}

size_t WatchHub::log_bytes() const {
  MutexLock lock(&mu_);
  return log_bytes_;
}

std::vector<std::shared_ptr<const LogRecord>> WatchHub::Records(Revision from, Revision to,
                                                                size_t max) const {
  std::vector<std::shared_ptr<const LogRecord>> out;
  MutexLock lock(&mu_);
  if (log_.empty()) return out;
  // Revisions increase along the log but may skip numbers: binary search.
  const auto it = std::lower_bound(
      log_.begin(), log_.end(), from,
      [](const std::shared_ptr<const LogRecord>& r, Revision rev) { return r->revision < rev; });
  for (size_t i = static_cast<size_t>(it - log_.begin()); i < log_.size() && out.size() < max;
       ++i) {
    if (log_[i]->revision > to) break;
    out.push_back(log_[i]);
  }
  return out;
}

absl::StatusOr<std::shared_ptr<Watcher>> WatchHub::Open(std::string peer, WatchSink* sink,
                                                        size_t shard) {
  std::string host = PeerHost(peer);
  MutexLock lock(&mu_);
  if (shutting_down_) {
    return absl::UnavailableError("the server is shutting down; reconnect and resume");
  }
  if (open_streams_.load(std::memory_order_relaxed) >= options_.max_streams) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many watch streams on this server (limit ", options_.max_streams, ")"));
  }
  int64_t& mine = per_peer_[host];
  if (mine >= options_.max_streams_per_peer) {
    if (mine == 0) per_peer_.erase(host);
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many watch streams from ", host, " (limit ", options_.max_streams_per_peer, ")"));
  }
  ++mine;
  open_streams_.fetch_add(1, std::memory_order_relaxed);
  Connection& connection = connections_[peer];
  if (!external_pumps_ && connection.streams == 0) {
    // A connection's streams share a dispatcher thread; a new connection goes
    // to the thread with the fewest streams.
    size_t best = 0;
    for (size_t i = 1; i < shards_.size(); ++i) {
      if (shards_[i].size() < shards_[best].size()) best = i;
    }
    connection.shard = best;
  }
  ++connection.streams;
  const size_t placed = external_pumps_ ? std::min(shard, shards_.size() - 1) : connection.shard;
  StartDispatchersLocked();
  auto watcher = std::make_shared<Watcher>(this, std::move(host), sink, placed, std::move(peer));
  shards_[placed].insert(watcher);
  return watcher;
}

void WatchHub::Close(const std::shared_ptr<Watcher>& watcher) {
  MutexLock lock(&mu_);
  if (shards_[watcher->shard()].erase(watcher) == 0) return;
  open_streams_.fetch_sub(1, std::memory_order_relaxed);
  if (auto c = connections_.find(watcher->connection());
      c != connections_.end() && --c->second.streams <= 0) {
    connections_.erase(c);
  }
  auto it = per_peer_.find(watcher->peer());
  if (it != per_peer_.end() && --it->second <= 0) per_peer_.erase(it);
}

size_t WatchHub::RecheckAll() {
  std::vector<std::shared_ptr<Watcher>> watchers;
  {
    MutexLock lock(&mu_);
    for (const auto& shard : shards_) watchers.insert(watchers.end(), shard.begin(), shard.end());
  }
  size_t ended = 0;
  for (const std::shared_ptr<Watcher>& w : watchers) ended += w->RunRecheck() ? 1 : 0;
  return ended;
}

void WatchHub::Shutdown() {
  std::vector<std::shared_ptr<Watcher>> watchers;
  {
    MutexLock lock(&mu_);
    shutting_down_.store(true, std::memory_order_release);
    for (const auto& shard : shards_) watchers.insert(watchers.end(), shard.begin(), shard.end());
  }
  wake_.SignalAll();
  {
    // Waits out a wake in progress; none starts after this.
    MutexLock lock(&wake_mu_);
    for (size_t i = 0; i < external_shards_; ++i) external_wake_(i);
    external_shards_ = 0;
  }
  for (const std::shared_ptr<Watcher>& w : watchers) {
    w->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                           "the server is shutting down; reconnect and resume"));
  }
  std::vector<std::thread> dispatchers;
  {
    MutexLock lock(&mu_);
    dispatchers.swap(dispatchers_);
  }
  for (std::thread& t : dispatchers) {
    if (t.get_id() == std::this_thread::get_id()) {
      t.detach();  // a dispatcher shutting the hub down ends by itself
    } else {
      t.join();
    }
  }
}

void WatchHub::DispatchLoop(size_t shard) {
  const absl::Duration tick = pump_tick();
  uint64_t seen = 0;
  std::vector<std::shared_ptr<Watcher>> batch;
  mu_.Lock();
  while (!shutting_down_) {
    if (commits_seen_ == seen) {
      wake_.WaitUntil(&mu_, std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(tick));
      if (shutting_down_) break;
    }
    seen = commits_seen_;
    batch.assign(shards_[shard].begin(), shards_[shard].end());
    mu_.Unlock();
    for (const std::shared_ptr<Watcher>& w : batch) w->Pump();
    batch.clear();
    mu_.Lock();
  }
  mu_.Unlock();
}

}  // namespace snapconf
