#include "snapshot/publisher.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "absl/container/flat_hash_set.h"

namespace snapconf {

using snapshot_internal::HazardListHead;
using snapshot_internal::HazardRecord;
using snapshot_internal::kHazardSlots;

Publisher::Publisher(SnapshotPtr initial) {
  assert(initial != nullptr);
  // Decide membarrier vs fences before any reader can see this publisher.
  snapshot_internal::InitReclamation();
  MutexLock lock(&mu_);
  revision_.store(initial->revision(), std::memory_order_relaxed);
  current_.store(initial.get(), std::memory_order_release);
  owner_ = std::move(initial);
}

Publisher::~Publisher() {
  // No Read may run any more (contract), so everything can go.
  MutexLock lock(&mu_);
  current_.store(nullptr, std::memory_order_relaxed);
  retired_.clear();
  owner_.reset();
}

void Publisher::Publish(SnapshotPtr next) {
  assert(next != nullptr);
  std::vector<SnapshotPtr> dead;
  {
    MutexLock lock(&mu_);
    current_.store(next.get(), std::memory_order_seq_cst);
    revision_.store(next->revision(), std::memory_order_release);
    retired_.push_back(std::exchange(owner_, std::move(next)));
    CollectLocked(dead);
  }
  // Destroying a snapshot frees the nodes only it held: keep that out of the mutex.
}

size_t Publisher::Reclaim() {
  std::vector<SnapshotPtr> dead;
  MutexLock lock(&mu_);
  if (!retired_.empty()) CollectLocked(dead);
  return retired_.size();
  // `dead` is destroyed after the lock is released (declared before it).
}

void Publisher::CollectLocked(std::vector<SnapshotPtr>& dead) {
  snapshot_internal::WriterBarrier();
  absl::flat_hash_set<const void*> in_use;
  for (HazardRecord* r = HazardListHead(); r != nullptr; r = r->next) {
    for (int i = 0; i < kHazardSlots; ++i) {
#ifdef SNAPCONF_TSAN
      const void* p = r->slots[i].load(std::memory_order_seq_cst);
#else
      const void* p = r->slots[i].load(std::memory_order_acquire);
#endif
      if (p != nullptr) in_use.insert(p);
    }
  }
  auto keep = std::partition(retired_.begin(), retired_.end(),
                             [&](const SnapshotPtr& s) { return in_use.contains(s.get()); });
  dead.insert(dead.end(), std::make_move_iterator(keep), std::make_move_iterator(retired_.end()));
  retired_.erase(keep, retired_.end());
}

SnapshotPtr Publisher::Pin() const {
  return Read([](const Snapshot& s) { return s.shared_from_this(); });
}

SnapshotPtr Publisher::PinSlow() const {
  MutexLock lock(&mu_);
  return owner_;
}

size_t Publisher::RetiredCountForTest() const {
  MutexLock lock(&mu_);
  return retired_.size();
}

}  // namespace snapconf
