// client/cli/txn_file.h
//
// Parses the transaction files of `snapconfctl txn -f FILE` into a TxnSpec.
// JSON when the first non-blank character is '{', YAML otherwise; both
// describe the same document:
//
//   {"compares": [{"namespace": "payments/prod", "key": "db.pool.max",
//                  "target": "mod_revision", "op": "==", "number": 7}],
//    "operations": [{"put": {"namespace": "payments/prod", "key": "db.pool.max",
//                            "value": "40", "content_type": "text/plain"}},
//                   {"delete": {"namespace": "payments/prod", "key": "old"}}],
//    "message": "raise the pool"}
//
// target: mod_revision | create_revision | version | exists | value |
//         namespace_revision;  op: == | != | < | >.
// `number` is needed for every target but value (exists: 1 or 0, or
// true/false); `value` for target value. A value that is not UTF-8 is given
// as base64 with "value_encoding": "base64" (the form `-o json` prints).
// Unknown fields are errors, so a typo never silently drops a condition.
//
// Pure function; thread-safe. Errors are INVALID_ARGUMENT and name the
// source, and the line and column (syntax) or the field path (content):
//   "txn.yaml:3:7: ..."  or  "txn.json: operations[1].put.key: missing".
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "client/admin_client.h"

namespace snapconf::cli {

absl::StatusOr<client::TxnSpec> ParseTxnFile(std::string_view text, std::string_view source_name);

}  // namespace snapconf::cli
