#include "snapshot/snapshot.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace snapconf {

using snapshot_internal::Action;
using snapshot_internal::KeyTree;
using snapshot_internal::Namespace;
using snapshot_internal::NodeRef;
using snapshot_internal::NsTree;

namespace snapshot_internal {
namespace {
std::atomic<int64_t> live_node_bytes{0};
std::atomic<int64_t> live_nodes{0};
}  // namespace

void AccountNodeBytes(int64_t bytes, int64_t nodes) {
  live_node_bytes.fetch_add(bytes, std::memory_order_relaxed);
  live_nodes.fetch_add(nodes, std::memory_order_relaxed);
}
int64_t LiveNodeBytesForTest() { return live_node_bytes.load(std::memory_order_relaxed); }
int64_t LiveNodesForTest() { return live_nodes.load(std::memory_order_relaxed); }
}  // namespace snapshot_internal

namespace {

std::atomic<int64_t> live_snapshots{0};

bool SameEntryPtr(const EntryPtr& a, const EntryPtr& b) {
  return a == b || (a != nullptr && b != nullptr && SameEntry(*a, *b));
}

// Writes of one namespace, sorted by key, one per key (the last one of the input wins).
template <typename T>
struct NsGroup {
  std::string_view ns;
  std::vector<std::string_view> keys;
  std::vector<const T*> ops;
};

// Sorts writes by (ns, key), keeps the last write of each key and groups them by namespace.
template <typename T>
std::vector<NsGroup<T>> GroupByNamespace(absl::Span<const T> writes) {
  std::vector<const T*> order;
  order.reserve(writes.size());
  for (const T& w : writes) order.push_back(&w);
  std::stable_sort(order.begin(), order.end(), [](const T* a, const T* b) {
    if (a->ns != b->ns) return a->ns < b->ns;
    return a->key < b->key;
  });
  std::vector<NsGroup<T>> groups;
  for (size_t i = 0; i < order.size(); ++i) {
    const T* w = order[i];
    if (i + 1 < order.size() && order[i + 1]->ns == w->ns && order[i + 1]->key == w->key) {
      continue;  // a later write of the same key wins
    }
    if (groups.empty() || groups.back().ns != w->ns) groups.push_back(NsGroup<T>{w->ns, {}, {}});
    groups.back().keys.push_back(w->key);
    groups.back().ops.push_back(w);
  }
  return groups;
}

// Updates the keys of every grouped namespace and returns the new namespace
// tree. `resolve_for(group, &ns_size)` returns the KeyTree resolver for that
// group's keys; it keeps ns_size current. Namespaces whose key tree comes back
// unchanged (only no-op deletes) are left alone; emptied ones are erased.
// `*total` is adjusted by every namespace's change in size.
template <typename T, typename ResolveFor>
NodeRef<Namespace> UpdateNamespaces(const NodeRef<Namespace>& ns_root,
                                    const std::vector<NsGroup<T>>& groups, ResolveFor&& resolve_for,
                                    size_t* total) {
  std::vector<std::string_view> ns_keys;
  std::vector<Namespace> ns_values;
  ns_keys.reserve(groups.size());
  ns_values.reserve(groups.size());
  for (const NsGroup<T>& g : groups) {
    const Namespace* old_ns = NsTree::Find(ns_root.get(), g.ns);
    size_t ns_size = old_ns == nullptr ? 0 : old_ns->size;
    auto resolve = resolve_for(g, &ns_size);
    NodeRef<EntryPtr> root = KeyTree::Update(old_ns == nullptr ? NodeRef<EntryPtr>() : old_ns->root,
                                             g.keys.data(), g.keys.size(), resolve);
    if (old_ns != nullptr && root.get() == old_ns->root.get()) continue;
    *total = *total - (old_ns == nullptr ? 0 : old_ns->size) + ns_size;
    ns_keys.push_back(g.ns);
    ns_values.push_back(Namespace{std::move(root), ns_size});
  }
  auto resolve_ns = [&](size_t i, const Namespace*, Namespace* result) {
    if (ns_values[i].size == 0) return Action::kErase;
    *result = std::move(ns_values[i]);
    return Action::kSet;
  };
  return NsTree::Update(ns_root, ns_keys.data(), ns_keys.size(), resolve_ns);
}

}  // namespace

bool SameEntry(const Entry& a, const Entry& b) {
  return a.create_revision == b.create_revision && a.mod_revision == b.mod_revision &&
         a.version == b.version && a.value == b.value && a.content_type == b.content_type;
}

Snapshot::Snapshot(Passkey, Revision rev, NodeRef<Namespace> ns, size_t size)
    : revision_(rev), size_(size), ns_(std::move(ns)) {
  live_snapshots.fetch_add(1, std::memory_order_relaxed);
}

Snapshot::~Snapshot() { live_snapshots.fetch_sub(1, std::memory_order_relaxed); }

int64_t Snapshot::LiveCountForTest() { return live_snapshots.load(std::memory_order_relaxed); }

SnapshotPtr Snapshot::Empty() {
  return std::make_shared<const Snapshot>(Passkey{}, 0, NodeRef<Namespace>(), 0);
}

const Namespace* Snapshot::FindNamespace(std::string_view ns) const {
  return NsTree::Find(ns_.get(), ns);
}

const Entry* Snapshot::Find(std::string_view ns, std::string_view key) const {
  const Namespace* n = FindNamespace(ns);
  if (n == nullptr) return nullptr;
  const EntryPtr* e = KeyTree::Find(n->root.get(), key);
  return e == nullptr ? nullptr : e->get();
}

EntryPtr Snapshot::FindShared(std::string_view ns, std::string_view key) const {
  const Namespace* n = FindNamespace(ns);
  if (n == nullptr) return nullptr;
  const EntryPtr* e = KeyTree::Find(n->root.get(), key);
  return e == nullptr ? nullptr : *e;
}

std::vector<std::string> Snapshot::Namespaces() const {
  std::vector<std::string> out;
  auto add = [&out](std::string_view name, const Namespace&) {
    out.emplace_back(name);
    return true;
  };
  NsTree::ForEach(ns_.get(), add);
  return out;
}

size_t Snapshot::NamespaceSize(std::string_view ns) const {
  const Namespace* n = FindNamespace(ns);
  return n == nullptr ? 0 : n->size;
}

void Snapshot::Scan(std::string_view ns, std::string_view prefix, std::string_view start_after,
                    size_t limit,
                    absl::FunctionRef<bool(std::string_view key, const EntryPtr& entry)> fn) const {
  const Namespace* n = FindNamespace(ns);
  if (n == nullptr) return;
  const bool resume = !start_after.empty() && start_after >= prefix;
  KeyTree::Cursor it(n->root.get(), resume ? start_after : prefix, resume);
  for (size_t seen = 0; it.Valid() && (limit == 0 || seen < limit); it.Next(), ++seen) {
    const std::string_view key = it.key();
    if (!key.starts_with(prefix)) break;
    if (!fn(key, it.value())) break;
  }
}

absl::StatusOr<Snapshot::Applied> Snapshot::Apply(const ChangeSet& changes, Revision rev) const {
  if (rev <= revision_) {
    return absl::InvalidArgumentError(
        absl::StrCat("revision ", rev, " does not follow snapshot revision ", revision_));
  }
  Applied out;
  const auto groups = GroupByNamespace<Mutation>(changes.mutations());
  out.changes.reserve(changes.size());
  size_t total = size_;
  auto resolve_for = [&](const NsGroup<Mutation>& g, size_t* ns_size) {
    return [&g, &out, rev, ns_size](size_t i, const EntryPtr* old, EntryPtr* result) {
      const Mutation& m = *g.ops[i];
      if (m.kind == Mutation::Kind::kDelete) {
        if (old == nullptr) return Action::kKeep;
        out.changes.push_back(EntryChange{m.ns, m.key, *old, nullptr});
        --*ns_size;
        return Action::kErase;
      }
      auto e = std::make_shared<Entry>();
      e->value = m.value;
      e->content_type = m.content_type;
      e->mod_revision = rev;
      if (old != nullptr) {
        e->create_revision = (*old)->create_revision;
        e->version = (*old)->version + 1;
      } else {
        e->create_revision = rev;
        e->version = 1;
        ++*ns_size;
      }
      *result = std::move(e);
      out.changes.push_back(EntryChange{m.ns, m.key, old == nullptr ? nullptr : *old, *result});
      return Action::kSet;
    };
  };
  NodeRef<Namespace> ns_root = UpdateNamespaces(ns_, groups, resolve_for, &total);
  out.snapshot = std::make_shared<const Snapshot>(Passkey{}, rev, std::move(ns_root), total);
  return out;
}

SnapshotPtr Snapshot::Restore(absl::Span<const RawEntry> entries, Revision rev) const {
  const auto groups = GroupByNamespace<RawEntry>(entries);
  size_t total = size_;
  auto resolve_for = [](const NsGroup<RawEntry>& g, size_t* ns_size) {
    return [&g, ns_size](size_t i, const EntryPtr* old, EntryPtr* result) {
      const EntryPtr& e = g.ops[i]->entry;
      if (e == nullptr) {
        if (old == nullptr) return Action::kKeep;
        --*ns_size;
        return Action::kErase;
      }
      if (old != nullptr && *old == e) return Action::kKeep;
      if (old == nullptr) ++*ns_size;
      *result = e;
      return Action::kSet;
    };
  };
  NodeRef<Namespace> ns_root = UpdateNamespaces(ns_, groups, resolve_for, &total);
  return std::make_shared<const Snapshot>(Passkey{}, rev, std::move(ns_root), total);
}

bool Snapshot::CheckInvariantsForTest() const {
  if (NsTree::CheckInvariantsForTest(ns_.get()) < 0) return false;
  size_t total = 0;
  bool ok = true;
  auto check = [&](std::string_view, const Namespace& n) {
    const int64_t count = KeyTree::CheckInvariantsForTest(n.root.get());
    if (count <= 0 || static_cast<size_t>(count) != n.size) ok = false;
    total += n.size;
    return ok;
  };
  NsTree::ForEach(ns_.get(), check);
  return ok && total == size_;
}

std::vector<EntryChange> Diff(const Snapshot& from, const Snapshot& to, std::string_view ns,
                              std::string_view prefix) {
  std::vector<EntryChange> out;
  auto diff_keys = [&](std::string_view name, const Namespace* a, const Namespace* b) {
    auto emit = [&](std::string_view key, const EntryPtr* before, const EntryPtr* after) {
      out.push_back(EntryChange{std::string(name), std::string(key),
                                before == nullptr ? nullptr : *before,
                                after == nullptr ? nullptr : *after});
    };
    KeyTree::Diff(a == nullptr ? nullptr : a->root.get(), b == nullptr ? nullptr : b->root.get(),
                  prefix, SameEntryPtr, emit);
  };
  if (!ns.empty()) {
    diff_keys(ns, from.FindNamespace(ns), to.FindNamespace(ns));
    return out;
  }
  auto same_ns = [](const Namespace& a, const Namespace& b) {
    return a.root.get() == b.root.get();
  };
  NsTree::Diff(from.ns_.get(), to.ns_.get(), {}, same_ns, diff_keys);
  return out;
}

void SnapshotBuilder::Add(std::string ns, std::string key, EntryPtr entry) {
  if (entry == nullptr) return;
  rows_.push_back(Row{std::move(ns), std::move(key), std::move(entry)});
}

SnapshotPtr SnapshotBuilder::Build(Revision rev) && {
  auto less = [](const Row& a, const Row& b) {
    const int c = a.ns.compare(b.ns);
    return c < 0 || (c == 0 && a.key < b.key);
  };
  // Rows usually arrive sorted (ORDER BY ns, key): then this is one pass. Otherwise sort
  // indices, not rows, so the sort moves 4-byte values; the index breaks ties so that the
  // later of two duplicates sorts last and wins.
  std::vector<uint32_t> order;
  if (!std::is_sorted(rows_.begin(), rows_.end(), less)) {
    order.resize(rows_.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      const int c = rows_[a].ns.compare(rows_[b].ns);
      if (c != 0) return c < 0;
      const int k = rows_[a].key.compare(rows_[b].key);
      return k < 0 || (k == 0 && a < b);
    });
  }
  const auto row = [&](size_t i) -> Row& { return order.empty() ? rows_[i] : rows_[order[i]]; };
  std::vector<NsTree::Item> namespaces;
  std::vector<KeyTree::Item> items;
  size_t total = 0;
  for (size_t i = 0; i < rows_.size();) {
    const std::string_view ns = row(i).ns;
    items.clear();
    for (; i < rows_.size() && row(i).ns == ns; ++i) {
      Row& r = row(i);
      if (i + 1 < rows_.size() && row(i + 1).key == r.key && row(i + 1).ns == r.ns) continue;
      items.push_back(
          KeyTree::Item{r.key, snapshot_internal::Fingerprint(r.key), std::move(r.entry)});
    }
    total += items.size();
    const size_t n = items.size();
    namespaces.push_back(
        NsTree::Item{ns, snapshot_internal::Fingerprint(ns), Namespace{KeyTree::Build(items), n}});
  }
  NodeRef<Namespace> root = NsTree::Build(namespaces);
  namespaces.clear();
  rows_.clear();
  return std::make_shared<const Snapshot>(Snapshot::Passkey{}, rev, std::move(root), total);
}

}  // namespace snapconf
