// snapshot/internal/hazard.h
//
// Per-thread hazard-pointer records for Publisher (see snapshot/publisher.h for the protocol
// and the argument why it is safe). Not part of the public API.
//
// Thread-safety: a record is owned by at most one thread at a time. Only the owner writes its
// slots and depth; any thread may read the slots (the reclaiming writer). Records live on a
// global, append-only, lock-free list and are never freed: a thread that exits hands its record
// back (thread_local destructor) and the next thread that registers reuses it, so the list is
// as long as the largest number of threads that ever read at the same time.
//
//   HazardRecord* rec = ThisThreadHazardRecord();  // lazily registers this thread
//   rec->slots[rec->depth].store(ptr, std::memory_order_relaxed);
#pragma once

#include <atomic>

#include "absl/base/optimization.h"

namespace snapconf::snapshot_internal {

// Hazard slots per thread: one per nested Read (Read of one publisher inside a Read of another,
// or of the same one). Deeper nesting falls back to a pinned reference.
inline constexpr int kHazardSlots = 4;

// One cache line per record, so a reader only ever writes to a line no other reader writes.
struct alignas(64) HazardRecord {
  std::atomic<const void*> slots[kHazardSlots] = {};
  int depth = 0;  // slots in use by the owner; touched only by the owner
  std::atomic<bool> in_use{false};
  HazardRecord* next = nullptr;  // immutable once the record is on the list
};
static_assert(sizeof(HazardRecord) == 64);

// The calling thread's record; null until its first Read. A trivially destructible
// thread_local, so reading it costs one TLS load (no init guard).
extern thread_local constinit HazardRecord* tls_hazard_record;

// Slow path: takes a free record from the list (or appends one) and arranges its return when
// the thread exits.
HazardRecord* RegisterThisThread();

inline HazardRecord* ThisThreadHazardRecord() {
  HazardRecord* rec = tls_hazard_record;
  if (ABSL_PREDICT_FALSE(rec == nullptr)) rec = RegisterThisThread();
  return rec;
}

// Head of the list of all records.
HazardRecord* HazardListHead();

// True when membarrier(PRIVATE_EXPEDITED) is unavailable and readers must issue a full fence
// after publishing their hazard slot. Decided once, by InitReclamation(), before any
// Publisher exists; read-only afterwards.
extern std::atomic<bool> reader_needs_fence;

// Decides the scheme once per process (idempotent, thread-safe).
void InitReclamation();

// Writer side: after swapping the current pointer and before scanning the slots, makes every
// reader's earlier slot store visible (membarrier on all running threads of the process, or a
// full fence pairing with the readers' fences).
void WriterBarrier();

// Whether the membarrier scheme is in use (for the ADR / benchmark labels).
bool UsesMembarrier();

}  // namespace snapconf::snapshot_internal
