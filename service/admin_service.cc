#include "service/admin_service.h"

namespace snapconf {

AdminServiceImpl::AdminServiceImpl(Engine* engine, std::string node_id, std::string version)
    : engine_(engine),
      node_id_(std::move(node_id)),
      version_(std::move(version)),
      start_time_(absl::Now()) {}

grpc::ServerUnaryReactor* AdminServiceImpl::GetServerStatus(
    grpc::CallbackServerContext* ctx, const v1::GetServerStatusRequest* /*request*/,
    v1::GetServerStatusResponse* response) {
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
