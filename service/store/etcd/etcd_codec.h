// service/store/etcd/etcd_codec.h
//
// How the etcd store lays snapconf's data out in etcd's flat key space, and
// how it encodes values and per-revision metadata (docs/adr/004-etcd-store.md).
// Everything lives under one prefix P (default "/snapconf/"):
//
//   P "d/" ns "!" key   one entry; value = EncodeValue(content_type, value)
//   P "n/" ns           namespace marker, put by every Txn that changes a key
//                       of ns: its mod_revision IS the namespace revision
//   P "m"               metadata of the latest change set (author, message,
//                       commit time, Txn id), put by every Txn: its value at
//                       revision R is the metadata of revision R
//   P "k"               the page-token key shared by every replica
//
// '!' can appear in neither a namespace nor a key (service/validate.h), so
// the (ns, key) -> etcd key mapping is one-to-one; the store still refuses a
// name with '!' itself rather than trusting its caller.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace snapconf::etcd {

class KeyLayout {
 public:
  explicit KeyLayout(std::string prefix) : prefix_(std::move(prefix)) {}

  const std::string& prefix() const { return prefix_; }
  std::string DataKey(absl::string_view ns, absl::string_view key) const;
  std::string DataPrefix() const { return prefix_ + "d/"; }
  std::string MarkerKey(absl::string_view ns) const;
  std::string MetaKey() const { return prefix_ + "m"; }
  std::string TokenKey() const { return prefix_ + "k"; }

  enum class Kind { kData, kMarker, kMeta, kOther };
  struct Parsed {
    Kind kind = Kind::kOther;
    std::string ns;
    std::string key;
  };
  Parsed Parse(absl::string_view etcd_key) const;

 private:
  std::string prefix_;
};

// The first key after every key that starts with `prefix` (etcd's range_end).
std::string PrefixEnd(absl::string_view prefix);

// True when `name` can be stored under the layout ('!' is the separator).
bool StorableName(absl::string_view name);

// "<content_type length>:<content_type><value>".
std::string EncodeValue(absl::string_view content_type, absl::string_view value);
struct DecodedValue {
  std::string content_type;
  std::string value;
};
absl::StatusOr<DecodedValue> DecodeValue(absl::string_view encoded);

struct Meta {
  std::string txn_id;  // random, identifies the Txn that wrote this revision
  absl::Time commit_time;
  std::string author;
  std::string message;
};
std::string EncodeMeta(const Meta& meta);
absl::StatusOr<Meta> DecodeMeta(absl::string_view encoded);

}  // namespace snapconf::etcd
