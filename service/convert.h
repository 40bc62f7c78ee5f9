// service/convert.h
//
// Conversions between the snapshot model and snapconf.v1 messages, and from
// absl::Status to grpc::Status (the codes are the same canonical codes).
// Pure functions; thread-safe.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "service/store/store.h"
#include "snapconf/v1/types.pb.h"
#include "snapshot/snapshot.h"

namespace snapconf {

inline grpc::Status ToGrpc(const absl::Status& s) {
  return {static_cast<grpc::StatusCode>(s.code()), std::string(s.message())};
}

// Fills `out` from `entry`; namespace and key are set only when non-empty.
void EntryToProto(std::string_view ns, std::string_view key, const Entry& entry, bool with_value,
                  v1::Entry* out);
void ChangeToProto(const EntryChange& change, bool with_before, v1::Change* out);
void RecordToProto(const CommitRecord& record, v1::ChangeRecord* out);

}  // namespace snapconf
