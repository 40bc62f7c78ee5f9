#include "service/admin_service.h"

#include "absl/strings/str_cat.h"
#include "service/convert.h"
#include "service/log.h"
#include "service/security/transport.h"

namespace snapconf {

namespace {

// Ends the call with `expr` when it is not OK.
#define RETURN_REACTOR_IF_ERROR(ctx, expr)                          \
  do {                                                              \
    if (absl::Status _s = (expr); !_s.ok()) return Finish(ctx, _s); \
  } while (0)

// Admin on every namespace, or the reason why not.
absl::Status AllowAdmin(const CallerIdentities& identities, const Authorizer& authz,
                        const grpc::CallbackServerContext& ctx) {
  return authz.CheckGlobal(identities.Of(ctx), Permission::kAdmin);
}

// The call's reactor, finished with RESOURCE_EXHAUSTED, when the caller is
// over its request rate; null otherwise.
grpc::ServerUnaryReactor* RefusedOverRate(IdentityLimits* limits,
                                          const CallerIdentities& identities,
                                          grpc::CallbackServerContext* ctx) {
  if (limits == nullptr || !limits->rate_limited()) return nullptr;
  auto* reactor = ctx->DefaultReactor();
  return RefuseOverRate(limits, identities, ctx, reactor) ? reactor : nullptr;
}

v1::Permission PermissionToProto(Permission p) {
  switch (p) {
    case Permission::kRead:
      return v1::PERMISSION_READ;
    case Permission::kWrite:
      return v1::PERMISSION_WRITE;
    case Permission::kAdmin:
      return v1::PERMISSION_ADMIN;
    case Permission::kNone:
      break;
  }
  return v1::PERMISSION_UNSPECIFIED;
}

Permission PermissionFromProto(v1::Permission p) {
  switch (p) {
    case v1::PERMISSION_READ:
      return Permission::kRead;
    case v1::PERMISSION_WRITE:
      return Permission::kWrite;
    case v1::PERMISSION_ADMIN:
      return Permission::kAdmin;
    default:
      return Permission::kNone;  // refused by the policy check, naming the role
  }
}

void PolicyToProto(const Policy& policy, v1::Policy* out) {
  for (const Policy::Role& role : policy.roles()) {
    v1::Role* r = out->add_roles();
    r->set_name(role.name);
    for (const std::string& p : role.patterns) r->add_namespace_patterns(p);
    r->set_permission(PermissionToProto(role.permission));
  }
  for (const Policy::Binding& binding : policy.bindings()) {
    v1::RoleBinding* b = out->add_bindings();
    b->set_identity(binding.identity);
    for (const std::string& role : binding.roles) b->add_roles(role);
  }
  out->set_version(policy.version());
}

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(s));
  return reactor;
}

}  // namespace

AdminServiceImpl::AdminServiceImpl(Engine* engine, std::string node_id, std::string version,
                                   const CallerIdentities* identities, Authorizer* authz)
    : engine_(engine),
      node_id_(std::move(node_id)),
      version_(std::move(version)),
      start_time_(absl::Now()),
      identities_(identities),
      authz_(authz) {}

grpc::ServerUnaryReactor* AdminServiceImpl::GetPolicy(grpc::CallbackServerContext* ctx,
                                                      const v1::GetPolicyRequest* /*request*/,
                                                      v1::GetPolicyResponse* response) {
  if (auto* refused = RefusedOverRate(identity_limits_, *identities_, ctx)) return refused;
  RETURN_REACTOR_IF_ERROR(ctx, AllowAdmin(*identities_, *authz_, *ctx));
  const Policy* policy = authz_->current();
  if (authz_->policy_file().empty() || policy == nullptr) {
    return Finish(ctx, absl::FailedPreconditionError(
                           "this server has no --policy-file: authorization is off (a "
                           "loopback-only server without authentication) and there is no policy"));
  }
  PolicyToProto(*policy, response->mutable_policy());
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminServiceImpl::UpdatePolicy(grpc::CallbackServerContext* ctx,
                                                         const v1::UpdatePolicyRequest* request,
                                                         v1::UpdatePolicyResponse* response) {
  if (auto* refused = RefusedOverRate(identity_limits_, *identities_, ctx)) return refused;
  RETURN_REACTOR_IF_ERROR(ctx, AllowAdmin(*identities_, *authz_, *ctx));
  std::vector<Policy::Role> roles;
  for (const v1::Role& r : request->policy().roles()) {
    roles.push_back({.name = r.name(),
                     .patterns = {r.namespace_patterns().begin(), r.namespace_patterns().end()},
                     .permission = PermissionFromProto(r.permission())});
  }
  std::vector<Policy::Binding> bindings;
  for (const v1::RoleBinding& b : request->policy().bindings()) {
    bindings.push_back({.identity = b.identity(), .roles = {b.roles().begin(), b.roles().end()}});
  }
  const std::string caller = identities_->Of(*ctx);
  const bool enforced = authz_->enabled();
  const bool force = request->force();
  absl::StatusOr<const Policy*> updated = authz_->Replace(
      roles, bindings, request->policy().version(), [&](const Policy& next) -> absl::Status {
        // Only a policy that is enforced can lock anyone out.
        if (!enforced || force || next.GrantedEverywhere(caller) >= Permission::kAdmin) {
          return absl::OkStatus();
        }
        return absl::FailedPreconditionError(absl::StrCat(
            "the new policy does not grant ", caller,
            " admin on every namespace (\"*\"): applying it would lock you out of policy "
            "changes; send it with force (snapconfctl policy set --force) if that is intended"));
      });
  if (!updated.ok()) return Finish(ctx, updated.status());
  PolicyToProto(**updated, response->mutable_policy());
  LogEvent(LogLevel::kInfo, "policy_updated",
           {{"version", (*updated)->version()}, {"identity", caller}, {"source", "api"}});
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListAuditEvents(
    grpc::CallbackServerContext* ctx, const v1::ListAuditEventsRequest* request,
    v1::ListAuditEventsResponse* response) {
  if (auto* refused = RefusedOverRate(identity_limits_, *identities_, ctx)) return refused;
  RETURN_REACTOR_IF_ERROR(ctx, AllowAdmin(*identities_, *authz_, *ctx));
  if (audit_log_ == nullptr) {
    return Finish(ctx, absl::FailedPreconditionError("this server keeps no audit log"));
  }
  // A token marks a position in the log (checked by the log); the filters
  // apply from there on.
  absl::StatusOr<v1::ListAuditEventsResponse> page =
      audit_log_->List({.page_size = request->page_size(),
                        .page_token = request->page_token(),
                        .identity = request->identity(),
                        .ns = request->namespace_()});
  if (!page.ok()) return Finish(ctx, page.status());
  *response = *std::move(page);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* AdminServiceImpl::GetServerStatus(
    grpc::CallbackServerContext* ctx, const v1::GetServerStatusRequest* /*request*/,
    v1::GetServerStatusResponse* response) {
  if (auto* refused = RefusedOverRate(identity_limits_, *identities_, ctx)) return refused;
  if (absl::Status s = AllowAdmin(*identities_, *authz_, *ctx); !s.ok()) {
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  response->set_node_id(node_id_);
  response->set_version(version_);
  response->set_store(std::string(engine_->store().kind()));
  response->set_oldest_revision(engine_->oldest_readable_revision());
  engine_->publisher().Read([&](const Snapshot& snapshot) {
    response->set_revision(snapshot.revision());
    response->set_key_count(static_cast<int64_t>(snapshot.size()));
    response->set_namespace_count(static_cast<int64_t>(snapshot.Namespaces().size()));
  });
  const absl::Status health = engine_->store().Health();
  response->set_writable(health.ok());
  if (!health.ok()) response->set_unavailable_reason(std::string(health.message()));
  if (open_watches_ != nullptr) {
    response->set_open_watches(open_watches_->load(std::memory_order_relaxed));
  }
  const int64_t micros = absl::ToUnixMicros(start_time_);
  response->mutable_start_time()->set_seconds(micros / 1000000);
  response->mutable_start_time()->set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace snapconf
