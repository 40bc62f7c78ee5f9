#include "service/admin_service.h"

#include "absl/strings/str_cat.h"
#include "service/convert.h"
#include "service/security/transport.h"

namespace snapconf {

namespace {

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

grpc::ServerUnaryReactor* NotServed(const CallerIdentities& identities, const Authorizer& authz,
                                    grpc::CallbackServerContext* ctx, const char* what) {
  auto* reactor = ctx->DefaultReactor();
  absl::Status s = AllowAdmin(identities, authz, *ctx);
  if (s.ok()) {
    s = absl::UnimplementedError(
        absl::StrCat(what, " through the API is not served yet; the policy is --policy-file"));
  }
  reactor->Finish(ToGrpc(s));
  return reactor;
}

}  // namespace

AdminServiceImpl::AdminServiceImpl(Engine* engine, std::string node_id, std::string version,
                                   const CallerIdentities* identities, const Authorizer* authz)
    : engine_(engine),
      node_id_(std::move(node_id)),
      version_(std::move(version)),
      start_time_(absl::Now()),
      identities_(identities),
      authz_(authz) {}

grpc::ServerUnaryReactor* AdminServiceImpl::GetPolicy(grpc::CallbackServerContext* ctx,
                                                      const v1::GetPolicyRequest* /*request*/,
                                                      v1::GetPolicyResponse* /*response*/) {
  if (auto* refused = RefusedOverRate(identity_limits_, *identities_, ctx)) return refused;
  return NotServed(*identities_, *authz_, ctx, "reading the policy");
}

grpc::ServerUnaryReactor* AdminServiceImpl::UpdatePolicy(grpc::CallbackServerContext* ctx,
                                                         const v1::UpdatePolicyRequest* /*request*/,
                                                         v1::UpdatePolicyResponse* /*response*/) {
  if (auto* refused = RefusedOverRate(identity_limits_, *identities_, ctx)) return refused;
  return NotServed(*identities_, *authz_, ctx, "changing the policy");
}

grpc::ServerUnaryReactor* AdminServiceImpl::ListAuditEvents(
    grpc::CallbackServerContext* ctx, const v1::ListAuditEventsRequest* /*request*/,
    v1::ListAuditEventsResponse* /*response*/) {
  if (auto* refused = RefusedOverRate(identity_limits_, *identities_, ctx)) return refused;
  return NotServed(*identities_, *authz_, ctx, "the audit log");
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
