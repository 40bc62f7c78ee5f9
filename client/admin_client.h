// client/admin_client.h
//
// AdminClient: the administrative read/write client of snapconf (the library
// behind snapconfctl). It speaks snapconf.v1 ConfigService and AdminService
// over gRPC and exposes only plain C++ types and absl::Status: protobuf and
// gRPC types never appear in this header.
//
// Layering (as in google-cloud-cpp): AdminClient is a cheap value type that
// shares one AdminConnection; AdminConnection is the mockable interface that
// does one RPC per call; MakeAdminConnection() builds the gRPC implementation,
// which owns one channel per endpoint and the endpoint-rotation policy.
//
// Thread safety: AdminClient and the connection returned by
// MakeAdminConnection() are thread-safe; copies share the same channels.
// Result structs are plain values with no synchronization.
//
// Errors: every method returns the server's status code and message
// unchanged (gRPC codes are absl codes). Two client-side rules:
//   * Reads (Get, List, ListNamespaces, History, Diff, GetServerStatus) move
//     on to the next endpoint when one answers UNAVAILABLE.
//   * Writes (Put, Delete, Txn, Rollback) move on to the next endpoint only
//     when the request provably never left this process (the endpoint's
//     channel could not connect). Once a write was sent, UNAVAILABLE and
//     DEADLINE_EXCEEDED keep their code, the message starts with
//     "outcome unknown: " and IsOutcomeUnknown() returns true: the write may
//     or may not have been committed, and it is never retried blindly.
//
// Example:
//
//   AdminClientOptions options;
//   options.endpoints = {"10.0.0.1:7070", "10.0.0.2:7070"};
//   ASSIGN_OR_RETURN(AdminClient client, AdminClient::Create(options));
//   PutOptions put;
//   put.expected_mod_revision = 0;  // create only
//   ASSIGN_OR_RETURN(PutResult r, client.Put("payments/prod", "db.pool.max", "20", put));
//   ASSIGN_OR_RETURN(GetResult g, client.Get("payments/prod", "db.pool.max"));
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace snapconf::client {

// ---------------------------------------------------------------------------
// Options.

// How channels authenticate the server (and, later, the client).
struct ChannelSecurity {
  enum class Mode {
    // Plain TCP. Only for loopback, tests and trusted networks.
    kInsecure,
    // TLS. Empty root_certs_pem uses the system trust store; client
    // certificate and key are optional (mutual TLS).
    kTls,
  };
  Mode mode = Mode::kInsecure;
  std::string root_certs_pem;
  std::string client_cert_chain_pem;
  std::string client_private_key_pem;
  // Bearer token sent as "authorization" metadata. Never taken from argv by
  // the CLI (see --token-file). Rejected with kInsecure: a token must not
  // travel in clear text.
  std::string bearer_token;
};

struct AdminClientOptions {
  // "host:port" of each server; at least one. Calls start with the endpoint
  // that answered last and rotate from there.
  std::vector<std::string> endpoints;
  // Deadline of one client method call, endpoint rotation included.
  absl::Duration call_timeout = absl::Seconds(5);
  ChannelSecurity security;
};

// Splits "host:port,host:port" into endpoints, dropping blanks.
// INVALID_ARGUMENT when nothing is left or an endpoint lacks a port.
absl::StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list);

// ---------------------------------------------------------------------------
// Results and requests. Strings hold raw bytes (values may be binary).

struct Entry {
  std::string ns;
  std::string key;
  std::string value;
  std::string content_type;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;

  friend bool operator==(const Entry&, const Entry&) = default;
};

// What happened to one key. `before` is absent when the key was created,
// `after` when it was deleted. Their ns/key are left empty (they are here).
struct Change {
  std::string ns;
  std::string key;
  std::optional<Entry> before;
  std::optional<Entry> after;

  friend bool operator==(const Change&, const Change&) = default;
};

struct GetResult {
  Entry entry;
  std::int64_t revision = 0;  // the snapshot the entry was read from
};

struct ListPage {
  std::vector<Entry> entries;
  // Empty on the last page.
  std::string next_page_token;
  // All pages of one listing come from this revision.
  std::int64_t revision = 0;
};

struct NamespaceInfo {
  std::string ns;
  std::int64_t key_count = 0;
};

struct NamespaceList {
  std::vector<NamespaceInfo> namespaces;
  std::int64_t revision = 0;
};

struct PutResult {
  Entry entry;                // as written
  std::int64_t revision = 0;  // commit revision
};

struct DeleteResult {
  Entry deleted;              // as it was before the delete
  std::int64_t revision = 0;  // commit revision
};

// Result of Txn, Diff and Rollback: a revision and the changes, in
// namespace/key order.
struct ChangeList {
  std::vector<Change> changes;
  std::int64_t revision = 0;
};

struct HistoryRecord {
  std::int64_t revision = 0;
  absl::Time commit_time;
  std::string author;
  std::string message;
  std::vector<Change> changes;
};

struct HistoryPage {
  std::vector<HistoryRecord> records;  // newest first
  std::string next_page_token;         // empty when there is no older page
  std::int64_t revision = 0;           // current revision when read
};

struct ServerStatus {
  std::string node_id;
  std::string version;
  std::string store;
  std::int64_t revision = 0;
  std::int64_t oldest_revision = 0;
  std::int64_t key_count = 0;
  std::int64_t namespace_count = 0;
  bool writable = false;
  std::int64_t open_watches = 0;
  absl::Time start_time;
  std::string unavailable_reason;
};

// The access policy (see admin_service.proto and docs/security.md).
struct PolicyRole {
  std::string name;
  std::vector<std::string> namespaces;  // patterns: exact, "team/*" or "*"
  std::string permission;               // "read", "write" or "admin"
};

struct PolicyBinding {
  std::string identity;
  std::vector<std::string> roles;
};

struct AccessPolicy {
  std::vector<PolicyRole> roles;
  std::vector<PolicyBinding> bindings;
  std::int64_t version = 0;  // the version in force (read) or the one it replaces (update)
};

// One audited action (see AuditEvent in admin_service.proto).
struct AuditEvent {
  absl::Time time;
  std::string identity;
  std::string method;
  std::vector<std::string> namespaces;
  std::vector<std::string> keys;  // "namespace/key"
  std::int64_t old_revision = 0;
  std::int64_t new_revision = 0;
  std::string outcome;  // status code name, e.g. "OK", "PERMISSION_DENIED"
  std::string detail;   // the refusal's message
};

struct AuditPage {
  std::vector<AuditEvent> events;  // newest first
  std::string next_page_token;     // empty when there is no older page
};

struct AuditOptions {
  std::int32_t page_size = 0;  // 0: the server's default (100); at most 1000
  std::string page_token;
  std::string identity;  // only this identity's events, when set
  std::string ns;        // only events involving this namespace, when set
};

// What a watch covers and where it starts (see watch_service.proto).
struct WatchFilter {
  std::string ns;
  std::vector<std::string> prefixes;  // empty: every key of the namespace
};

struct WatchSpec {
  std::vector<WatchFilter> filters;
  // 0: a reset with the current state first; R: every change from R on.
  std::int64_t start_revision = 0;
  // LATEST_STATE delivery (net differences when behind) instead of every
  // revision.
  bool latest_state = false;
};

// One message of a watch stream.
struct WatchEvent {
  enum class Kind { kReset, kChanges, kProgress };
  Kind kind = Kind::kProgress;
  // Reset: the snapshot's revision. Changes: the revision held afterwards.
  // Progress: every matching change up to it has been delivered.
  std::int64_t revision = 0;
  // Changes: the revision held before this message.
  std::int64_t after_revision = 0;
  // Changes: the single element is a net difference of several revisions.
  bool net = false;
  // Reset: more chunks of this reset follow.
  bool more = false;
  // Reset: why ("initial", "history_compacted", "fell_behind", "store_reloaded").
  std::string reset_reason;
  std::vector<Entry> entries;  // reset
  struct Revision {
    std::int64_t revision = 0;
    std::vector<Change> changes;
  };
  std::vector<Revision> revisions;  // changes
};

struct ReadOptions {
  std::int64_t revision = 0;      // 0: current snapshot
  std::int64_t min_revision = 0;  // wait (within the deadline) for this revision
};

struct ListOptions {
  std::string prefix;
  std::int32_t page_size = 0;  // 0: server default
  std::string page_token;
  std::int64_t revision = 0;
  std::int64_t min_revision = 0;
  bool keys_only = false;
};

struct PutOptions {
  std::string content_type;
  // Compare-and-set on the key's mod_revision; 0 means "create only".
  std::optional<std::int64_t> expected_mod_revision;
  std::string message;
};

struct DeleteOptions {
  std::optional<std::int64_t> expected_mod_revision;
  std::string message;
};

struct Compare {
  enum class Target {
    kModRevision,
    kCreateRevision,
    kVersion,
    kExists,  // number: 1 exists, 0 absent
    kValue,
    kNamespaceRevision,  // key must be empty
  };
  enum class Op { kEqual, kNotEqual, kLess, kGreater };

  std::string ns;
  std::string key;
  Target target = Target::kModRevision;
  Op op = Op::kEqual;
  std::int64_t number = 0;
  std::string value;  // for kValue

  friend bool operator==(const Compare&, const Compare&) = default;
};

struct TxnOperation {
  enum class Kind { kPut, kDelete };

  Kind kind = Kind::kPut;
  std::string ns;
  std::string key;
  std::string value;         // kPut only
  std::string content_type;  // kPut only

  friend bool operator==(const TxnOperation&, const TxnOperation&) = default;
};

// All compares must hold for the operations to commit, as one revision.
struct TxnSpec {
  std::vector<Compare> compares;
  std::vector<TxnOperation> operations;
  std::string message;

  friend bool operator==(const TxnSpec&, const TxnSpec&) = default;
};

struct HistoryOptions {
  std::string ns;   // empty: every namespace
  std::string key;  // requires ns
  std::int64_t from_revision = 0;
  std::int64_t to_revision = 0;
  std::int32_t page_size = 0;
  std::string page_token;
};

struct DiffOptions {
  std::string prefix;
  std::int64_t to_revision = 0;  // 0: current
};

struct RollbackOptions {
  // Only if the namespace's latest change is at this revision (else ABORTED).
  std::optional<std::int64_t> expected_namespace_revision;
  std::string message;
};

// True when `status` reports a write whose outcome is unknown (see above).
bool IsOutcomeUnknown(const absl::Status& status);

// ---------------------------------------------------------------------------
// The connection: one virtual method per RPC, so tests can substitute a fake.

class AdminConnection {
 public:
  virtual ~AdminConnection() = default;

  virtual absl::StatusOr<GetResult> Get(const std::string& ns, const std::string& key,
                                        const ReadOptions& options) = 0;
  virtual absl::StatusOr<ListPage> List(const std::string& ns, const ListOptions& options) = 0;
  virtual absl::StatusOr<NamespaceList> ListNamespaces(std::int64_t revision) = 0;
  virtual absl::StatusOr<PutResult> Put(const std::string& ns, const std::string& key,
                                        const std::string& value, const PutOptions& options) = 0;
  virtual absl::StatusOr<DeleteResult> Delete(const std::string& ns, const std::string& key,
                                              const DeleteOptions& options) = 0;
  virtual absl::StatusOr<ChangeList> Txn(const TxnSpec& spec) = 0;
  virtual absl::StatusOr<HistoryPage> History(const HistoryOptions& options) = 0;
  virtual absl::StatusOr<ChangeList> Diff(const std::string& ns, std::int64_t from_revision,
                                          const DiffOptions& options) = 0;
  virtual absl::StatusOr<ChangeList> Rollback(const std::string& ns, std::int64_t to_revision,
                                              const RollbackOptions& options) = 0;
  virtual absl::StatusOr<ServerStatus> GetServerStatus() = 0;
  // Streams until `on_event` returns false (OK), `max_duration` passes (OK),
  // or the stream ends (its status; UNAVAILABLE when the server went away).
  virtual absl::Status Watch(const WatchSpec& spec, absl::Duration max_duration,
                             const std::function<bool(const WatchEvent&)>& on_event) = 0;
  // Policy and audit (admins only).
  virtual absl::StatusOr<AccessPolicy> GetPolicy() = 0;
  // `policy.version` must be the version in force (ABORTED otherwise);
  // `force` allows a policy that no longer makes the caller an admin.
  virtual absl::StatusOr<AccessPolicy> UpdatePolicy(const AccessPolicy& policy, bool force) = 0;
  virtual absl::StatusOr<AuditPage> ListAuditEvents(const AuditOptions& options) = 0;
};

// The gRPC connection. INVALID_ARGUMENT for unusable options (no endpoint,
// a token without TLS, unreadable TLS material). Channels connect lazily.
absl::StatusOr<std::shared_ptr<AdminConnection>> MakeAdminConnection(
    const AdminClientOptions& options);

// ---------------------------------------------------------------------------
// The client.

class AdminClient {
 public:
  explicit AdminClient(std::shared_ptr<AdminConnection> connection)
      : connection_(std::move(connection)) {}

  // Shorthand for AdminClient(MakeAdminConnection(options)).
  static absl::StatusOr<AdminClient> Create(const AdminClientOptions& options);

  absl::StatusOr<GetResult> Get(const std::string& ns, const std::string& key,
                                const ReadOptions& options = {}) {
    return connection_->Get(ns, key, options);
  }

  // One page; pass next_page_token back in options.page_token to continue.
  absl::StatusOr<ListPage> List(const std::string& ns, const ListOptions& options = {}) {
    return connection_->List(ns, options);
  }

  // Follows pages until the listing ends or `max_entries` (0: no limit)
  // entries were collected. Every page comes from the same revision; the
  // result's next_page_token is set only when max_entries cut the listing.
  absl::StatusOr<ListPage> ListAll(const std::string& ns, ListOptions options = {},
                                   std::size_t max_entries = 0);

  absl::StatusOr<NamespaceList> ListNamespaces(std::int64_t revision = 0) {
    return connection_->ListNamespaces(revision);
  }

  absl::StatusOr<PutResult> Put(const std::string& ns, const std::string& key,
                                const std::string& value, const PutOptions& options = {}) {
    return connection_->Put(ns, key, value, options);
  }

  absl::StatusOr<DeleteResult> Delete(const std::string& ns, const std::string& key,
                                      const DeleteOptions& options = {}) {
    return connection_->Delete(ns, key, options);
  }

  absl::StatusOr<ChangeList> Txn(const TxnSpec& spec) { return connection_->Txn(spec); }

  absl::StatusOr<HistoryPage> History(const HistoryOptions& options) {
    return connection_->History(options);
  }

  // Net changes of `ns` from `from_revision` to options.to_revision: before is
  // the entry at from_revision, after the entry at to_revision.
  absl::StatusOr<ChangeList> Diff(const std::string& ns, std::int64_t from_revision,
                                  const DiffOptions& options = {}) {
    return connection_->Diff(ns, from_revision, options);
  }

  absl::StatusOr<ChangeList> Rollback(const std::string& ns, std::int64_t to_revision,
                                      const RollbackOptions& options = {}) {
    return connection_->Rollback(ns, to_revision, options);
  }

  absl::StatusOr<ServerStatus> GetServerStatus() { return connection_->GetServerStatus(); }

  absl::Status Watch(const WatchSpec& spec, absl::Duration max_duration,
                     const std::function<bool(const WatchEvent&)>& on_event) {
    return connection_->Watch(spec, max_duration, on_event);
  }

  absl::StatusOr<AccessPolicy> GetPolicy() { return connection_->GetPolicy(); }
  absl::StatusOr<AccessPolicy> UpdatePolicy(const AccessPolicy& policy, bool force = false) {
    return connection_->UpdatePolicy(policy, force);
  }
  absl::StatusOr<AuditPage> ListAuditEvents(const AuditOptions& options = {}) {
    return connection_->ListAuditEvents(options);
  }

 private:
  std::shared_ptr<AdminConnection> connection_;
};

}  // namespace snapconf::client
