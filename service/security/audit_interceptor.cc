// service/security/audit_interceptor.cc
#include "service/security/audit_interceptor.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "service/log.h"
#include "snapconf/v1/admin_service.pb.h"
#include "snapconf/v1/config_service.pb.h"

namespace snapconf {
namespace {

enum class Method { kPut, kDelete, kTxn, kRollback, kUpdatePolicy };

constexpr struct {
  absl::string_view name;
  Method method;
} kAudited[] = {
    {"/snapconf.v1.ConfigService/Put", Method::kPut},
    {"/snapconf.v1.ConfigService/Delete", Method::kDelete},
    {"/snapconf.v1.ConfigService/Txn", Method::kTxn},
    {"/snapconf.v1.ConfigService/Rollback", Method::kRollback},
    {"/snapconf.v1.AdminService/UpdatePolicy", Method::kUpdatePolicy},
};

// A refused request may carry anything; the record keeps it short and valid
// UTF-8 (invalid bytes become \xNN) so that every line stays one event.
constexpr size_t kMaxNameBytes = 512;
constexpr size_t kMaxKeys = 1000;

}  // namespace

std::string AuditText(absl::string_view bytes) {
  std::string out;
  size_t i = 0;
  while (i < bytes.size() && out.size() < kMaxNameBytes) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xE  ? 3
                 : (c >> 3) == 0x1E ? 4
                                    : 0;
    bool ok = len > 0 && i + len <= bytes.size() && (len == 1 || c >= 0xC2);
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(bytes[i + k]) & 0xC0) == 0x80;
    }
    if (ok && c >= 0x20 && c != 0x7F) {
      out.append(bytes.data() + i, len);
      i += len;
    } else {
      absl::StrAppend(&out, absl::StrFormat("\\x%02X", c));
      ++i;
    }
  }
  if (i < bytes.size()) out.append("...");
  return out;
}

namespace {

class Recorder {
 public:
  void Add(absl::string_view ns, absl::string_view key) {
    namespaces_.push_back(AuditText(ns));
    if (keys_.size() < kMaxKeys) keys_.push_back(AuditText(absl::StrCat(ns, "/", key)));
  }
  void AddNamespace(absl::string_view ns) { namespaces_.push_back(AuditText(ns)); }
  void FillInto(v1::AuditEvent* event) {
    std::sort(namespaces_.begin(), namespaces_.end());
    namespaces_.erase(std::unique(namespaces_.begin(), namespaces_.end()), namespaces_.end());
    for (std::string& ns : namespaces_) event->add_namespaces(std::move(ns));
    for (std::string& key : keys_) event->add_keys(std::move(key));
  }

 private:
  std::vector<std::string> namespaces_;
  std::vector<std::string> keys_;
};

class AuditInterceptor final : public grpc::experimental::Interceptor {
 public:
  AuditInterceptor(grpc::experimental::ServerRpcInfo* info, Method method, AuditLog* log,
                   const CallerIdentities* identities, const std::function<int64_t()>* head)
      : info_(info), method_(method), log_(log), identities_(identities), head_(head) {
    event_.set_method(info->method());
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      event_.set_old_revision((*head_)());
      if (const void* message = methods->GetRecvMessage(); message != nullptr) {
        OnRequest(message);
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const void* response = nullptr;
      if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
        response = methods->GetSendMessage();
      }
      Record(status, status.ok() ? response : nullptr);
    }
    methods->Proceed();
  }

 private:
  void OnRequest(const void* message) {
    switch (method_) {
      case Method::kPut: {
        const auto& r = *static_cast<const v1::PutRequest*>(message);
        keys_.Add(r.namespace_(), r.key());
        break;
      }
      case Method::kDelete: {
        const auto& r = *static_cast<const v1::DeleteRequest*>(message);
        keys_.Add(r.namespace_(), r.key());
        break;
      }
      case Method::kTxn: {
        const auto& r = *static_cast<const v1::TxnRequest*>(message);
        for (const v1::TxnOperation& op : r.operations()) {
          if (op.has_put()) keys_.Add(op.put().namespace_(), op.put().key());
          if (op.has_delete_()) keys_.Add(op.delete_().namespace_(), op.delete_().key());
        }
        break;
      }
      case Method::kRollback: {
        const auto& r = *static_cast<const v1::RollbackRequest*>(message);
        keys_.AddNamespace(r.namespace_());
        break;
      }
      case Method::kUpdatePolicy: {
        const auto& r = *static_cast<const v1::UpdatePolicyRequest*>(message);
        event_.set_old_revision(r.policy().version());
        break;
      }
    }
  }

  void Record(const grpc::Status& status, const void* response) {
    if (response != nullptr) {
      switch (method_) {
        case Method::kPut:
          event_.set_new_revision(
              static_cast<const v1::PutResponse*>(response)->header().revision());
          break;
        case Method::kDelete:
          event_.set_new_revision(
              static_cast<const v1::DeleteResponse*>(response)->header().revision());
          break;
        case Method::kTxn:
          event_.set_new_revision(
              static_cast<const v1::TxnResponse*>(response)->header().revision());
          break;
        case Method::kRollback: {
          const auto& r = *static_cast<const v1::RollbackResponse*>(response);
          // A rollback to the state in force writes nothing.
          if (r.changes_size() > 0) event_.set_new_revision(r.header().revision());
          for (const v1::Change& c : r.changes()) keys_.Add(c.namespace_(), c.key());
          break;
        }
        case Method::kUpdatePolicy:
          event_.set_new_revision(
              static_cast<const v1::UpdatePolicyResponse*>(response)->policy().version());
          break;
      }
    }
    SetAuditTime(absl::Now(), &event_);
    event_.set_identity(identities_->Of(*info_->server_context()));
    event_.set_outcome(StatusCodeName(static_cast<int>(status.error_code())));
    if (!status.ok()) event_.set_detail(AuditText(status.error_message()));
    keys_.FillInto(&event_);
    if (absl::Status s = log_->Append(event_); !s.ok()) {
      LogLine(absl::StrCat("audit event not recorded: ", s.message()));
    }
  }

  grpc::experimental::ServerRpcInfo* const info_;
  const Method method_;
  AuditLog* const log_;
  const CallerIdentities* const identities_;
  const std::function<int64_t()>* const head_;
  v1::AuditEvent event_;
  Recorder keys_;
};

class AuditInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  AuditInterceptorFactory(AuditLog* log, const CallerIdentities* identities,
                          std::function<int64_t()> head)
      : log_(log), identities_(identities), head_(std::move(head)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const absl::string_view name = info->method() == nullptr ? "" : info->method();
    for (const auto& audited : kAudited) {
      if (audited.name == name) {
        return new AuditInterceptor(info, audited.method, log_, identities_, &head_);
      }
    }
    return nullptr;  // not audited: no interceptor at all on this call
  }

 private:
  AuditLog* const log_;
  const CallerIdentities* const identities_;
  const std::function<int64_t()> head_;
};

}  // namespace

bool IsAuditedMethod(absl::string_view method) {
  for (const auto& audited : kAudited) {
    if (audited.name == method) return true;
  }
  return false;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeAuditInterceptorFactory(
    AuditLog* log, const CallerIdentities* identities, std::function<int64_t()> head_revision) {
  return std::make_unique<AuditInterceptorFactory>(log, identities, std::move(head_revision));
}

}  // namespace snapconf
