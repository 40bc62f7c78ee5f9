// service/watch/watch_service.h
//
// snapconf.v1.WatchService over the raw callback API: requests are parsed
// here, responses are the hub's pre-serialized bytes (grpc::ByteBuffer), so a
// revision is serialized once for every stream that receives it.
//
// One WatchReactor per stream. It owns nothing but its Watcher (the hub's
// cursor) and the buffer of the read in flight; every write, progress and
// Finish decision is the Watcher's (watch_hub.h states the threading rules).
// Stream life: admitted by the hub (RESOURCE_EXHAUSTED beyond the stream
// limits, UNAVAILABLE while shutting down) -> `create` read and validated
// (INVALID_ARGUMENT otherwise) -> messages until the client cancels or the
// server shuts down (UNAVAILABLE) -> OnDone unregisters and deletes.
//
// Thread-safety: the service object is immutable after construction; gRPC
// calls Watch from any thread.
//
//   WatchHub hub(options, snapshot_source);
//   WatchServiceImpl service(&hub, validator);
//   builder.RegisterService(&service);
#pragma once

#include <functional>

#include "service/watch/watch_hub.h"
#include "snapconf/v1/watch_service.grpc.pb.h"

namespace snapconf {

class WatchServiceImpl final
    : public v1::WatchService::WithRawCallbackMethod_Watch<v1::WatchService::Service> {
 public:
  // Decides whether the caller of `context` may watch `spec`; a refusal ends
  // the stream with its status (PERMISSION_DENIED) before anything is sent.
  using AccessCheck = std::function<absl::Status(const grpc::CallbackServerContext& context,
                                                 const WatchSpec& spec)>;

  // `hub` must outlive the service; `validate` checks names and `access`
  // decides access (either may be empty).
  WatchServiceImpl(WatchHub* hub, WatchNameValidator validate, AccessCheck access = {});

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Watch(
      grpc::CallbackServerContext* context) override;

 private:
  WatchHub* const hub_;
  const WatchNameValidator validate_;
  const AccessCheck access_;
};

}  // namespace snapconf
