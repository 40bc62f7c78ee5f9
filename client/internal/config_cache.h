// client/internal/config_cache.h
//
// The ConfigClient's cache file: one snapshot of the watched keys, so a service can start with
// the server down. Internal to snapconf_client.
//
// Format (all integers little-endian):
//   magic "SNAPCCF\0" (8) | format version u32 | payload length u64 | FNV-1a 64 of payload u64
//   payload: filters (u32 count; each: bytes ns, u32 count, bytes prefix...)
//            revision i64 | u32 entry count | entries (bytes ns, bytes key, bytes value,
//            bytes content_type, i64 create_revision, i64 mod_revision, i64 version)
//   bytes = u32 length + raw bytes.
// The filters are stored canonically (sorted by namespace, prefixes sorted and deduplicated) so
// a cache written for other watches is recognised as foreign and not served.
//
// Thread-safety: free functions without shared state. WriteCacheFile is atomic on POSIX: a
// reader sees the old file or the new one, never a mix (temp file, fsync, rename, fsync dir).
//
//   std::string bytes = EncodeCache(filters, *snapshot);
//   ASSIGN_OR_RETURN(CacheContents c, DecodeCache(bytes, filters));
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/config_client.h"
#include "snapshot/snapshot.h"

namespace snapconf::client::internal {

inline constexpr char kCacheFileName[] = "snapconf-cache.bin";
inline constexpr std::uint32_t kCacheFormatVersion = 1;

// Sorted by namespace; prefixes sorted and deduplicated; a namespace with an empty prefix (or
// none) covers every key and keeps no prefixes.
std::vector<WatchFilter> CanonicalWatches(std::vector<WatchFilter> watches);

std::uint64_t Fnv1a64(std::string_view data);

// `watches` must be canonical.
std::string EncodeCache(const std::vector<WatchFilter>& watches, const Snapshot& snapshot);

// DATA_LOSS for a damaged file (bad magic, length, checksum, truncated record, entries out of
// order or with impossible revisions), FAILED_PRECONDITION
// for another format version or other watches. The result is a snapshot at the stored revision.
absl::StatusOr<SnapshotPtr> DecodeCache(std::string_view bytes,
                                        const std::vector<WatchFilter>& watches);

// Writes `bytes` to dir/kCacheFileName atomically with mode 0600.
absl::Status WriteCacheFile(const std::string& dir, std::string_view bytes);
// NOT_FOUND when there is no file.
absl::StatusOr<std::string> ReadCacheFile(const std::string& dir);

}  // namespace snapconf::client::internal
