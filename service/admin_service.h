// service/admin_service.h
//
// snapconf.v1.AdminService: node status for operators. Policy and audit
// methods belong to the access-control layer; until it is enabled they answer
// UNIMPLEMENTED (the generated default).
//
// Thread-safe.
#pragma once

#include <atomic>
#include <string>

#include "absl/time/time.h"
#include "service/engine.h"
#include "snapconf/v1/admin_service.grpc.pb.h"

namespace snapconf {

class AdminServiceImpl final : public v1::AdminService::CallbackService {
 public:
  AdminServiceImpl(Engine* engine, std::string node_id, std::string version);

  grpc::ServerUnaryReactor* GetServerStatus(grpc::CallbackServerContext* ctx,
                                            const v1::GetServerStatusRequest* request,
                                            v1::GetServerStatusResponse* response) override;

  // Counts open watch streams for status; set by the watch service.
  void set_open_watches_source(const std::atomic<int64_t>* source) { open_watches_ = source; }

 private:
  Engine* const engine_;
  const std::string node_id_;
  const std::string version_;
  const absl::Time start_time_;
  const std::atomic<int64_t>* open_watches_ = nullptr;
};

}  // namespace snapconf
