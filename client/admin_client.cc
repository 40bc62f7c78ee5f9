// client/admin_client.cc
//
// The gRPC AdminConnection: one channel and stub pair per endpoint, a shared
// "preferred endpoint" index, and the rule that decides when a call may move
// on to the next endpoint (see the header). Everything protobuf stays here.
#include "client/admin_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/internal/retry_hint.h"
#include "common/status_macros.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"

namespace snapconf::client {
namespace {

namespace v1 = ::snapconf::v1;

// Status payload that marks a write with an unknown outcome, so callers can
// test for it without parsing messages.
constexpr char kOutcomeUnknownUrl[] = "type.snapconf.dev/snapconf.client.OutcomeUnknown";
constexpr char kOutcomeUnknownPrefix[] = "outcome unknown: ";

// Responses can carry a whole Txn (before and after entries of up to 4 MiB
// each); gRPC's 4 MiB receive default is too small for that.
constexpr int kMaxReceiveBytes = 64 << 20;
// Retries of a call refused for its identity's request rate (each after the
// server's retry-after-ms hint, all within the call's deadline).
constexpr int kMaxRateLimitedRetries = 3;

absl::Status FromGrpc(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

absl::Status OutcomeUnknown(const absl::Status& cause, const std::string& endpoint) {
  absl::Status s(cause.code(),
                 absl::StrCat(kOutcomeUnknownPrefix, cause.message(), " (the write was sent to ",
                              endpoint, "; check before retrying)"));
  s.SetPayload(kOutcomeUnknownUrl, absl::Cord("1"));
  return s;
}

Entry FromProto(const v1::Entry& e) {
  Entry out;
  out.ns = e.namespace_();
  out.key = e.key();
  out.value = e.value();
  out.content_type = e.content_type();
  out.create_revision = e.create_revision();
  out.mod_revision = e.mod_revision();
  out.version = e.version();
  return out;
}

Change FromProto(const v1::Change& c) {
  Change out;
  out.ns = c.namespace_();
  out.key = c.key();
  if (c.has_before()) out.before = FromProto(c.before());
  if (c.has_after()) out.after = FromProto(c.after());
  return out;
}

std::vector<Change> FromProto(const google::protobuf::RepeatedPtrField<v1::Change>& changes) {
  std::vector<Change> out;
  out.reserve(changes.size());
  for (const auto& c : changes) out.push_back(FromProto(c));
  return out;
}

AccessPolicy PolicyFromProto(const v1::Policy& p) {
  AccessPolicy out;
  for (const v1::Role& r : p.roles()) {
    PolicyRole role;
    role.name = r.name();
    role.namespaces.assign(r.namespace_patterns().begin(), r.namespace_patterns().end());
    switch (r.permission()) {
      case v1::PERMISSION_READ:
        role.permission = "read";
        break;
      case v1::PERMISSION_WRITE:
        role.permission = "write";
        break;
      case v1::PERMISSION_ADMIN:
        role.permission = "admin";
        break;
      default:
        break;
    }
    out.roles.push_back(std::move(role));
  }
  for (const v1::RoleBinding& b : p.bindings()) {
    out.bindings.push_back({b.identity(), {b.roles().begin(), b.roles().end()}});
  }
  out.version = p.version();
  return out;
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

v1::Compare::Target ToProto(Compare::Target t) {
  switch (t) {
    case Compare::Target::kModRevision:
      return v1::Compare::TARGET_MOD_REVISION;
    case Compare::Target::kCreateRevision:
      return v1::Compare::TARGET_CREATE_REVISION;
    case Compare::Target::kVersion:
      return v1::Compare::TARGET_VERSION;
    case Compare::Target::kExists:
      return v1::Compare::TARGET_EXISTS;
    case Compare::Target::kValue:
      return v1::Compare::TARGET_VALUE;
    case Compare::Target::kNamespaceRevision:
      return v1::Compare::TARGET_NAMESPACE_REVISION;
  }
  return v1::Compare::TARGET_UNSPECIFIED;
}

v1::Compare::Operator ToProto(Compare::Op op) {
  switch (op) {
    case Compare::Op::kEqual:
      return v1::Compare::OPERATOR_EQUAL;
    case Compare::Op::kNotEqual:
      return v1::Compare::OPERATOR_NOT_EQUAL;
    case Compare::Op::kLess:
      return v1::Compare::OPERATOR_LESS;
    case Compare::Op::kGreater:
      return v1::Compare::OPERATOR_GREATER;
  }
  return v1::Compare::OPERATOR_UNSPECIFIED;
}

// Waits until `channel` is READY or it is clear that it will not be before
// `deadline`. On failure, says why; in both cases nothing was sent through the
// channel by this call: either a connection attempt failed (TRANSIENT_FAILURE)
// or the connect budget ran out first.
absl::Status ConnectBefore(grpc::Channel& channel, absl::Time deadline) {
  grpc_connectivity_state state = channel.GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      return absl::UnavailableError("connection failed");
    }
    if (!channel.WaitForStateChange(state, absl::ToChronoTime(deadline))) {
      return absl::UnavailableError("not connected in time");
    }
    state = channel.GetState(/*try_to_connect=*/true);
  }
  return absl::OkStatus();
}

class GrpcAdminConnection final : public AdminConnection {
 public:
  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::ConfigService::Stub> config;
    std::unique_ptr<v1::AdminService::Stub> admin;
    std::unique_ptr<v1::WatchService::Stub> watch;
  };

  GrpcAdminConnection(std::vector<Endpoint> endpoints, absl::Duration timeout,
                      std::string bearer_token)
      : endpoints_(std::move(endpoints)),
        timeout_(timeout),
        bearer_token_(std::move(bearer_token)) {}

  absl::StatusOr<GetResult> Get(const std::string& ns, const std::string& key,
                                const ReadOptions& options) override {
    v1::GetRequest req;
    req.set_namespace_(ns);
    req.set_key(key);
    req.set_revision(options.revision);
    req.set_min_revision(options.min_revision);
    v1::GetResponse resp;
    RETURN_IF_ERROR(Invoke(kRead, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->Get(ctx, req, &resp);
    }));
    GetResult out;
    out.entry = FromProto(resp.entry());
    // The server may leave the names empty; the caller asked for them.
    if (out.entry.ns.empty()) out.entry.ns = ns;
    if (out.entry.key.empty()) out.entry.key = key;
    out.revision = resp.header().revision();
    return out;
  }

  absl::StatusOr<ListPage> List(const std::string& ns, const ListOptions& options) override {
    v1::ListRequest req;
    req.set_namespace_(ns);
    req.set_prefix(options.prefix);
    req.set_page_size(options.page_size);
    req.set_page_token(options.page_token);
    req.set_revision(options.revision);
    req.set_min_revision(options.min_revision);
    req.set_keys_only(options.keys_only);
    v1::ListResponse resp;
    RETURN_IF_ERROR(Invoke(kRead, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->List(ctx, req, &resp);
    }));
    ListPage out;
    out.entries.reserve(resp.entries_size());
    for (const auto& e : resp.entries()) {
      out.entries.push_back(FromProto(e));
      if (out.entries.back().ns.empty()) out.entries.back().ns = ns;
    }
    out.next_page_token = resp.next_page_token();
    out.revision = resp.header().revision();
    return out;
  }

  absl::StatusOr<NamespaceList> ListNamespaces(std::int64_t revision) override {
    v1::ListNamespacesRequest req;
    req.set_revision(revision);
    v1::ListNamespacesResponse resp;
    RETURN_IF_ERROR(Invoke(kRead, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->ListNamespaces(ctx, req, &resp);
    }));
    NamespaceList out;
    for (const auto& n : resp.namespaces()) {
      out.namespaces.push_back(NamespaceInfo{n.namespace_(), n.key_count()});
    }
    out.revision = resp.header().revision();
    return out;
  }

  absl::StatusOr<PutResult> Put(const std::string& ns, const std::string& key,
                                const std::string& value, const PutOptions& options) override {
    v1::PutRequest req;
    req.set_namespace_(ns);
    req.set_key(key);
    req.set_value(value);
    req.set_content_type(options.content_type);
    if (options.expected_mod_revision) {
      req.set_expected_mod_revision(*options.expected_mod_revision);
    }
    req.set_message(options.message);
    v1::PutResponse resp;
    RETURN_IF_ERROR(Invoke(kWrite, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->Put(ctx, req, &resp);
    }));
    PutResult out;
    out.entry = FromProto(resp.entry());
    if (out.entry.ns.empty()) out.entry.ns = ns;
    if (out.entry.key.empty()) out.entry.key = key;
    out.revision = resp.header().revision();
    return out;
  }

  absl::StatusOr<DeleteResult> Delete(const std::string& ns, const std::string& key,
                                      const DeleteOptions& options) override {
    v1::DeleteRequest req;
    req.set_namespace_(ns);
    req.set_key(key);
    if (options.expected_mod_revision) {
      req.set_expected_mod_revision(*options.expected_mod_revision);
    }
    req.set_message(options.message);
    v1::DeleteResponse resp;
    RETURN_IF_ERROR(Invoke(kWrite, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->Delete(ctx, req, &resp);
    }));
    DeleteResult out;
    out.deleted = FromProto(resp.deleted());
    if (out.deleted.ns.empty()) out.deleted.ns = ns;
    if (out.deleted.key.empty()) out.deleted.key = key;
    out.revision = resp.header().revision();
    return out;
  }

  absl::StatusOr<ChangeList> Txn(const TxnSpec& spec) override {
    v1::TxnRequest req;
    for (const Compare& c : spec.compares) {
      v1::Compare* pc = req.add_compares();
      pc->set_namespace_(c.ns);
      pc->set_key(c.key);
      pc->set_target(ToProto(c.target));
      pc->set_op(ToProto(c.op));
      pc->set_number(c.number);
      pc->set_value(c.value);
    }
    for (const TxnOperation& op : spec.operations) {
      v1::TxnOperation* po = req.add_operations();
      if (op.kind == TxnOperation::Kind::kPut) {
        v1::TxnOperation::Put* put = po->mutable_put();
        put->set_namespace_(op.ns);
        put->set_key(op.key);
        put->set_value(op.value);
        put->set_content_type(op.content_type);
      } else {
        v1::TxnOperation::Delete* del = po->mutable_delete_();
        del->set_namespace_(op.ns);
        del->set_key(op.key);
      }
    }
    req.set_message(spec.message);
    v1::TxnResponse resp;
    RETURN_IF_ERROR(Invoke(kWrite, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->Txn(ctx, req, &resp);
    }));
    return ChangeList{FromProto(resp.changes()), resp.header().revision()};
  }

  absl::StatusOr<HistoryPage> History(const HistoryOptions& options) override {
    v1::HistoryRequest req;
    req.set_namespace_(options.ns);
    req.set_key(options.key);
    req.set_from_revision(options.from_revision);
    req.set_to_revision(options.to_revision);
    req.set_page_size(options.page_size);
    req.set_page_token(options.page_token);
    v1::HistoryResponse resp;
    RETURN_IF_ERROR(Invoke(kRead, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->History(ctx, req, &resp);
    }));
    HistoryPage out;
    for (const auto& r : resp.records()) {
      HistoryRecord rec;
      rec.revision = r.revision();
      rec.commit_time = FromProto(r.commit_time());
      rec.author = r.author();
      rec.message = r.message();
      rec.changes = FromProto(r.changes());
      out.records.push_back(std::move(rec));
    }
    out.next_page_token = resp.next_page_token();
    out.revision = resp.header().revision();
    return out;
  }

  absl::StatusOr<ChangeList> Diff(const std::string& ns, std::int64_t from_revision,
                                  const DiffOptions& options) override {
    v1::DiffRequest req;
    req.set_namespace_(ns);
    req.set_prefix(options.prefix);
    req.set_from_revision(from_revision);
    req.set_to_revision(options.to_revision);
    v1::DiffResponse resp;
    RETURN_IF_ERROR(Invoke(kRead, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->Diff(ctx, req, &resp);
    }));
    return ChangeList{FromProto(resp.changes()), resp.header().revision()};
  }

  absl::StatusOr<ChangeList> Rollback(const std::string& ns, std::int64_t to_revision,
                                      const RollbackOptions& options) override {
    v1::RollbackRequest req;
    req.set_namespace_(ns);
    req.set_to_revision(to_revision);
    if (options.expected_namespace_revision) {
      req.set_expected_namespace_revision(*options.expected_namespace_revision);
    }
    req.set_message(options.message);
    v1::RollbackResponse resp;
    RETURN_IF_ERROR(Invoke(kWrite, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.config->Rollback(ctx, req, &resp);
    }));
    return ChangeList{FromProto(resp.changes()), resp.header().revision()};
  }

  absl::StatusOr<ServerStatus> GetServerStatus() override {
    v1::GetServerStatusRequest req;
    v1::GetServerStatusResponse resp;
    RETURN_IF_ERROR(Invoke(kRead, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.admin->GetServerStatus(ctx, req, &resp);
    }));
    ServerStatus out;
    out.node_id = resp.node_id();
    out.version = resp.version();
    out.store = resp.store();
    out.revision = resp.revision();
    out.oldest_revision = resp.oldest_revision();
    out.key_count = resp.key_count();
    out.namespace_count = resp.namespace_count();
    out.writable = resp.writable();
    out.open_watches = resp.open_watches();
    out.start_time = FromProto(resp.start_time());
    out.unavailable_reason = resp.unavailable_reason();
    return out;
  }

  absl::StatusOr<AccessPolicy> GetPolicy() override {
    v1::GetPolicyRequest req;
    v1::GetPolicyResponse resp;
    RETURN_IF_ERROR(Invoke(kRead, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.admin->GetPolicy(ctx, req, &resp);
    }));
    return PolicyFromProto(resp.policy());
  }

  absl::StatusOr<AccessPolicy> UpdatePolicy(const AccessPolicy& policy, bool force) override {
    v1::UpdatePolicyRequest req;
    v1::Policy* p = req.mutable_policy();
    for (const PolicyRole& role : policy.roles) {
      v1::Role* r = p->add_roles();
      r->set_name(role.name);
      for (const std::string& pattern : role.namespaces) r->add_namespace_patterns(pattern);
      r->set_permission(role.permission == "read"    ? v1::PERMISSION_READ
                        : role.permission == "write" ? v1::PERMISSION_WRITE
                        : role.permission == "admin" ? v1::PERMISSION_ADMIN
                                                     : v1::PERMISSION_UNSPECIFIED);
    }
    for (const PolicyBinding& binding : policy.bindings) {
      v1::RoleBinding* b = p->add_bindings();
      b->set_identity(binding.identity);
      for (const std::string& role : binding.roles) b->add_roles(role);
    }
    p->set_version(policy.version);
    req.set_force(force);
    v1::UpdatePolicyResponse resp;
    RETURN_IF_ERROR(Invoke(kWrite, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.admin->UpdatePolicy(ctx, req, &resp);
    }));
    return PolicyFromProto(resp.policy());
  }

  absl::StatusOr<AuditPage> ListAuditEvents(const AuditOptions& options) override {
    v1::ListAuditEventsRequest req;
    req.set_page_size(options.page_size);
    req.set_page_token(options.page_token);
    req.set_identity(options.identity);
    req.set_namespace_(options.ns);
    v1::ListAuditEventsResponse resp;
    RETURN_IF_ERROR(Invoke(kRead, [&](Endpoint& ep, grpc::ClientContext* ctx) {
      return ep.admin->ListAuditEvents(ctx, req, &resp);
    }));
    AuditPage out;
    for (const v1::AuditEvent& e : resp.events()) {
      AuditEvent event;
      event.time = FromProto(e.time());
      event.identity = e.identity();
      event.method = e.method();
      event.namespaces.assign(e.namespaces().begin(), e.namespaces().end());
      event.keys.assign(e.keys().begin(), e.keys().end());
      event.old_revision = e.old_revision();
      event.new_revision = e.new_revision();
      event.outcome = e.outcome();
      event.detail = e.detail();
      out.events.push_back(std::move(event));
    }
    out.next_page_token = resp.next_page_token();
    return out;
  }

  absl::Status Watch(const WatchSpec& spec, absl::Duration max_duration,
                     const std::function<bool(const WatchEvent&)>& on_event) override {
    v1::WatchRequest create;
    v1::WatchCreateRequest* c = create.mutable_create();
    for (const WatchFilter& f : spec.filters) {
      v1::WatchFilter* filter = c->add_filters();
      filter->set_namespace_(f.ns);
      for (const std::string& p : f.prefixes) filter->add_prefixes(p);
    }
    c->set_start_revision(spec.start_revision);
    c->set_mode(spec.latest_state ? v1::DELIVERY_MODE_LATEST_STATE
                                  : v1::DELIVERY_MODE_EVERY_REVISION);
    // The first endpoint that connects serves the whole stream.
    const absl::Time connect_deadline = absl::Now() + timeout_;
    const std::size_t n = endpoints_.size();
    const std::size_t start = preferred_.load(std::memory_order_relaxed) % n;
    Endpoint* chosen = nullptr;
    std::vector<std::string> failures;
    for (std::size_t i = 0; i < n && chosen == nullptr; ++i) {
      Endpoint& ep = endpoints_[(start + i) % n];
      const absl::Time share =
          absl::Now() + (connect_deadline - absl::Now()) / static_cast<std::int64_t>(n - i);
      if (absl::Status connected = ConnectBefore(*ep.channel, share); !connected.ok()) {
        failures.push_back(absl::StrCat(ep.address, " (", connected.message(), ")"));
        continue;
      }
      chosen = &ep;
    }
    if (chosen == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("no endpoint reachable: ", absl::StrJoin(failures, ", ")));
    }
    grpc::ClientContext ctx;
    const bool bounded = max_duration < absl::InfiniteDuration();
    if (bounded) ctx.set_deadline(absl::ToChronoTime(absl::Now() + max_duration));
    if (!bearer_token_.empty()) ctx.AddMetadata("authorization", "Bearer " + bearer_token_);
    auto stream = chosen->watch->Watch(&ctx);
    if (!stream->Write(create)) return FromGrpc(stream->Finish());
    v1::WatchResponse resp;
    bool stopped = false;
    while (stream->Read(&resp)) {
      if (!on_event(WatchEventFromProto(resp))) {
        stopped = true;
        ctx.TryCancel();
        break;
      }
    }
    const grpc::Status end = stream->Finish();
    if (stopped || end.ok()) return absl::OkStatus();
    if (bounded && end.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return absl::OkStatus();
    }
    return FromGrpc(end);
  }

 private:
  enum Kind { kRead, kWrite };

  static WatchEvent WatchEventFromProto(const v1::WatchResponse& resp) {
    WatchEvent out;
    if (resp.has_reset()) {
      const v1::WatchReset& r = resp.reset();
      out.kind = WatchEvent::Kind::kReset;
      out.revision = r.revision();
      out.more = r.more();
      std::string reason = v1::ResetReason_Name(r.reason());
      constexpr absl::string_view kPrefix = "RESET_REASON_";
      if (absl::StartsWith(reason, kPrefix)) reason = reason.substr(kPrefix.size());
      out.reset_reason = absl::AsciiStrToLower(reason);
      for (const v1::Entry& e : r.entries()) out.entries.push_back(FromProto(e));
    } else if (resp.has_changes()) {
      const v1::WatchChanges& c = resp.changes();
      out.kind = WatchEvent::Kind::kChanges;
      out.revision = c.revision();
      out.after_revision = c.after_revision();
      out.net = c.net();
      for (const v1::RevisionChanges& r : c.revisions()) {
        out.revisions.push_back({r.revision(), FromProto(r.changes())});
      }
    } else {
      out.kind = WatchEvent::Kind::kProgress;
      out.revision = resp.progress().revision();
    }
    return out;
  }

  // Runs `call` on one endpoint after another, starting with the preferred
  // one, within one overall deadline. Each endpoint first gets a share of the
  // remaining time to connect; an endpoint that cannot connect was never sent
  // anything, so moving on is safe for reads and writes alike. After a send,
  // only reads move on, and only on UNAVAILABLE.
  template <typename Call>
  absl::Status Invoke(Kind kind, Call&& call) {
    const absl::Time deadline = absl::Now() + timeout_;
    const std::size_t n = endpoints_.size();
    const std::size_t start = preferred_.load(std::memory_order_relaxed) % n;
    std::vector<std::string> failures;
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t index = (start + i) % n;
      Endpoint& ep = endpoints_[index];
      const absl::Duration remaining = deadline - absl::Now();
      if (remaining <= absl::ZeroDuration()) break;
      const absl::Time connect_deadline =
          absl::Now() + remaining / static_cast<std::int64_t>(n - i);
      if (absl::Status connected = ConnectBefore(*ep.channel, connect_deadline); !connected.ok()) {
        failures.push_back(absl::StrCat(ep.address, " (", connected.message(), ")"));
        continue;
      }
      grpc::Status result;
      // A call refused for its identity's rate changed nothing: wait for the
      // server's hint and try again, a few times, within the deadline.
      for (int limited = 0;; ++limited) {
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(deadline));
        if (!bearer_token_.empty()) ctx.AddMetadata("authorization", "Bearer " + bearer_token_);
        result = call(ep, &ctx);
        if (result.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED ||
            limited == kMaxRateLimitedRetries) {
          break;
        }
        const std::optional<absl::Duration> hint = internal::RetryAfterHint(ctx);
        if (!hint.has_value() || absl::Now() + *hint >= deadline) break;
        absl::SleepFor(*hint);
      }
      if (result.ok()) {
        preferred_.store(index, std::memory_order_relaxed);
        return absl::OkStatus();
      }
      absl::Status status = FromGrpc(result);
      const bool transport_like = status.code() == absl::StatusCode::kUnavailable ||
                                  status.code() == absl::StatusCode::kDeadlineExceeded;
      if (kind == kWrite && transport_like) return OutcomeUnknown(status, ep.address);
      if (kind == kRead && status.code() == absl::StatusCode::kUnavailable && i + 1 < n) {
        failures.push_back(absl::StrCat(ep.address, " (", status.message(), ")"));
        continue;
      }
      return status;
    }
    if (failures.empty()) {
      return absl::DeadlineExceededError("deadline exceeded before any endpoint was tried");
    }
    return absl::UnavailableError(
        absl::StrCat("no endpoint reachable: ", absl::StrJoin(failures, ", ")));
  }

  std::vector<Endpoint> endpoints_;
  const absl::Duration timeout_;
  const std::string bearer_token_;
  // Index of the endpoint that answered last; a hint, so relaxed is enough.
  std::atomic<std::size_t> preferred_{0};
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(absl::string_view(list.data(), list.size()), ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) continue;
    const std::size_t colon = part.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(part.substr(colon + 1), &port) || port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad endpoint \"", part, "\": want host:port"));
    }
    out.emplace_back(part);
  }
  if (out.empty()) return absl::InvalidArgumentError("no endpoint given");
  return out;
}

bool IsOutcomeUnknown(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kOutcomeUnknownUrl).has_value();
}

absl::StatusOr<std::shared_ptr<AdminConnection>> MakeAdminConnection(
    const AdminClientOptions& options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("no endpoint given");
  if (options.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("call timeout must be positive");
  }
  const ChannelSecurity& sec = options.security;
  std::shared_ptr<grpc::ChannelCredentials> creds;
  switch (sec.mode) {
    case ChannelSecurity::Mode::kInsecure:
      if (!sec.bearer_token.empty()) {
        return absl::InvalidArgumentError("a bearer token requires TLS");
      }
      creds = grpc::InsecureChannelCredentials();
      break;
    case ChannelSecurity::Mode::kTls: {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = sec.root_certs_pem;
      ssl.pem_cert_chain = sec.client_cert_chain_pem;
      ssl.pem_private_key = sec.client_private_key_pem;
      creds = grpc::SslCredentials(ssl);
      break;
    }
  }
  if (creds == nullptr) return absl::InvalidArgumentError("unusable channel credentials");

  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  // Short reconnect backoff: a restarted server is usable again within a
  // second instead of gRPC's default of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // gRPC reads this argument as the least time one connection attempt (TCP, TLS and HTTP/2
  // handshakes) is allowed, not as a retry spacing; a small value fails every handshake on a
  // loaded host or a slow link. A call never waits longer than its own timeout anyway.
  args.SetInt(
      GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
      static_cast<int>(std::max<int64_t>(1000, absl::ToInt64Milliseconds(options.call_timeout))));
  // Each endpoint gets its own connection even when two resolve alike.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);

  std::vector<GrpcAdminConnection::Endpoint> endpoints;
  for (const std::string& address : options.endpoints) {
    GrpcAdminConnection::Endpoint ep;
    ep.address = address;
    ep.channel = grpc::CreateCustomChannel(address, creds, args);
    ep.config = v1::ConfigService::NewStub(ep.channel);
    ep.admin = v1::AdminService::NewStub(ep.channel);
    ep.watch = v1::WatchService::NewStub(ep.channel);
    endpoints.push_back(std::move(ep));
  }
  return std::shared_ptr<AdminConnection>(std::make_shared<GrpcAdminConnection>(
      std::move(endpoints), options.call_timeout, sec.bearer_token));
}

absl::StatusOr<AdminClient> AdminClient::Create(const AdminClientOptions& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<AdminConnection> connection, MakeAdminConnection(options));
  return AdminClient(std::move(connection));
}

absl::StatusOr<ListPage> AdminClient::ListAll(const std::string& ns, ListOptions options,
                                              std::size_t max_entries) {
  // The server caps pages at 5000 entries; asking for no more than needed
  // keeps a limited listing from transferring whole pages.
  constexpr std::size_t kMaxPage = 5000;
  ListPage all;
  bool first = true;
  while (true) {
    if (max_entries > 0) {
      options.page_size = static_cast<std::int32_t>(
          std::min<std::size_t>(kMaxPage, max_entries - all.entries.size()));
    }
    ASSIGN_OR_RETURN(ListPage page, connection_->List(ns, options));
    if (first) {
      all.revision = page.revision;
      first = false;
    }
    // page_size asks for no more than fits; a page that still overshoots is
    // cut, and its token then skips the cut entries (the limit is what the
    // caller asked for, so nothing is lost from its point of view).
    for (Entry& e : page.entries) {
      if (max_entries > 0 && all.entries.size() == max_entries) break;
      all.entries.push_back(std::move(e));
    }
    if (page.next_page_token.empty()) return all;
    if (max_entries > 0 && all.entries.size() == max_entries) {
      all.next_page_token = page.next_page_token;
      return all;
    }
    options.page_token = page.next_page_token;
  }
}

}  // namespace snapconf::client
