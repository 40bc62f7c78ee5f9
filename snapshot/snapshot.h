// snapshot/snapshot.h
//
// A Snapshot is the complete, immutable state of every namespace at one revision. Every read
// of the server is answered from exactly one Snapshot. A new revision is made with Apply (a
// committed ChangeSet) or Restore (exact entries), which return a *new* Snapshot sharing all
// unchanged structure with the old one; the old one is never modified.
//
// Thread-safety: a Snapshot is immutable after construction; every const method may be called
// from any number of threads at once without synchronization. Snapshots live only behind
// SnapshotPtr (shared ownership); Entry objects are shared between snapshots and immutable.
// A `const Entry*` from Find stays valid while the Snapshot it came from is alive.
//
// Structure (docs/adr/001-snapshot-structure.md): a persistent B+tree of namespaces whose
// values are persistent B+trees of keys (fan-out 32; keys inline in
// exact-size nodes; one-byte fingerprints in leaves). A one-key Apply copies one root-to-leaf path
// per touched tree: O(log n) nodes, never the map. Diff skips subtrees the two snapshots share by
// pointer.
//
// Invariants: revision() never decreases along a lineage; Namespaces() lists only non-empty
// namespaces; for every entry Apply creates, 1 <= version and create_revision <= mod_revision
// <= revision().
//
//   SnapshotPtr s0 = Snapshot::Empty();
//   ChangeSet changes;
//   changes.Put("payments/prod", "db.pool.max", "32");
//   ASSIGN_OR_RETURN(Snapshot::Applied applied, s0->Apply(changes, 1));
//   if (const Entry* e = applied.snapshot->Find("payments/prod", "db.pool.max")) Use(e->value);
//   applied.snapshot->Scan("payments/prod", "db.", "", 100,
//                          [](std::string_view key, const EntryPtr& e) { return true; });
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "snapshot/change_set.h"
#include "snapshot/internal/btree.h"

namespace snapconf {

using Revision = int64_t;

// One stored value. Immutable once published; shared between snapshots.
struct Entry {
  std::string value;         // arbitrary bytes
  std::string content_type;  // "" / "text/plain" / "application/json" ...
  Revision create_revision = 0;
  Revision mod_revision = 0;
  int64_t version = 0;  // 1 on create, +1 per modification
};
using EntryPtr = std::shared_ptr<const Entry>;

// Same value, content type, revisions and version.
bool SameEntry(const Entry& a, const Entry& b);

// What happened to one key between two snapshots (or in one Apply).
struct EntryChange {
  std::string ns, key;
  EntryPtr before;  // null: key did not exist
  EntryPtr after;   // null: key was deleted
};

// An exact entry to install (load from a store / restore an old state).
struct RawEntry {
  std::string ns, key;
  EntryPtr entry;  // null = remove
};

class Snapshot;
using SnapshotPtr = std::shared_ptr<const Snapshot>;

namespace snapshot_internal {
// The value of the namespace tree: one key tree and its size.
struct Namespace {
  NodeRef<EntryPtr> root;
  size_t size = 0;
};
using KeyTree = Tree<EntryPtr>;
using NsTree = Tree<Namespace>;
}  // namespace snapshot_internal

class Snapshot : public std::enable_shared_from_this<Snapshot> {
  struct Passkey {};

 public:
  // Revision 0, no entries. Each call returns a new object.
  static SnapshotPtr Empty();

  Revision revision() const { return revision_; }
  size_t size() const { return size_; }  // total keys

  // nullptr if absent; valid while *this lives.
  const Entry* Find(std::string_view ns, std::string_view key) const;
  EntryPtr FindShared(std::string_view ns, std::string_view key) const;

  std::vector<std::string> Namespaces() const;  // sorted, only non-empty namespaces
  size_t NamespaceSize(std::string_view ns) const;

  // Ordered scan of `ns` over keys starting with `prefix`, strictly after `start_after` if
  // non-empty (the resume point of a paginated List), at most `limit` entries (0 = unlimited).
  // Cost O(log n + results). The callback returns false to stop early.
  void Scan(std::string_view ns, std::string_view prefix, std::string_view start_after,
            size_t limit,
            absl::FunctionRef<bool(std::string_view key, const EntryPtr& entry)> fn) const;

  struct Applied {
    SnapshotPtr snapshot;
    std::vector<EntryChange> changes;  // sorted by (ns, key)
  };
  // Applies `changes` and returns snapshot `rev` (must be > revision(), else InvalidArgument).
  // Puts create (version 1, create_revision = mod_revision = rev) or update (version + 1, keeps
  // create_revision). Deleting an absent key is a no-op (not in `changes`). Later mutations of
  // the same key in one set win. *this is left untouched; structure is shared.
  absl::StatusOr<Applied> Apply(const ChangeSet& changes, Revision rev) const;

  // Installs entries exactly as given (entry == nullptr removes; later duplicates win) and
  // labels the result `rev`. `rev` may be lower than revision(): undoing the changes after R
  // (their before-images) rebuilds the state at R from a newer snapshot.
  SnapshotPtr Restore(absl::Span<const RawEntry> entries, Revision rev) const;

  // Test hooks: Snapshot objects alive in the process; structural self-check (true if every
  // tree is a valid B+tree and the sizes add up).
  static int64_t LiveCountForTest();
  bool CheckInvariantsForTest() const;

  Snapshot(Passkey, Revision rev, snapshot_internal::NodeRef<snapshot_internal::Namespace> ns,
           size_t size);
  ~Snapshot();
  Snapshot(const Snapshot&) = delete;
  Snapshot& operator=(const Snapshot&) = delete;

 private:
  friend class SnapshotBuilder;
  friend std::vector<EntryChange> Diff(const Snapshot& from, const Snapshot& to,
                                       std::string_view ns, std::string_view prefix);

  const snapshot_internal::Namespace* FindNamespace(std::string_view ns) const;

  Revision revision_;
  size_t size_;
  snapshot_internal::NodeRef<snapshot_internal::Namespace> ns_;
};

// Changed entries between two snapshots of the same lineage, sorted by (ns, key), in time
// proportional to the difference (shared subtrees skipped by pointer identity), optionally
// restricted to one namespace and key prefix (empty ns = all namespaces). Entries that differ
// by pointer but not by content (SameEntry) are not reported.
std::vector<EntryChange> Diff(const Snapshot& from, const Snapshot& to, std::string_view ns = {},
                              std::string_view prefix = {});

// Builds a snapshot from many entries in any order in O(n log n) (O(n) if already sorted),
// filling nodes completely: the start-up path that loads 100k-1M keys from the store. Not
// thread-safe; use from one thread.
//
//   SnapshotBuilder builder;
//   builder.Reserve(rows);
//   while (row = Next()) builder.Add(row.ns, row.key, std::make_shared<const Entry>(...));
//   SnapshotPtr snapshot = std::move(builder).Build(store_revision);
class SnapshotBuilder {
 public:
  SnapshotBuilder() = default;
  SnapshotBuilder(const SnapshotBuilder&) = delete;
  SnapshotBuilder& operator=(const SnapshotBuilder&) = delete;

  void Reserve(size_t n) { rows_.reserve(n); }
  // A later Add of the same (ns, key) replaces the earlier one; a null entry is ignored.
  void Add(std::string ns, std::string key, EntryPtr entry);
  size_t size() const { return rows_.size(); }

  // Consumes the builder.
  SnapshotPtr Build(Revision rev) &&;

 private:
  struct Row {
    std::string ns, key;
    EntryPtr entry;
  };
  std::vector<Row> rows_;
};

}  // namespace snapconf
