// client/internal/config_cache.cc
#include "client/internal/config_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace snapconf::client::internal {
namespace {

constexpr char kMagic[8] = {'S', 'N', 'A', 'P', 'C', 'C', 'F', '\0'};
constexpr size_t kHeaderSize = 8 + 4 + 8 + 8;

void PutU32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutBytes(std::string& out, std::string_view s) {
  PutU32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s.data(), s.size());
}

// Bounds-checked reader: every Get fails (and stays failed) instead of reading past the end,
// so a truncated or garbage payload can never crash the decoder.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool U32(std::uint32_t& v) {
    if (data_.size() < 4) return Fail();
    v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{static_cast<unsigned char>(data_[i])} << (8 * i);
    data_.remove_prefix(4);
    return true;
  }
  bool U64(std::uint64_t& v) {
    if (data_.size() < 8) return Fail();
    v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(data_[i])} << (8 * i);
    data_.remove_prefix(8);
    return true;
  }
  bool I64(std::int64_t& v) {
    std::uint64_t u = 0;
    if (!U64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool Bytes(std::string& s) {
    std::uint32_t n = 0;
    if (!U32(n)) return false;
    if (data_.size() < n) return Fail();
    s.assign(data_.data(), n);
    data_.remove_prefix(n);
    return true;
  }
  bool ok() const { return ok_; }
  bool empty() const { return data_.empty(); }

 private:
  bool Fail() {
    ok_ = false;
    return false;
  }
  std::string_view data_;
  bool ok_ = true;
};

void EncodeWatches(std::string& out, const std::vector<WatchFilter>& watches) {
  PutU32(out, static_cast<std::uint32_t>(watches.size()));
  for (const WatchFilter& w : watches) {
    PutBytes(out, w.ns);
    PutU32(out, static_cast<std::uint32_t>(w.prefixes.size()));
    for (const std::string& p : w.prefixes) PutBytes(out, p);
  }
}

absl::Status Errno(std::string_view what, const std::string& path) {
  return absl::UnavailableError(
      absl::StrCat(std::string(what), " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write", path);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<WatchFilter> CanonicalWatches(std::vector<WatchFilter> watches) {
  for (WatchFilter& w : watches) {
    std::sort(w.prefixes.begin(), w.prefixes.end());
    w.prefixes.erase(std::unique(w.prefixes.begin(), w.prefixes.end()), w.prefixes.end());
    // An empty prefix matches every key: the other prefixes add nothing.
    if (!w.prefixes.empty() && w.prefixes.front().empty()) w.prefixes.clear();
  }
  std::sort(watches.begin(), watches.end(),
            [](const WatchFilter& a, const WatchFilter& b) { return a.ns < b.ns; });
  return watches;
}

std::uint64_t Fnv1a64(std::string_view data) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string EncodeCache(const std::vector<WatchFilter>& watches, const Snapshot& snapshot) {
  std::string payload;
  EncodeWatches(payload, watches);
  PutU64(payload, static_cast<std::uint64_t>(snapshot.revision()));
  PutU32(payload, static_cast<std::uint32_t>(snapshot.size()));
  for (const std::string& ns : snapshot.Namespaces()) {
    snapshot.Scan(ns, "", "", 0, [&](std::string_view key, const EntryPtr& e) {
      PutBytes(payload, ns);
      PutBytes(payload, key);
      PutBytes(payload, e->value);
      PutBytes(payload, e->content_type);
      PutU64(payload, static_cast<std::uint64_t>(e->create_revision));
      PutU64(payload, static_cast<std::uint64_t>(e->mod_revision));
      PutU64(payload, static_cast<std::uint64_t>(e->version));
      return true;
    });
  }
  std::string out(kMagic, sizeof(kMagic));
  PutU32(out, kCacheFormatVersion);
  PutU64(out, payload.size());
  PutU64(out, Fnv1a64(payload));
  out += payload;
  return out;
}

absl::StatusOr<SnapshotPtr> DecodeCache(std::string_view bytes,
                                        const std::vector<WatchFilter>& watches) {
  if (bytes.size() < kHeaderSize || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("not a snapconf cache file (bad magic or too short)");
  }
  Reader header(bytes.substr(sizeof(kMagic), kHeaderSize - sizeof(kMagic)));
  std::uint32_t version = 0;
  std::uint64_t length = 0, checksum = 0;
  header.U32(version);
  header.U64(length);
  header.U64(checksum);
  if (version != kCacheFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("cache format version ", version, ", expected ", kCacheFormatVersion));
  }
  const std::string_view payload = bytes.substr(kHeaderSize);
  if (payload.size() != length) {
    return absl::DataLossError(
        absl::StrCat("cache payload is ", payload.size(), " bytes, header says ", length));
  }
  if (Fnv1a64(payload) != checksum) return absl::DataLossError("cache checksum mismatch");

  std::string expected_watches;
  EncodeWatches(expected_watches, watches);
  if (payload.substr(0, expected_watches.size()) != expected_watches) {
    return absl::FailedPreconditionError("cache was written for other watches");
  }
  Reader r(payload.substr(expected_watches.size()));
  std::int64_t revision = 0;
  std::uint32_t count = 0;
  r.I64(revision);
  r.U32(count);
  if (!r.ok() || revision < 0) return absl::DataLossError("cache header record damaged");
  SnapshotBuilder builder;
  // Never trust a count for an allocation: each entry needs at least 40 bytes.
  builder.Reserve(std::min<size_t>(count, payload.size() / 40));
  std::string prev_ns, prev_key;
  for (std::uint32_t i = 0; i < count; ++i) {
    std::string ns, key;
    auto e = std::make_shared<snapconf::Entry>();
    if (!r.Bytes(ns) || !r.Bytes(key) || !r.Bytes(e->value) || !r.Bytes(e->content_type) ||
        !r.I64(e->create_revision) || !r.I64(e->mod_revision) || !r.I64(e->version)) {
      return absl::DataLossError(absl::StrCat("cache entry ", i, " truncated"));
    }
    // A checksum only catches accidents; refuse entries no server could have
    // sent (they would break the revision order the client reports) and
    // records out of the encoder's strict (ns, key) order, which would
    // otherwise silently replace one another.
    if (e->version < 1 || e->create_revision < 1 || e->create_revision > e->mod_revision ||
        e->mod_revision > revision) {
      return absl::DataLossError(absl::StrCat("cache entry ", i, " has impossible revisions"));
    }
    if (i > 0 && !(std::tie(prev_ns, prev_key) < std::tie(ns, key))) {
      return absl::DataLossError(absl::StrCat("cache entry ", i, " is out of order"));
    }
    prev_ns = ns;
    prev_key = key;
    builder.Add(std::move(ns), std::move(key), std::move(e));
  }
  if (!r.empty()) return absl::DataLossError("trailing bytes after the last cache entry");
  return std::move(builder).Build(revision);
}

absl::Status WriteCacheFile(const std::string& dir, std::string_view bytes) {
  const std::string path = absl::StrCat(dir, "/", kCacheFileName);
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("open", tmp);
  absl::Status status = WriteAll(fd, bytes, tmp);
  if (status.ok() && ::fsync(fd) != 0) status = Errno("fsync", tmp);
  if (::close(fd) != 0 && status.ok()) status = Errno("close", tmp);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) status = Errno("rename", tmp);
  if (!status.ok()) {
    ::unlink(tmp.c_str());
    return status;
  }
  // The rename is durable only once the directory is synced.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Errno("open", dir);
  if (::fsync(dfd) != 0) status = Errno("fsync", dir);
  ::close(dfd);
  return status;
}

absl::StatusOr<std::string> ReadCacheFile(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kCacheFileName);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat("no cache file ", path));
    return Errno("open", path);
  }
  std::string out;
  char buf[1 << 16];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status s = Errno("read", path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace snapconf::client::internal
