// service/security/audit_interceptor.h
//
// Records every audited call in the AuditLog: the writes of ConfigService
// (Put, Delete, Txn, Rollback) and AdminService.UpdatePolicy, whatever their
// outcome, from a gRPC server interceptor. Seeing each call at the point its
// status is sent, it records refusals by validation and authorization exactly
// like commits, and no handler needs to remember to audit. Calls refused by
// the credentials gate never reach a method; the gate reports those itself
// (see transport.h).
//
// What an event holds:
//   identity      CallerIdentities::Of the call (never a token secret)
//   namespaces    the namespaces the request writes (sorted, unique)
//   keys          "namespace/key" of each key the request writes; for a
//                 Rollback, the keys it changed
//   old_revision  the node's revision when the request arrived (for
//                 UpdatePolicy: the policy version the request was based on)
//   new_revision  the revision the write created (for UpdatePolicy: the new
//                 policy version); 0 when nothing was written
//   outcome       the status code name sent to the caller
//   detail        for a refusal, the message sent with it
//
// The line is appended before the status leaves the server, so a write whose
// answer a client received is in the audit log (at least in the page cache;
// see audit.h for what a power loss can take).
//
// Thread safety: the factory is used by gRPC from any thread; each
// interceptor belongs to one call.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "service/security/audit.h"
#include "service/security/transport.h"

namespace snapconf {

// `bytes` as valid UTF-8 for a record: printable characters as they are,
// anything else as \xNN, cut after 512 bytes (ending in "...").
std::string AuditText(absl::string_view bytes);

// True for the methods whose calls are audited ("/snapconf.v1.ConfigService/Put", ...).
bool IsAuditedMethod(absl::string_view method);

// `log` and `identities` must outlive the server; `head_revision` returns
// the node's current revision and must be cheap (it runs on every write).
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeAuditInterceptorFactory(
    AuditLog* log, const CallerIdentities* identities, std::function<int64_t()> head_revision);

}  // namespace snapconf
