// service/validate.h
//
// The one place that decides what a well-formed namespace, key, prefix, value
// and message are. Accepted names are already canonical (there is exactly one
// spelling of every namespace and key), so what is validated is what is
// looked up, authorized and stored. Every rejection is INVALID_ARGUMENT with a
// message naming the field and the problem.
//
// Namespaces: 1..128 bytes, segments separated by '/', each segment starts
// with [a-z0-9] and continues with [a-z0-9._-]. Example: "payments/prod".
// Keys: 1..256 bytes of [A-Za-z0-9._-/:@], not starting or ending with '/',
// no "//". Examples: "db.pool.max", "http/timeout".
// Prefixes: like keys but may be empty and may end with '/'.
//
// Pure functions; thread-safe.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "service/limits.h"

namespace snapconf {

absl::Status ValidateNamespace(absl::string_view ns, const Limits& limits,
                               absl::string_view field = "namespace");
absl::Status ValidateKey(absl::string_view key, const Limits& limits,
                         absl::string_view field = "key");
absl::Status ValidatePrefix(absl::string_view prefix, const Limits& limits,
                            absl::string_view field = "prefix");
absl::Status ValidateValue(absl::string_view value, const Limits& limits);
absl::Status ValidateContentType(absl::string_view content_type, const Limits& limits);
absl::Status ValidateMessage(absl::string_view message, const Limits& limits);

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(absl::string_view s);

}  // namespace snapconf
