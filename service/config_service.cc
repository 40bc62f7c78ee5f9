#include "service/config_service.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "service/convert.h"
#include "service/security/transport.h"
#include "service/validate.h"

namespace snapconf {
namespace {

// gRPC reports "no deadline" as the far end of system_clock.
absl::Time CallDeadline(const grpc::CallbackServerContext& ctx) {
  const auto deadline = ctx.deadline();
  const auto now = std::chrono::system_clock::now();
  if (deadline - now > std::chrono::hours(24 * 365)) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

absl::Status CheckRevisionField(int64_t value, absl::string_view field) {
  if (value < 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is negative (", value, ")"));
  }
  return absl::OkStatus();
}

absl::Status NotFound(absl::string_view ns, absl::string_view key, Revision revision) {
  return absl::NotFoundError(
      absl::StrCat("key ", key, " not found in namespace ", ns, " at revision ", revision));
}

// Request fields a continuation token is bound to; names never contain NUL.
std::string ListBinding(const v1::ListRequest& r) {
  return absl::StrCat("list", absl::string_view("\0", 1), r.namespace_(),
                      absl::string_view("\0", 1), r.prefix(), absl::string_view("\0", 1),
                      r.keys_only() ? "k" : "v");
}

std::string HistoryBinding(const v1::HistoryRequest& r) {
  return absl::StrCat("history", absl::string_view("\0", 1), r.namespace_(),
                      absl::string_view("\0", 1), r.key(), absl::string_view("\0", 1),
                      r.from_revision());
}

absl::StatusOr<Compare> CompareFromProto(const v1::Compare& c, size_t index, const Limits& limits) {
  const std::string field = absl::StrCat("compares[", index, "]");
  Compare out;
  RETURN_IF_ERROR(ValidateNamespace(c.namespace_(), limits, field + ".namespace"));
  out.ns = c.namespace_();
  switch (c.target()) {
    case v1::Compare::TARGET_MOD_REVISION:
      out.target = Compare::Target::kModRevision;
      break;
    case v1::Compare::TARGET_CREATE_REVISION:
      out.target = Compare::Target::kCreateRevision;
      break;
    case v1::Compare::TARGET_VERSION:
      out.target = Compare::Target::kVersion;
      break;
    case v1::Compare::TARGET_EXISTS:
      out.target = Compare::Target::kExists;
      break;
    case v1::Compare::TARGET_VALUE:
      out.target = Compare::Target::kValue;
      break;
    case v1::Compare::TARGET_NAMESPACE_REVISION:
      out.target = Compare::Target::kNamespaceRevision;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ".target is unspecified or unknown"));
  }
  if (out.target == Compare::Target::kNamespaceRevision) {
    if (!c.key().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".key must be empty for TARGET_NAMESPACE_REVISION"));
    }
  } else {
    RETURN_IF_ERROR(ValidateKey(c.key(), limits, field + ".key"));
    out.key = c.key();
  }
  switch (c.op()) {
    case v1::Compare::OPERATOR_EQUAL:
      out.op = Compare::Op::kEqual;
      break;
    case v1::Compare::OPERATOR_NOT_EQUAL:
      out.op = Compare::Op::kNotEqual;
      break;
    case v1::Compare::OPERATOR_LESS:
      out.op = Compare::Op::kLess;
      break;
    case v1::Compare::OPERATOR_GREATER:
      out.op = Compare::Op::kGreater;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(field, ".op is unspecified or unknown"));
  }
  if (out.target == Compare::Target::kValue) {
    if (out.op != Compare::Op::kEqual && out.op != Compare::Op::kNotEqual) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": values compare only with EQUAL or NOT_EQUAL"));
    }
    RETURN_IF_ERROR(ValidateValue(c.value(), limits));
    out.value = c.value();
  } else {
    if (c.number() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".number is negative"));
    }
    if (out.target == Compare::Target::kExists && c.number() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".number must be 0 or 1 for TARGET_EXISTS"));
    }
    out.number = c.number();
  }
  return out;
}

// Validates a Txn and turns it into a WriteRequest.
absl::StatusOr<WriteRequest> TxnFromProto(const v1::TxnRequest& r, const Limits& limits) {
  if (static_cast<size_t>(r.compares_size()) > limits.max_txn_compares) {
    return absl::InvalidArgumentError(absl::StrCat(
        "txn has ", r.compares_size(), " compares, over the limit of ", limits.max_txn_compares));
  }
  if (static_cast<size_t>(r.operations_size()) > limits.max_txn_operations) {
    return absl::InvalidArgumentError(absl::StrCat("txn has ", r.operations_size(),
                                                   " operations, over the limit of ",
                                                   limits.max_txn_operations));
  }
  RETURN_IF_ERROR(ValidateMessage(r.message(), limits));
  WriteRequest out;
  out.message = r.message();
  for (int i = 0; i < r.compares_size(); ++i) {
    ASSIGN_OR_RETURN(Compare c, CompareFromProto(r.compares(i), i, limits));
    out.compares.push_back(std::move(c));
  }
  absl::flat_hash_set<std::pair<absl::string_view, absl::string_view>> seen;
  size_t bytes = 0;
  for (int i = 0; i < r.operations_size(); ++i) {
    const v1::TxnOperation& op = r.operations(i);
    const std::string field = absl::StrCat("operations[", i, "]");
    absl::string_view ns, key;
    if (op.has_put()) {
      const auto& put = op.put();
      RETURN_IF_ERROR(ValidateNamespace(put.namespace_(), limits, field + ".put.namespace"));
      RETURN_IF_ERROR(ValidateKey(put.key(), limits, field + ".put.key"));
      RETURN_IF_ERROR(ValidateValue(put.value(), limits));
      RETURN_IF_ERROR(ValidateContentType(put.content_type(), limits));
      ns = put.namespace_();
      key = put.key();
      bytes += put.value().size() + put.content_type().size();
      out.changes.Put(put.namespace_(), put.key(), put.value(), put.content_type());
    } else if (op.has_delete_()) {
      const auto& del = op.delete_();
      RETURN_IF_ERROR(ValidateNamespace(del.namespace_(), limits, field + ".delete.namespace"));
      RETURN_IF_ERROR(ValidateKey(del.key(), limits, field + ".delete.key"));
      ns = del.namespace_();
      key = del.key();
      out.changes.Delete(del.namespace_(), del.key());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(field, " has no put or delete"));
    }
    bytes += ns.size() + key.size();
    if (!seen.insert({ns, key}).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, " writes ", ns, " ", key, ", which an earlier operation writes"));
    }
  }
  if (bytes > limits.max_txn_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("txn writes ", bytes, " bytes, over the limit of ", limits.max_txn_bytes));
  }
  return out;
}

const EntryChange* FindChange(const std::vector<EntryChange>& changes, std::string_view ns,
                              std::string_view key) {
  for (const EntryChange& c : changes) {
    if (c.ns == ns && c.key == key) return &c;
  }
  return nullptr;
}

}  // namespace

ConfigServiceImpl::ConfigServiceImpl(Engine* engine, const Limits& limits, PageTokenCodec tokens,
                                     std::string node_id, const CallerIdentities* identities,
                                     const Authorizer* authz)
    : engine_(engine),
      limits_(limits),
      tokens_(std::move(tokens)),
      node_id_(std::move(node_id)),
      identities_(identities),
      authz_(authz) {}

absl::Status ConfigServiceImpl::Allow(const grpc::CallbackServerContext& ctx, Permission needed,
                                      const std::string& ns) const {
  return authz_->Check(identities_->Of(ctx), needed, ns);
}

void ConfigServiceImpl::FillHeader(Revision revision, v1::ResponseHeader* header) const {
  header->set_revision(revision);
  header->set_oldest_revision(engine_->oldest_readable_revision());
  header->set_node_id(node_id_);
  header->set_staleness_ms(absl::ToInt64Milliseconds(engine_->store().Staleness()));
}

// ---- Get ----

absl::Status ConfigServiceImpl::DoGet(const v1::GetRequest& request, v1::GetResponse* response) {
  const std::string& ns = request.namespace_();
  const std::string& key = request.key();
  if (request.revision() == 0) {
    // The hot path: no lock, no reference count, one snapshot.
    Revision revision = 0;
    bool found = false;
    engine_->publisher().Read([&](const Snapshot& snapshot) {
      revision = snapshot.revision();
      if (const Entry* e = snapshot.Find(ns, key)) {
        EntryToProto(ns, key, *e, /*with_value=*/true, response->mutable_entry());
        found = true;
      }
    });
    if (!found) return NotFound(ns, key, revision);
    FillHeader(revision, response->mutable_header());
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(SnapshotPtr snapshot, engine_->SnapshotAt(request.revision()));
  const Entry* e = snapshot->Find(ns, key);
  if (e == nullptr) return NotFound(ns, key, snapshot->revision());
  EntryToProto(ns, key, *e, /*with_value=*/true, response->mutable_entry());
  FillHeader(snapshot->revision(), response->mutable_header());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ConfigServiceImpl::Get(grpc::CallbackServerContext* ctx,
                                                 const v1::GetRequest* request,
                                                 v1::GetResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::Status valid = ValidateNamespace(request->namespace_(), limits_);
  if (valid.ok()) valid = ValidateKey(request->key(), limits_);
  if (valid.ok()) valid = Allow(*ctx, Permission::kRead, request->namespace_());
  if (valid.ok()) valid = CheckRevisionField(request->revision(), "revision");
  if (valid.ok()) valid = CheckRevisionField(request->min_revision(), "min_revision");
  if (!valid.ok()) {
    reactor->Finish(ToGrpc(valid));
    return reactor;
  }
  engine_->AwaitRevision(
      request->min_revision(), CallDeadline(*ctx),
      [this, reactor, request, response](absl::Status reached) {
        reactor->Finish(ToGrpc(reached.ok() ? DoGet(*request, response) : reached));
      });
  return reactor;
}

// ---- List ----

absl::Status ConfigServiceImpl::DoList(const v1::ListRequest& request, v1::ListResponse* response) {
  const std::string binding = ListBinding(request);
  Revision revision = request.revision();
  std::string start_after;
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageToken token, tokens_.Decode(request.page_token(), binding));
    revision = token.revision;
    start_after = std::move(token.position);
  }
  ASSIGN_OR_RETURN(SnapshotPtr snapshot, engine_->SnapshotAt(revision));
  const size_t page_size = request.page_size() == 0
                               ? limits_.default_page_size
                               : std::min(request.page_size(), limits_.max_page_size);
  size_t bytes = 0;
  bool more = false;
  std::string last_key;
  snapshot->Scan(request.namespace_(), request.prefix(), start_after, page_size + 1,
                 [&](std::string_view key, const EntryPtr& entry) {
                   if (static_cast<size_t>(response->entries_size()) == page_size ||
                       (response->entries_size() > 0 &&
                        bytes + entry->value.size() > limits_.max_page_bytes)) {
                     more = true;
                     return false;
                   }
                   bytes += key.size() + (request.keys_only() ? 0 : entry->value.size());
                   EntryToProto(request.namespace_(), key, *entry, !request.keys_only(),
                                response->add_entries());
                   last_key = std::string(key);
                   return true;
                 });
  if (more) {
    response->set_next_page_token(tokens_.Encode(
        {.revision = snapshot->revision(), .binding = binding, .position = last_key}));
  }
  FillHeader(snapshot->revision(), response->mutable_header());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ConfigServiceImpl::List(grpc::CallbackServerContext* ctx,
                                                  const v1::ListRequest* request,
                                                  v1::ListResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::Status valid = ValidateNamespace(request->namespace_(), limits_);
  if (valid.ok()) valid = ValidatePrefix(request->prefix(), limits_);
  if (valid.ok()) valid = Allow(*ctx, Permission::kRead, request->namespace_());
  if (valid.ok()) valid = CheckRevisionField(request->revision(), "revision");
  if (valid.ok()) valid = CheckRevisionField(request->min_revision(), "min_revision");
  if (valid.ok() && request->page_size() < 0) {
    valid = absl::InvalidArgumentError("page_size is negative");
  }
  if (!valid.ok()) {
    reactor->Finish(ToGrpc(valid));
    return reactor;
  }
  engine_->AwaitRevision(
      request->min_revision(), CallDeadline(*ctx),
      [this, reactor, request, response](absl::Status reached) {
        reactor->Finish(ToGrpc(reached.ok() ? DoList(*request, response) : reached));
      });
  return reactor;
}

// ---- ListNamespaces ----

absl::Status ConfigServiceImpl::DoListNamespaces(const v1::ListNamespacesRequest& request,
                                                 const std::string& identity,
                                                 v1::ListNamespacesResponse* response) {
  ASSIGN_OR_RETURN(SnapshotPtr snapshot, engine_->SnapshotAt(request.revision()));
  for (const std::string& ns : snapshot->Namespaces()) {
    if (!authz_->CanRead(identity, ns)) continue;
    v1::NamespaceInfo* info = response->add_namespaces();
    info->set_namespace_(ns);
    info->set_key_count(static_cast<int64_t>(snapshot->NamespaceSize(ns)));
  }
  FillHeader(snapshot->revision(), response->mutable_header());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ConfigServiceImpl::ListNamespaces(
    grpc::CallbackServerContext* ctx, const v1::ListNamespacesRequest* request,
    v1::ListNamespacesResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::Status s = CheckRevisionField(request->revision(), "revision");
  if (s.ok()) s = DoListNamespaces(*request, identities_->Of(*ctx), response);
  reactor->Finish(ToGrpc(s));
  return reactor;
}

// ---- Put / Delete / Txn ----

grpc::ServerUnaryReactor* ConfigServiceImpl::Put(grpc::CallbackServerContext* ctx,
                                                 const v1::PutRequest* request,
                                                 v1::PutResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::Status valid = ValidateNamespace(request->namespace_(), limits_);
  if (valid.ok()) valid = ValidateKey(request->key(), limits_);
  if (valid.ok()) valid = Allow(*ctx, Permission::kWrite, request->namespace_());
  if (valid.ok()) valid = ValidateValue(request->value(), limits_);
  if (valid.ok()) valid = ValidateContentType(request->content_type(), limits_);
  if (valid.ok()) valid = ValidateMessage(request->message(), limits_);
  if (valid.ok() && request->has_expected_mod_revision()) {
    valid = CheckRevisionField(request->expected_mod_revision(), "expected_mod_revision");
  }
  if (!valid.ok()) {
    reactor->Finish(ToGrpc(valid));
    return reactor;
  }
  WriteRequest write;
  write.author = identities_->Of(*ctx);
  write.message = request->message();
  if (request->has_expected_mod_revision()) {
    write.compares.push_back({.ns = request->namespace_(),
                              .key = request->key(),
                              .target = Compare::Target::kModRevision,
                              .number = request->expected_mod_revision()});
  }
  write.changes.Put(request->namespace_(), request->key(), request->value(),
                    request->content_type());
  engine_->Write(std::move(write), [this, reactor, request,
                                    response](absl::StatusOr<CommitResult> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpc(result.status()));
      return;
    }
    FillHeader(result->revision, response->mutable_header());
    if (const EntryChange* c = FindChange(result->changes, request->namespace_(), request->key());
        c != nullptr && c->after) {
      EntryToProto(request->namespace_(), request->key(), *c->after, /*with_value=*/true,
                   response->mutable_entry());
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ConfigServiceImpl::Delete(grpc::CallbackServerContext* ctx,
                                                    const v1::DeleteRequest* request,
                                                    v1::DeleteResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::Status valid = ValidateNamespace(request->namespace_(), limits_);
  if (valid.ok()) valid = ValidateKey(request->key(), limits_);
  if (valid.ok()) valid = Allow(*ctx, Permission::kWrite, request->namespace_());
  if (valid.ok()) valid = ValidateMessage(request->message(), limits_);
  if (valid.ok() && request->has_expected_mod_revision()) {
    valid = CheckRevisionField(request->expected_mod_revision(), "expected_mod_revision");
  }
  if (!valid.ok()) {
    reactor->Finish(ToGrpc(valid));
    return reactor;
  }
  WriteRequest write;
  write.author = identities_->Of(*ctx);
  write.message = request->message();
  // Deleting an absent key is NOT_FOUND, decided atomically with the write.
  write.compares.push_back({.ns = request->namespace_(),
                            .key = request->key(),
                            .target = Compare::Target::kExists,
                            .number = 1});
  if (request->has_expected_mod_revision()) {
    write.compares.push_back({.ns = request->namespace_(),
                              .key = request->key(),
                              .target = Compare::Target::kModRevision,
                              .number = request->expected_mod_revision()});
  }
  write.changes.Delete(request->namespace_(), request->key());
  engine_->Write(std::move(write), [this, reactor, request,
                                    response](absl::StatusOr<CommitResult> result) {
    if (!result.ok()) {
      absl::Status s = result.status();
      if (absl::IsAborted(s)) {
        bool exists = false;
        Revision revision = 0;
        engine_->publisher().Read([&](const Snapshot& snapshot) {
          exists = snapshot.Find(request->namespace_(), request->key()) != nullptr;
          revision = snapshot.revision();
        });
        if (!exists) s = NotFound(request->namespace_(), request->key(), revision);
      }
      reactor->Finish(ToGrpc(s));
      return;
    }
    FillHeader(result->revision, response->mutable_header());
    if (const EntryChange* c = FindChange(result->changes, request->namespace_(), request->key());
        c != nullptr && c->before) {
      EntryToProto(request->namespace_(), request->key(), *c->before, /*with_value=*/true,
                   response->mutable_deleted());
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* ConfigServiceImpl::Txn(grpc::CallbackServerContext* ctx,
                                                 const v1::TxnRequest* request,
                                                 v1::TxnResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::StatusOr<WriteRequest> write = TxnFromProto(*request, limits_);
  if (!write.ok()) {
    reactor->Finish(ToGrpc(write.status()));
    return reactor;
  }
  // A compare reveals what it compares against: it needs read; a change needs write.
  const std::string identity = identities_->Of(*ctx);
  for (const Compare& c : write->compares) {
    if (absl::Status s = authz_->Check(identity, Permission::kRead, c.ns); !s.ok()) {
      reactor->Finish(ToGrpc(s));
      return reactor;
    }
  }
  for (const Mutation& m : write->changes.mutations()) {
    if (absl::Status s = authz_->Check(identity, Permission::kWrite, m.ns); !s.ok()) {
      reactor->Finish(ToGrpc(s));
      return reactor;
    }
  }
  write->author = identity;
  engine_->Write(std::move(*write), [this, reactor, response](absl::StatusOr<CommitResult> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpc(result.status()));
      return;
    }
    FillHeader(result->revision, response->mutable_header());
    for (const EntryChange& c : result->changes) {
      ChangeToProto(c, /*with_before=*/true, response->add_changes());
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

// ---- History / Diff / Rollback ----

absl::Status ConfigServiceImpl::DoHistory(const v1::HistoryRequest& request,
                                          v1::HistoryResponse* response) {
  const std::string binding = HistoryBinding(request);
  HistoryQuery query;
  query.ns = request.namespace_();
  query.key = request.key();
  query.from_revision = request.from_revision();
  query.to_revision = request.to_revision();
  if (!request.page_token().empty()) {
    ASSIGN_OR_RETURN(PageToken token, tokens_.Decode(request.page_token(), binding));
    int64_t next_to = 0;
    if (!absl::SimpleAtoi(token.position, &next_to) || next_to < 0) {
      return absl::InvalidArgumentError("page_token is invalid");
    }
    query.to_revision = next_to;
  }
  const size_t page_size =
      request.page_size() == 0 ? 100 : std::min(request.page_size(), limits_.max_history_page_size);
  query.limit = page_size + 1;
  const Revision head = engine_->publisher().revision();
  if (query.to_revision == 0) query.to_revision = head;
  if (query.to_revision > head) {
    return absl::OutOfRangeError(absl::StrCat(
        "to_revision ", query.to_revision, " is in the future (current revision is ", head, ")"));
  }
  if (query.from_revision > query.to_revision) {
    // Nothing in range (also the end of a listing that reached from_revision).
    FillHeader(head, response->mutable_header());
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(std::vector<CommitRecord> records, engine_->store().ReadHistory(query));
  const bool more = records.size() > page_size;
  if (more) records.resize(page_size);
  for (const CommitRecord& r : records) RecordToProto(r, response->add_records());
  if (more && !records.empty() && records.back().revision > 1) {
    response->set_next_page_token(
        tokens_.Encode({.revision = head,
                        .binding = binding,
                        .position = absl::StrCat(records.back().revision - 1)}));
  }
  FillHeader(head, response->mutable_header());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ConfigServiceImpl::History(grpc::CallbackServerContext* ctx,
                                                     const v1::HistoryRequest* request,
                                                     v1::HistoryResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::Status s;
  if (!request->namespace_().empty()) s = ValidateNamespace(request->namespace_(), limits_);
  if (s.ok() && !request->key().empty()) {
    s = request->namespace_().empty() ? absl::InvalidArgumentError("key requires a namespace")
                                      : ValidateKey(request->key(), limits_);
  }
  // History across every namespace needs read on all of them.
  if (s.ok()) {
    const std::string identity = identities_->Of(*ctx);
    s = request->namespace_().empty()
            ? authz_->CheckGlobal(identity, Permission::kRead)
            : authz_->Check(identity, Permission::kRead, request->namespace_());
  }
  if (s.ok()) s = CheckRevisionField(request->from_revision(), "from_revision");
  if (s.ok()) s = CheckRevisionField(request->to_revision(), "to_revision");
  if (s.ok() && request->page_size() < 0) s = absl::InvalidArgumentError("page_size is negative");
  if (s.ok()) s = DoHistory(*request, response);
  reactor->Finish(ToGrpc(s));
  return reactor;
}

absl::Status ConfigServiceImpl::DoDiff(const v1::DiffRequest& request, v1::DiffResponse* response) {
  ASSIGN_OR_RETURN(SnapshotPtr to, engine_->SnapshotAt(request.to_revision()));
  if (request.from_revision() > to->revision()) {
    return absl::InvalidArgumentError(absl::StrCat("from_revision ", request.from_revision(),
                                                   " is after to_revision ", to->revision()));
  }
  ASSIGN_OR_RETURN(SnapshotPtr from, engine_->SnapshotAt(request.from_revision()));
  for (const EntryChange& c : snapconf::Diff(*from, *to, request.namespace_(), request.prefix())) {
    ChangeToProto(c, /*with_before=*/true, response->add_changes());
  }
  FillHeader(to->revision(), response->mutable_header());
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* ConfigServiceImpl::Diff(grpc::CallbackServerContext* ctx,
                                                  const v1::DiffRequest* request,
                                                  v1::DiffResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::Status s = ValidateNamespace(request->namespace_(), limits_);
  if (s.ok()) s = ValidatePrefix(request->prefix(), limits_);
  if (s.ok()) s = Allow(*ctx, Permission::kRead, request->namespace_());
  if (s.ok()) s = CheckRevisionField(request->to_revision(), "to_revision");
  if (s.ok() && request->from_revision() <= 0) {
    s = absl::InvalidArgumentError("from_revision must be at least 1");
  }
  if (s.ok()) s = DoDiff(*request, response);
  reactor->Finish(ToGrpc(s));
  return reactor;
}

grpc::ServerUnaryReactor* ConfigServiceImpl::Rollback(grpc::CallbackServerContext* ctx,
                                                      const v1::RollbackRequest* request,
                                                      v1::RollbackResponse* response) {
  auto* reactor = ctx->DefaultReactor();
  if (RefuseOverRate(identity_limits_, *identities_, ctx, reactor)) return reactor;
  absl::Status s = ValidateNamespace(request->namespace_(), limits_);
  if (s.ok()) s = Allow(*ctx, Permission::kWrite, request->namespace_());
  if (s.ok()) s = ValidateMessage(request->message(), limits_);
  if (s.ok() && request->to_revision() <= 0) {
    s = absl::InvalidArgumentError("to_revision must be at least 1");
  }
  if (s.ok() && request->has_expected_namespace_revision()) {
    s = CheckRevisionField(request->expected_namespace_revision(), "expected_namespace_revision");
  }
  if (!s.ok()) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  }
  std::optional<Revision> expected;
  if (request->has_expected_namespace_revision()) {
    expected = request->expected_namespace_revision();
  }
  engine_->Rollback(request->namespace_(), request->to_revision(), expected, identities_->Of(*ctx),
                    request->message(),
                    [this, reactor, response](absl::StatusOr<CommitResult> result) {
                      if (!result.ok()) {
                        reactor->Finish(ToGrpc(result.status()));
                        return;
                      }
                      FillHeader(result->revision, response->mutable_header());
                      for (const EntryChange& c : result->changes) {
                        ChangeToProto(c, /*with_before=*/true, response->add_changes());
                      }
                      reactor->Finish(grpc::Status::OK);
                    });
  return reactor;
}

}  // namespace snapconf
