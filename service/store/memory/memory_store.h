// service/store/memory/memory_store.h
//
// A Store that keeps everything in memory, for unit tests of the server. It
// runs the same group-commit engine as the SQLite store (LocalStore), so
// revisions, compares, listener order and retention behave identically;
// "persisting" appends the group to an in-memory history.
//
// FailNextPersistForTest lets a test make the next group fail as the medium
// would: RESOURCE_EXHAUSTED behaves like a full disk (that group fails, the
// store stays writable); any other code behaves like an I/O error (that group
// fails with UNAVAILABLE and the store refuses every later write).
//
// Thread safety: as Store; FailNextPersistForTest may be called from any
// thread.
//
//   std::unique_ptr<MemoryStore> store = NewMemoryStore();
//   ASSERT_OK_AND_ASSIGN(SnapshotPtr head, store->Start(&listener));
//   store->FailNextPersistForTest(absl::DataLossError("disk on fire"));
#pragma once

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/store/local_store.h"

namespace snapconf {

struct MemoryStoreOptions {
  RetentionPolicy retention;
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

class MemoryStore final : public LocalStore {
 public:
  // Use NewMemoryStore.
  MemoryStore(std::unique_ptr<StoreBackend> backend, LocalStoreOptions options);

  // The next Persist() returns `status` instead of keeping the group.
  void FailNextPersistForTest(absl::Status status);
};

std::unique_ptr<MemoryStore> NewMemoryStore(MemoryStoreOptions options = {});

}  // namespace snapconf
