// client/cli/policy_doc.h
//
// snapconfctl's policy and audit documents. A policy prints in the shape of
// snapconfd's policy file, so `policy get > f`, an edit, and `policy set f`
// round-trip, and the file a server reads is the file an operator edits:
//
//   version: 4
//   roles:
//     - name: payments-writer
//       namespaces: ["payments/*"]
//       permission: write
//   bindings:
//     - identity: ci/deployer
//       roles: [payments-writer]
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "client/admin_client.h"
#include "client/cli/format.h"

namespace snapconf::cli {

// YAML for table (the default) and yaml; JSON for json.
std::string FormatPolicy(const client::AccessPolicy& policy, OutputFormat format);

// A policy document in JSON or YAML (see above). `version` is required: it
// is the version the edit was based on. INVALID_ARGUMENT naming SOURCE and
// the field at fault.
absl::StatusOr<client::AccessPolicy> ParsePolicyDocument(std::string_view text,
                                                         std::string_view source);

// Audit events, newest first. table: TIME IDENTITY METHOD KEYS REVISIONS
// OUTCOME, one line per event (keys cut to the first three); json/yaml:
// {"events": [...], "next_page_token": ...} with every field.
std::string FormatAudit(const client::AuditPage& page, OutputFormat format);

}  // namespace snapconf::cli
