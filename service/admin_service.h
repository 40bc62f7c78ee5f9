// service/admin_service.h
//
// snapconf.v1.AdminService: node status, the access policy and the audit
// log, for operators. Every method needs admin on every namespace ("*");
// non-admins get PERMISSION_DENIED before anything else is looked at.
//
//   GetPolicy        the policy in force with its version. FAILED_PRECONDITION
//                    without a --policy-file.
//   UpdatePolicy     replaces the policy (Authorizer::Replace: checked like
//                    the file, ABORTED on a stale version, the file rewritten
//                    atomically, in force at once). A policy that would no
//                    longer grant the caller admin on "*" needs `force`
//                    (FAILED_PRECONDITION otherwise). Audited.
//   ListAuditEvents  this node's audit log, newest first (AuditLog::List).
//
// Thread-safe.
#pragma once

#include <atomic>
#include <string>

#include "absl/time/time.h"
#include "service/engine.h"
#include "service/security/audit.h"
#include "service/security/policy.h"
#include "service/security/rate_limit.h"
#include "service/security/transport.h"
#include "snapconf/v1/admin_service.grpc.pb.h"

namespace snapconf {

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  // `identities` and `authz` must outlive the service; every method needs
  // admin on "*".
  AdminServiceImpl(Engine* engine, std::string node_id, std::string version,
                   const CallerIdentities* identities, Authorizer* authz);

  grpc::ServerUnaryReactor* GetServerStatus(grpc::CallbackServerContext* ctx,
                                            const v1::GetServerStatusRequest* request,
                                            v1::GetServerStatusResponse* response) override;
  grpc::ServerUnaryReactor* GetPolicy(grpc::CallbackServerContext* ctx,
                                      const v1::GetPolicyRequest* request,
                                      v1::GetPolicyResponse* response) override;
  grpc::ServerUnaryReactor* UpdatePolicy(grpc::CallbackServerContext* ctx,
                                         const v1::UpdatePolicyRequest* request,
                                         v1::UpdatePolicyResponse* response) override;
  grpc::ServerUnaryReactor* ListAuditEvents(grpc::CallbackServerContext* ctx,
                                            const v1::ListAuditEventsRequest* request,
                                            v1::ListAuditEventsResponse* response) override;

  // Counts open watch streams for status; set by the watch service.
  void set_open_watches_source(const std::atomic<int64_t>* source) { open_watches_ = source; }
  // Per-identity request rate (may be null: no limit); must outlive the
  // service. Set before serving.
  void set_identity_limits(IdentityLimits* limits) { identity_limits_ = limits; }
  // The log ListAuditEvents reads; without one it answers FAILED_PRECONDITION.
  void set_audit_log(const AuditLog* log) { audit_log_ = log; }

 private:
  Engine* const engine_;
  const std::string node_id_;
  const std::string version_;
  const absl::Time start_time_;
  const std::atomic<int64_t>* open_watches_ = nullptr;
  const CallerIdentities* const identities_;
  Authorizer* const authz_;
  IdentityLimits* identity_limits_ = nullptr;
  const AuditLog* audit_log_ = nullptr;
};

}  // namespace snapconf
