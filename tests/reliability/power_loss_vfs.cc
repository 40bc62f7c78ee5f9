// tests/reliability/power_loss_vfs.cc
#include "tests/reliability/power_loss_vfs.h"

#include <sqlite3.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <new>

#include "absl/strings/str_cat.h"

namespace snapconf::testing {
namespace {

// Our file object: the base SQLite expects, then the default VFS's file
// object in the same allocation (szOsFile covers both).
struct File {
  sqlite3_file base;
  sqlite3_file* real;
  std::string* path;  // null for temporary files (not tracked)
};

sqlite3_vfs* RealVfs() { return static_cast<sqlite3_vfs*>(sqlite3_vfs_find(nullptr)); }
PowerLossVfs& Vfs() { return PowerLossVfs::Get(); }
sqlite3_file* Real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

std::string ReadWhole(sqlite3_file* real) {
  sqlite3_int64 size = 0;
  if (real->pMethods->xFileSize(real, &size) != SQLITE_OK || size <= 0) return std::string();
  std::string out(static_cast<size_t>(size), '\0');
  if (real->pMethods->xRead(real, out.data(), static_cast<int>(size), 0) != SQLITE_OK) {
    std::abort();  // a test VFS that cannot read back its own file is broken
  }
  return out;
}

int Close(sqlite3_file* f) {
  File* file = reinterpret_cast<File*>(f);
  const int rc = file->real->pMethods->xClose(file->real);
  delete file->path;
  file->path = nullptr;
  return rc;
}
int Read(sqlite3_file* f, void* buf, int n, sqlite3_int64 off) {
  return Real(f)->pMethods->xRead(Real(f), buf, n, off);
}
int Write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 off) {
  if (!Vfs().Operate()) return SQLITE_IOERR_WRITE;
  return Real(f)->pMethods->xWrite(Real(f), buf, n, off);
}
int Truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (!Vfs().Operate()) return SQLITE_IOERR_TRUNCATE;
  return Real(f)->pMethods->xTruncate(Real(f), size);
}
int Sync(sqlite3_file* f, int flags) {
  if (!Vfs().Operate()) return SQLITE_IOERR_FSYNC;
  File* file = reinterpret_cast<File*>(f);
  if (file->path != nullptr) Vfs().OnSync(*file->path, ReadWhole(file->real));
  return SQLITE_OK;
}
int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  return Real(f)->pMethods->xFileSize(Real(f), size);
}
int Lock(sqlite3_file* f, int level) { return Real(f)->pMethods->xLock(Real(f), level); }
int Unlock(sqlite3_file* f, int level) { return Real(f)->pMethods->xUnlock(Real(f), level); }
int CheckReservedLock(sqlite3_file* f, int* out) {
  return Real(f)->pMethods->xCheckReservedLock(Real(f), out);
}
int FileControl(sqlite3_file* f, int op, void* arg) {
  return Real(f)->pMethods->xFileControl(Real(f), op, arg);
}
int SectorSize(sqlite3_file* f) { return Real(f)->pMethods->xSectorSize(Real(f)); }
int DeviceCharacteristics(sqlite3_file* f) {
  return Real(f)->pMethods->xDeviceCharacteristics(Real(f));
}
int ShmMap(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return Real(f)->pMethods->xShmMap(Real(f), region, size, extend, out);
}
int ShmLock(sqlite3_file* f, int offset, int n, int flags) {
  return Real(f)->pMethods->xShmLock(Real(f), offset, n, flags);
}
void ShmBarrier(sqlite3_file* f) { Real(f)->pMethods->xShmBarrier(Real(f)); }
int ShmUnmap(sqlite3_file* f, int delete_flag) {
  return Real(f)->pMethods->xShmUnmap(Real(f), delete_flag);
}
int Fetch(sqlite3_file* f, sqlite3_int64 off, int amount, void** out) {
  // No memory-mapped I/O: every page goes through Read/Write, where it is seen.
  *out = nullptr;
  return SQLITE_OK;
}
int Unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) { return SQLITE_OK; }

const sqlite3_io_methods kMethods = {
    3,
    Close,
    Read,
    Write,
    Truncate,
    Sync,
    FileSize,
    Lock,
    Unlock,
    CheckReservedLock,
    FileControl,
    SectorSize,
    DeviceCharacteristics,
    ShmMap,
    ShmLock,
    ShmBarrier,
    ShmUnmap,
    Fetch,
    Unfetch,
};

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  File* file = reinterpret_cast<File*>(f);
  file->base.pMethods = nullptr;
  file->real = reinterpret_cast<sqlite3_file*>(file + 1);
  file->path = nullptr;
  if (name != nullptr) {
    file->path = new std::string(name);
    Vfs().OnOpen(*file->path);
  }
  const int rc = RealVfs()->xOpen(RealVfs(), name, file->real, flags, out_flags);
  if (rc != SQLITE_OK) {
    delete file->path;
    file->path = nullptr;
    return rc;
  }
  file->base.pMethods = &kMethods;
  return SQLITE_OK;
}
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  if (Vfs().failed()) return SQLITE_IOERR_DELETE;
  const int rc = RealVfs()->xDelete(RealVfs(), name, sync_dir);
  if (rc == SQLITE_OK) Vfs().OnDelete(name);
  return rc;
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return RealVfs()->xAccess(RealVfs(), name, flags, out);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  return RealVfs()->xFullPathname(RealVfs(), name, n, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* name) { return RealVfs()->xDlOpen(RealVfs(), name); }
void DlError(sqlite3_vfs* vfs, int n, char* out) { RealVfs()->xDlError(RealVfs(), n, out); }
void (*DlSym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  return RealVfs()->xDlSym(RealVfs(), handle, symbol);
}
void DlClose(sqlite3_vfs* vfs, void* handle) { RealVfs()->xDlClose(RealVfs(), handle); }
int Randomness(sqlite3_vfs* vfs, int n, char* out) {
  return RealVfs()->xRandomness(RealVfs(), n, out);
}
int Sleep(sqlite3_vfs* vfs, int micros) { return RealVfs()->xSleep(RealVfs(), micros); }
int CurrentTime(sqlite3_vfs* vfs, double* out) { return RealVfs()->xCurrentTime(RealVfs(), out); }
int GetLastError(sqlite3_vfs* vfs, int n, char* out) {
  return RealVfs()->xGetLastError(RealVfs(), n, out);
}
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return RealVfs()->xCurrentTimeInt64(RealVfs(), out);
}

}  // namespace

PowerLossVfs& PowerLossVfs::Get() {
  static PowerLossVfs* instance = [] {
    sqlite3_initialize();
    static sqlite3_vfs vfs;
    std::memset(&vfs, 0, sizeof(vfs));
    vfs.iVersion = 2;
    vfs.szOsFile = static_cast<int>(sizeof(File)) + RealVfs()->szOsFile;
    vfs.mxPathname = RealVfs()->mxPathname;
    vfs.zName = kName;
    vfs.xOpen = Open;
    vfs.xDelete = Delete;
    vfs.xAccess = Access;
    vfs.xFullPathname = FullPathname;
    vfs.xDlOpen = DlOpen;
    vfs.xDlError = DlError;
    vfs.xDlSym = DlSym;
    vfs.xDlClose = DlClose;
    vfs.xRandomness = Randomness;
    vfs.xSleep = Sleep;
    vfs.xCurrentTime = CurrentTime;
    vfs.xGetLastError = GetLastError;
    vfs.xCurrentTimeInt64 = CurrentTimeInt64;
    if (sqlite3_vfs_register(&vfs, /*makeDflt=*/0) != SQLITE_OK) std::abort();
    return new PowerLossVfs();
  }();
  return *instance;
}

void PowerLossVfs::Reset() {
  MutexLock lock(&mu_);
  files_.clear();
  ops_ = 0;
  armed_at_ = 0;
  failed_ = false;
}

void PowerLossVfs::Arm(int64_t n) { armed_at_ = n; }

bool PowerLossVfs::Operate() {
  const int64_t op = ++ops_;
  const int64_t armed = armed_at_.load();
  if (armed != 0 && op >= armed) failed_ = true;
  return !failed_.load();
}

void PowerLossVfs::OnOpen(const std::string& path) {
  MutexLock lock(&mu_);
  if (files_.count(path) != 0) return;
  // First sight of the file: what is on disk now is what a cut would leave.
  Tracked& t = files_[path];
  std::ifstream in(path, std::ios::binary);
  if (in) {
    t.durable_exists = true;
    t.durable.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
}

void PowerLossVfs::OnSync(const std::string& path, std::string contents) {
  MutexLock lock(&mu_);
  Tracked& t = files_[path];
  t.durable_exists = true;
  t.durable = std::move(contents);
}

void PowerLossVfs::OnDelete(const std::string& path) {
  MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return;
  it->second.durable_exists = false;
  it->second.durable.clear();
}

absl::Status PowerLossVfs::SimulatePowerLoss() {
  MutexLock lock(&mu_);
  for (const auto& [path, t] : files_) {
    std::error_code ec;
    if (!t.durable_exists) {
      std::filesystem::remove(path, ec);
      if (ec) return absl::InternalError(absl::StrCat("removing ", path, ": ", ec.message()));
      continue;
    }
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(t.durable.data(), static_cast<std::streamsize>(t.durable.size()));
    out.close();
    if (!out) return absl::InternalError(absl::StrCat("rewriting ", path));
  }
  files_.clear();
  armed_at_ = 0;
  failed_ = false;
  return absl::OkStatus();
}

}  // namespace snapconf::testing
