// tests/reliability/power_loss_vfs.h
//
// A SQLite VFS for power-loss tests. It forwards to the default (unix) VFS and
// remembers, for every file opened through it, the contents it had at its last
// sync: the bytes that would survive a power cut. Writes, truncations and syncs
// are numbered 1, 2, 3, ...; when armed with N, operation N and every write,
// truncation, sync and delete after it fail (the power is gone, nothing more
// reaches the disk). SimulatePowerLoss() then makes the files what a disk would
// hold after the cut: each file is reset to its last-synced contents, a file
// created but never synced disappears, and the contents of files never synced
// since they were opened stay as they were found.
//
// Modelled: unsynced data lost (main database, WAL and journals alike), size
// changes unsynced, file creation durable only with the file's first sync
// (SQLite's unix VFS syncs the directory on a WAL's or journal's first sync),
// deletions durable at once (SQLite asks for a directory sync on journal
// deletes). Not modelled: torn or reordered writes within one sync interval,
// lying disks. The -shm file is not touched: SQLite rebuilds it from the WAL
// when the first connection opens the database.
//
// Physical fsync is skipped: durability is what this VFS records, so a test
// that crashes hundreds of times runs in seconds.
//
// Thread safety: every method may be called from any thread. One test at a
// time may use the VFS (it is process-wide, like every SQLite VFS).
//
//   PowerLossVfs& vfs = PowerLossVfs::Get();   // registers "snapconf-powerloss"
//   vfs.Reset();
//   vfs.Arm(17);
//   ... open a store with options.vfs_for_test = PowerLossVfs::kName, write ...
//   ... close it (writes fail once operation 17 has happened) ...
//   vfs.SimulatePowerLoss();
//   ... reopen with the default VFS and check what survived ...
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "common/mutex.h"

namespace snapconf::testing {

class PowerLossVfs {
 public:
  static constexpr char kName[] = "snapconf-powerloss";

  // Registers the VFS on first use (not as the default).
  static PowerLossVfs& Get();

  // Forgets every file and disarms; the operation count restarts at 0.
  void Reset();
  // Power fails at operation `n` (1-based); 0: never.
  void Arm(int64_t n);
  // Writes, truncations and syncs issued so far (including the failed one).
  int64_t operations() const { return ops_.load(); }
  // True once the armed operation was reached.
  bool power_failed() const { return failed_.load(); }

  // Rewrites every tracked file to what survives the cut (see the banner).
  // Call only when no connection has the files open.
  absl::Status SimulatePowerLoss();

  // Internal to the VFS callbacks.
  struct Tracked {
    bool durable_exists = false;
    std::string durable;  // contents at the last sync
  };
  // Counts one operation; false when the power is (now) off.
  bool Operate();
  bool failed() const { return failed_.load(); }
  void OnOpen(const std::string& path);
  void OnSync(const std::string& path, std::string contents);
  void OnDelete(const std::string& path);

 private:
  PowerLossVfs() = default;

  std::atomic<int64_t> ops_{0};
  std::atomic<int64_t> armed_at_{0};
  std::atomic<bool> failed_{false};
  Mutex mu_;
  std::map<std::string, Tracked> files_ ABSL_GUARDED_BY(mu_);
};

}  // namespace snapconf::testing
