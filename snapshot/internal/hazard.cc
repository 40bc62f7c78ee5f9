#include "snapshot/internal/hazard.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace snapconf::snapshot_internal {

thread_local constinit HazardRecord* tls_hazard_record = nullptr;
std::atomic<bool> reader_needs_fence{true};

namespace {

std::atomic<HazardRecord*> hazard_list{nullptr};
bool use_membarrier = false;  // written once inside call_once

// Returns the thread's record to the pool when the thread exits. Kept apart from
// tls_hazard_record so the fast path reads a trivially destructible thread_local.
struct RecordReturner {
  HazardRecord* rec = nullptr;
  ~RecordReturner() {
    if (rec == nullptr) return;
    for (auto& slot : rec->slots) slot.store(nullptr, std::memory_order_release);
    rec->depth = 0;
    tls_hazard_record = nullptr;
    rec->in_use.store(false, std::memory_order_release);
  }
};
thread_local RecordReturner record_returner;

long Membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }

}  // namespace

HazardRecord* HazardListHead() { return hazard_list.load(std::memory_order_acquire); }

HazardRecord* RegisterThisThread() {
  HazardRecord* rec = nullptr;
  for (HazardRecord* r = HazardListHead(); r != nullptr; r = r->next) {
    bool expected = false;
    if (!r->in_use.load(std::memory_order_relaxed) &&
        r->in_use.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
      rec = r;
      break;
    }
  }
  if (rec == nullptr) {
    rec = new HazardRecord;  // never freed: records are reused by later threads
    rec->in_use.store(true, std::memory_order_relaxed);
    HazardRecord* head = hazard_list.load(std::memory_order_relaxed);
    do {
      rec->next = head;
    } while (!hazard_list.compare_exchange_weak(head, rec, std::memory_order_release,
                                                std::memory_order_relaxed));
  }
  rec->depth = 0;
  record_returner.rec = rec;
  tls_hazard_record = rec;
  return rec;
}

void InitReclamation() {
  static std::once_flag once;
  std::call_once(once, [] {
#ifdef SNAPCONF_TSAN
    // ThreadSanitizer does not model membarrier: readers use seq_cst atomics instead.
    use_membarrier = false;
#else
    const long supported = Membarrier(MEMBARRIER_CMD_QUERY);
    use_membarrier = supported > 0 && (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
                     Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
#endif
    reader_needs_fence.store(!use_membarrier, std::memory_order_release);
  });
}

bool UsesMembarrier() {
  InitReclamation();
  return use_membarrier;
}

void WriterBarrier() {
  if (use_membarrier) {
    // Cannot fail once registered; if it ever did, a fence alone would be unsound, so stop.
    if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) std::terminate();
  } else {
#ifndef SNAPCONF_TSAN
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    // Under TSan the slot stores, the swap and the scan are all seq_cst atomics: their single
    // total order gives the same guarantee, in a form TSan understands.
  }
}

}  // namespace snapconf::snapshot_internal
