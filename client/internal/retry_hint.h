// client/internal/retry_hint.h
//
// The server's retry hint: a call refused with RESOURCE_EXHAUSTED because its
// identity is over a rate or stream limit carries trailing metadata
// `retry-after-ms` (decimal milliseconds; docs/security.md). Clients wait at
// least that long before trying again instead of hammering a limited server.
//
// Thread safety: pure functions.
#pragma once

#include <grpcpp/client_context.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace snapconf::client::internal {

// The longest hint honoured: a bogus value must not park a client for hours.
inline constexpr absl::Duration kMaxRetryHint = absl::Minutes(5);

// The hint of a finished call, if its trailers hold a valid one.
inline std::optional<absl::Duration> RetryAfterHint(const grpc::ClientContext& context) {
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find("retry-after-ms");
  if (it == trailers.end()) return std::nullopt;
  int64_t ms = 0;
  if (!absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &ms) || ms < 0) {
    return std::nullopt;
  }
  return std::min(absl::Milliseconds(ms), kMaxRetryHint);
}

}  // namespace snapconf::client::internal
