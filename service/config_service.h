// service/config_service.h
//
// snapconf.v1.ConfigService on gRPC's callback API. Every handler validates
// its whole request first (INVALID_ARGUMENT, nothing changed), reads from one
// snapshot through the Engine, and never blocks a gRPC thread: reads finish
// inline, min_revision waits and writes finish from the Engine's callbacks.
//
// Thread-safe: gRPC calls the handlers from any of its threads.
#pragma once

#include <string>

#include "service/engine.h"
#include "service/limits.h"
#include "service/page_token.h"
#include "service/security/policy.h"
#include "service/security/rate_limit.h"
#include "service/security/transport.h"
#include "snapconf/v1/config_service.grpc.pb.h"

namespace snapconf {

class ConfigServiceImpl final : public v1::ConfigService::CallbackService {
 public:
  // `identities` names each caller and `authz` decides every call (see
  // service/security/); both must outlive the service.
  ConfigServiceImpl(Engine* engine, const Limits& limits, PageTokenCodec tokens,
                    std::string node_id, const CallerIdentities* identities,
                    const Authorizer* authz);

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetRequest* request,
                                v1::GetResponse* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx, const v1::ListRequest* request,
                                 v1::ListResponse* response) override;
  grpc::ServerUnaryReactor* ListNamespaces(grpc::CallbackServerContext* ctx,
                                           const v1::ListNamespacesRequest* request,
                                           v1::ListNamespacesResponse* response) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const v1::PutRequest* request,
                                v1::PutResponse* response) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const v1::DeleteRequest* request,
                                   v1::DeleteResponse* response) override;
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* ctx, const v1::TxnRequest* request,
                                v1::TxnResponse* response) override;
  grpc::ServerUnaryReactor* History(grpc::CallbackServerContext* ctx,
                                    const v1::HistoryRequest* request,
                                    v1::HistoryResponse* response) override;
  grpc::ServerUnaryReactor* Diff(grpc::CallbackServerContext* ctx, const v1::DiffRequest* request,
                                 v1::DiffResponse* response) override;
  grpc::ServerUnaryReactor* Rollback(grpc::CallbackServerContext* ctx,
                                     const v1::RollbackRequest* request,
                                     v1::RollbackResponse* response) override;

  // Per-identity request rate (may be null: no limit); must outlive the
  // service. Set before serving.
  void set_identity_limits(IdentityLimits* limits) { identity_limits_ = limits; }

 private:
  void FillHeader(Revision revision, v1::ResponseHeader* header) const;
  absl::Status DoGet(const v1::GetRequest& request, v1::GetResponse* response);
  absl::Status DoList(const v1::ListRequest& request, v1::ListResponse* response);
  absl::Status DoListNamespaces(const v1::ListNamespacesRequest& request,
                                const std::string& identity, v1::ListNamespacesResponse* response);
  // OK when the caller holds `needed` on `ns`; PERMISSION_DENIED otherwise.
  absl::Status Allow(const grpc::CallbackServerContext& ctx, Permission needed,
                     const std::string& ns) const;
  absl::Status DoHistory(const v1::HistoryRequest& request, v1::HistoryResponse* response);
  absl::Status DoDiff(const v1::DiffRequest& request, v1::DiffResponse* response);

  Engine* const engine_;
  const Limits limits_;
  const PageTokenCodec tokens_;
  const std::string node_id_;
  const CallerIdentities* const identities_;
  const Authorizer* const authz_;
  IdentityLimits* identity_limits_ = nullptr;
};

}  // namespace snapconf
