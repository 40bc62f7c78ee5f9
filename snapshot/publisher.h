// snapshot/publisher.h
//
// Publisher holds the current Snapshot and hands it to any number of readers without locks.
// One writer at a time calls Publish() (callers serialize); readers on any thread - including
// threads we did not create, such as gRPC's - call Read(), which runs a function against the
// current snapshot, or Pin(), which returns a counted reference for longer, multi-key reads.
//
//   Publisher publisher(Snapshot::Empty());
//   publisher.Publish(applied.snapshot);                       // writer
//   std::string v = publisher.Read([&](const Snapshot& s) {    // any thread
//     const Entry* e = s.Find("payments/prod", "db.pool.max");
//     return e == nullptr ? std::string() : e->value;
//   });
//   SnapshotPtr pinned = publisher.Pin();                      // consistent multi-key reads
//
// Thread-safety contract
//   * Read, Pin and revision may be called concurrently from any threads, also nested (a Read
//     inside a Read, of this or another Publisher, up to 4 deep lock-free; deeper nesting still
//     works through a pin). `fn` must not call Publish or Reclaim of the same Publisher.
//   * Publish and Reclaim may be called from any thread; they serialize on an internal mutex
//     that readers never take.
//   * The Publisher must outlive every Read/Pin call on it (pins themselves may outlive it).
//
// Read fast path (asymmetric hazard pointers). Each reading thread owns a hazard record (one
// cache line, registered lazily on first Read, returned to a global pool when the thread exits).
//   reader:  s = current_.load(acquire)
//            loop { slot = s (relaxed); compiler-only fence; t = current_.load(acquire);
//                   if t == s break; s = t }
//            fn(*s); slot = nullptr (release)
//   writer:  current_.store(next); retire old; membarrier(PRIVATE_EXPEDITED);
//            scan all slots (acquire); free every retired snapshot found in no slot.
// No mutex, no read-modify-write, no reference-count change and no store to a line another
// thread writes: the reader costs two loads of current_ and a few plain stores to its own
// record's cache line.
//
// Why it is safe. membarrier() makes every thread of the process that is running execute a
// full memory barrier before the call returns (threads not running are at a barrier already,
// the context switch). So for a reader that stored `slot = s` and then re-loaded current_:
// either its slot store is globally visible before the writer's scan (the writer sees s and
// keeps it), or its re-load is ordered after the membarrier and so after the writer's swap, in
// which case it sees a newer pointer and retries without ever touching s. A reader therefore
// only dereferences a snapshot that was current after its slot became visible, and the writer
// frees a retired snapshot only after a scan that happened after the swap and found it in no
// slot; the reader's release-store clearing the slot pairs with the scan's acquire load, so all
// the reader's accesses happen before the free. ABA is harmless: validation checks that the
// pointer *is current* after it was protected, whatever object earlier lived at that address.
// If membarrier(PRIVATE_EXPEDITED) is unavailable (old kernel, seccomp), decided once per
// process, readers issue a seq_cst fence after the slot store and the writer a seq_cst fence
// before the scan (the classic symmetric scheme: one full fence more per Read). Under
// ThreadSanitizer (SNAPCONF_TSAN) the slot store and the re-load are seq_cst atomics, which TSan
// models, instead of membarrier, which it does not.
//
// Memory bound. Slots are cleared at the end of every Read, so an idle thread never keeps a
// snapshot alive. A retired snapshot outlives Publish only while some Read that started before
// the swap is still running: at most one retired snapshot per in-flight Read (per nested
// level), plus whatever Pin()s hold by reference count. Snapshots found protected are retried on
// the next Publish and by Reclaim(), which an owner may call periodically (cheap when nothing is
// retired). Retired snapshots are destroyed on the thread calling Publish/Reclaim, outside the
// mutex.
#pragma once

#include <atomic>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "common/mutex.h"
#include "snapshot/internal/hazard.h"
#include "snapshot/snapshot.h"

namespace snapconf {

class Publisher {
 public:
  explicit Publisher(SnapshotPtr initial);
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;
  Publisher(Publisher&&) = delete;
  Publisher& operator=(Publisher&&) = delete;

  // Writer: makes `next` (non-null) current and retires the old one.
  void Publish(SnapshotPtr next);

  // Frees retired snapshots that no Read protects any more. Returns how many stay retired.
  size_t Reclaim();

  // Reader fast path: runs fn(const Snapshot&) against the current snapshot and returns its
  // result. The snapshot stays alive while fn runs; do not keep references into it afterwards
  // (use Pin() for that).
  template <typename F>
  decltype(auto) Read(F&& fn) const;

  // Pins the current snapshot (reference count) for consistent multi-key reads over a longer
  // time.
  SnapshotPtr Pin() const;

  // Revision of the current snapshot, lock-free.
  Revision revision() const { return revision_.load(std::memory_order_acquire); }

  // Test hooks.
  size_t RetiredCountForTest() const;
  static bool UsesMembarrierForTest() { return snapshot_internal::UsesMembarrier(); }

 private:
  // Clears the hazard slot when a Read ends, whatever fn returns.
  struct SlotGuard {
    snapshot_internal::HazardRecord* rec;
    int slot;
    ~SlotGuard() {
      rec->slots[slot].store(nullptr, std::memory_order_release);
      rec->depth = slot;
    }
  };

  // Publishes `s` in hazard slot `slot` and returns it once it is validated as current.
  const Snapshot* Protect(std::atomic<const void*>& slot) const {
    const Snapshot* s = current_.load(std::memory_order_acquire);
    while (true) {
#ifdef SNAPCONF_TSAN
      slot.store(s, std::memory_order_seq_cst);
      const Snapshot* again = current_.load(std::memory_order_seq_cst);
#else
      slot.store(s, std::memory_order_relaxed);
      if (ABSL_PREDICT_FALSE(
              snapshot_internal::reader_needs_fence.load(std::memory_order_relaxed))) {
        std::atomic_thread_fence(std::memory_order_seq_cst);
      } else {
        std::atomic_signal_fence(std::memory_order_seq_cst);  // compiler-only
      }
      const Snapshot* again = current_.load(std::memory_order_acquire);
#endif
      if (ABSL_PREDICT_TRUE(again == s)) return s;
      s = again;
    }
  }

  SnapshotPtr PinSlow() const;
  // Moves retired snapshots no slot protects into `dead`; mu_ held.
  void CollectLocked(std::vector<SnapshotPtr>& dead) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Read by every reader, written only by Publish: its own line, apart from writer state.
  alignas(64) std::atomic<const Snapshot*> current_;
  std::atomic<Revision> revision_;

  alignas(64) mutable Mutex mu_;
  SnapshotPtr owner_ ABSL_GUARDED_BY(mu_);  // keeps current_ alive
  std::vector<SnapshotPtr> retired_ ABSL_GUARDED_BY(mu_);
};

template <typename F>
decltype(auto) Publisher::Read(F&& fn) const {
  snapshot_internal::HazardRecord* rec = snapshot_internal::ThisThreadHazardRecord();
  const int slot = rec->depth;
  if (ABSL_PREDICT_FALSE(slot >= snapshot_internal::kHazardSlots)) {
    const SnapshotPtr pinned = PinSlow();
    return std::forward<F>(fn)(static_cast<const Snapshot&>(*pinned));
  }
  rec->depth = slot + 1;
  SlotGuard guard{rec, slot};
  const Snapshot* s = Protect(rec->slots[slot]);
  return std::forward<F>(fn)(*s);
}

}  // namespace snapconf
