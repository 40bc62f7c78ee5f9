// tests/fuzz/cache_decode_fuzz.cc
//
// Fuzzes the ConfigClient's cache-file decoder (client/internal/config_cache).
// The first input byte picks what the rest is: a whole file; a payload that
// gets a correct header (so the fuzzer gets past the length and checksum); or
// the records after the watch filters (so it also gets past the filter check
// and reaches the entries). Properties: errors are DATA_LOSS or
// FAILED_PRECONDITION only; a decoded snapshot is a valid tree whose entries
// could have come from a server (1 <= version, 1 <= create <= mod <= revision);
// re-encoding it decodes to the same entries; and the same bytes are refused
// for other watches.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/internal/config_cache.h"
#include "snapshot/snapshot.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

using snapconf::EntryPtr;
using snapconf::Snapshot;
using snapconf::SnapshotPtr;
using snapconf::client::WatchFilter;
namespace cache = snapconf::client::internal;

constexpr size_t kHeaderSize = 28;    // magic, version, length, checksum
constexpr size_t kRecordHeader = 12;  // revision, entry count

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A file around `payload` with a correct header, taken from the encoder's own
// header for an empty snapshot (magic and version) so the format is not
// restated here.
std::string WithHeader(const std::string& magic_and_version, const std::string& payload) {
  std::string out = magic_and_version;
  PutU64(out, payload.size());
  PutU64(out, cache::Fnv1a64(payload));
  return out + payload;
}

struct Flat {
  std::string ns, key, value, content_type;
  int64_t create, mod, version;
  bool operator==(const Flat&) const = default;
};

std::vector<Flat> Flatten(const Snapshot& s) {
  std::vector<Flat> out;
  for (const std::string& ns : s.Namespaces()) {
    s.Scan(ns, "", "", 0, [&](std::string_view key, const EntryPtr& e) {
      out.push_back(Flat{ns, std::string(key), e->value, e->content_type, e->create_revision,
                         e->mod_revision, e->version});
      return true;
    });
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<WatchFilter> watches =
      cache::CanonicalWatches({{"payments/prod", {"http/", "db."}}, {"app", {}}});
  static const std::vector<WatchFilter> other_watches = cache::CanonicalWatches({{"app", {}}});
  static const std::string empty_file = cache::EncodeCache(watches, *Snapshot::Empty());
  static const std::string magic_and_version = empty_file.substr(0, 12);
  static const std::string watch_prefix =
      empty_file.substr(kHeaderSize, empty_file.size() - kHeaderSize - kRecordHeader);

  snapconf::fuzz::FuzzInput input(data, size);
  const uint8_t mode = input.Byte() % 3;
  const std::string rest = input.Rest();
  std::string file;
  switch (mode) {
    case 0:
      file = rest;
      break;
    case 1:
      file = WithHeader(magic_and_version, rest);
      break;
    default:
      file = WithHeader(magic_and_version, watch_prefix + rest);
      break;
  }

  absl::StatusOr<SnapshotPtr> decoded = cache::DecodeCache(file, watches);
  if (!decoded.ok()) {
    const absl::StatusCode code = decoded.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kDataLoss || code == absl::StatusCode::kFailedPrecondition,
               "code %d: %s", static_cast<int>(code),
               std::string(decoded.status().message()).c_str());
    return 0;
  }
  const Snapshot& snapshot = **decoded;
  FUZZ_CHECK(snapshot.CheckInvariantsForTest(), "decoded snapshot is not a valid tree");
  const std::vector<Flat> entries = Flatten(snapshot);
  FUZZ_CHECK(entries.size() == snapshot.size(), "size %zu, scanned %zu", snapshot.size(),
             entries.size());
  for (const Flat& e : entries) {
    FUZZ_CHECK(e.version >= 1 && e.create >= 1 && e.create <= e.mod && e.mod <= snapshot.revision(),
               "impossible entry: version %lld create %lld mod %lld at revision %lld",
               static_cast<long long>(e.version), static_cast<long long>(e.create),
               static_cast<long long>(e.mod), static_cast<long long>(snapshot.revision()));
  }

  const std::string again = cache::EncodeCache(watches, snapshot);
  absl::StatusOr<SnapshotPtr> redecoded = cache::DecodeCache(again, watches);
  FUZZ_CHECK(redecoded.ok(), "re-encoded cache refused: %s",
             std::string(redecoded.status().message()).c_str());
  FUZZ_CHECK((*redecoded)->revision() == snapshot.revision(), "revision changed");
  FUZZ_CHECK(Flatten(**redecoded) == entries, "entries changed in a round trip");

  FUZZ_CHECK(!cache::DecodeCache(file, other_watches).ok(), "served for other watches");
  return 0;
}
