#include "service/watch/watch_service.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "grpcpp/support/proto_buffer_reader.h"

namespace snapconf {
namespace {

grpc::Status InvalidArgument(std::string message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
}

class WatchReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                           private WatchSink {
 public:
  WatchReactor(WatchHub* hub, const WatchNameValidator* validate,
               const WatchServiceImpl::AccessCheck* access, grpc::CallbackServerContext* context)
      : hub_(hub), validate_(validate), access_(access), context_(context) {
    absl::StatusOr<std::shared_ptr<Watcher>> watcher = hub_->Open(context->peer(), this);
    if (!watcher.ok()) {
      // Nothing was started: this is the stream's only Finish.
      Finish(grpc::Status(static_cast<grpc::StatusCode>(watcher.status().code()),
                          std::string(watcher.status().message())));
      return;
    }
    watcher_ = *std::move(watcher);
    StartRead(&request_);
    // Only now may the hub end the stream (a shutdown can race this).
    watcher_->Activate();
  }

  void OnReadDone(bool ok) override {
    // !ok: the client half-closed or the call ended. The stream keeps going
    // until the client cancels (OnCancel) or the server shuts down.
    if (!ok) return;
    v1::WatchRequest request;
    const grpc::Status parsed =
        grpc::GenericDeserialize<grpc::ProtoBufferReader, v1::WatchRequest>(&request_, &request);
    if (!parsed.ok()) {
      watcher_->Finish(InvalidArgument("malformed WatchRequest: not a snapconf.v1.WatchRequest"));
      return;
    }
    if (!created_) {
      if (!request.has_create()) {
        watcher_->Finish(InvalidArgument("the first WatchRequest must be a create"));
        return;
      }
      absl::StatusOr<WatchSpec> spec = ParseWatchCreate(request.create(), *validate_);
      if (!spec.ok()) {
        watcher_->Finish(InvalidArgument(std::string(spec.status().message())));
        return;
      }
      if (*access_) {
        if (absl::Status allowed = (*access_)(*context_, *spec); !allowed.ok()) {
          watcher_->Finish(grpc::Status(static_cast<grpc::StatusCode>(allowed.code()),
                                        std::string(allowed.message())));
          return;
        }
      }
      created_ = true;
      watcher_->Start(*std::move(spec));
    } else if (request.has_progress()) {
      watcher_->RequestProgress();
    } else if (request.has_create()) {
      watcher_->Finish(InvalidArgument("a watch stream takes only one create"));
      return;
    } else {
      watcher_->Finish(InvalidArgument("empty WatchRequest"));
      return;
    }
    if (!watcher_->finishing()) StartRead(&request_);
  }

  void OnWriteDone(bool ok) override { watcher_->OnWriteDone(ok); }

  void OnCancel() override {
    if (watcher_) watcher_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
  }

  void OnDone() override {
    if (watcher_) hub_->Close(watcher_);
    delete this;
  }

 private:
  // WatchSink: the Watcher decides when; these only reach gRPC.
  void Send(const grpc::ByteBuffer* message) override { StartWrite(message); }
  void End(const grpc::Status& status) override { Finish(status); }

  WatchHub* const hub_;
  const WatchNameValidator* const validate_;
  const WatchServiceImpl::AccessCheck* const access_;
  grpc::CallbackServerContext* const context_;  // valid until OnDone
  std::shared_ptr<Watcher> watcher_;            // null when the stream was refused
  grpc::ByteBuffer request_;                    // read in flight; reads are sequential
  bool created_ = false;                        // touched only by OnReadDone (sequential)
};

}  // namespace

WatchServiceImpl::WatchServiceImpl(WatchHub* hub, WatchNameValidator validate, AccessCheck access)
    : hub_(hub), validate_(std::move(validate)), access_(std::move(access)) {}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* WatchServiceImpl::Watch(
    grpc::CallbackServerContext* context) {
  return new WatchReactor(hub_, &validate_, &access_, context);
}

}  // namespace snapconf
