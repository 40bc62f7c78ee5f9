// service/security/policy.h
//
// Who may do what, per namespace. A policy has roles (a permission on a set
// of namespace patterns) and bindings (an identity gets roles). Permissions
// are ordered: read < write < admin; a higher one includes the lower ones.
// Admin adds the administration methods (server status, policy, audit).
//
// Policy file (YAML, or JSON which is YAML too):
//
//   roles:
//     - name: payments-writer
//       namespaces: ["payments/*", "shared/flags"]   # exact, or a prefix ending in "/*"
//       permission: write                           # read | write | admin
//   bindings:
//     - identity: ci/deployer                       # a token identity or a certificate subject
//       roles: [payments-writer]
//
// Everything not granted is denied. A pattern "*" matches every namespace.
//
// Versions: a policy in force has a version that increases with every change.
// A file may say `version: N`; the Authorizer uses the larger of N and one
// more than the version it had, so a hand edit that forgets to raise it still
// gets a new version (while the server runs; after a restart the file's
// number is taken as it is). Replace(), behind AdminService.UpdatePolicy,
// writes the new version into the file.
//
// Thread safety: a Policy is immutable. Authorizer::Check may be called from
// any thread concurrently with Reload; it takes no lock (each loaded policy
// is published through an atomic pointer and kept until the Authorizer is
// destroyed: one small object per change of the file).
//
//   ASSIGN_OR_RETURN(auto authz, Authorizer::Open({.enabled = true, .policy_file = path}));
//   RETURN_IF_ERROR(authz->Check(identity, Permission::kWrite, "payments/prod"));
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/mutex.h"
#include "service/security/file_stamp.h"

namespace snapconf {

enum class Permission { kNone = 0, kRead = 1, kWrite = 2, kAdmin = 3 };

absl::string_view PermissionName(Permission p);

class Policy {
 public:
  struct Role {
    std::string name;
    std::vector<std::string> patterns;
    Permission permission = Permission::kNone;
  };

  struct Binding {
    std::string identity;
    std::vector<std::string> roles;
  };

  // Parses a policy document; errors name the role or binding at fault.
  static absl::StatusOr<Policy> Parse(absl::string_view text);

  // A policy document that Parse reads back as this policy (the roles in
  // their order, bindings by identity), with `version: <version>`.
  static std::string ToYaml(const std::vector<Role>& roles, const std::vector<Binding>& bindings,
                            int64_t version);

  // The highest permission `identity` holds on namespace `ns`.
  Permission Granted(absl::string_view identity, absl::string_view ns) const;
  // The highest permission `identity` holds on every namespace (pattern "*").
  Permission GrantedEverywhere(absl::string_view identity) const;

  const std::vector<Role>& roles() const { return roles_; }
  // One per identity, sorted by identity; role names in the order given.
  std::vector<Binding> bindings() const;
  // As parsed (the file's `version:`, 0 when absent), then as put in force.
  int64_t version() const { return version_; }
  void set_version(int64_t version) { version_ = version; }

 private:
  std::vector<Role> roles_;
  int64_t version_ = 0;
  // identity -> indexes into roles_
  absl::flat_hash_map<std::string, std::vector<size_t>> bindings_;
};

// True when `pattern` ("*", "team/*" or an exact name) covers `ns`.
bool PatternMatches(absl::string_view pattern, absl::string_view ns);

class Authorizer {
 public:
  struct Options {
    // Off (no authentication configured: a loopback-only server): every call
    // is allowed. On: only what the policy grants.
    bool enabled = false;
    // Empty with `enabled`: nothing is granted.
    std::string policy_file;
  };
  static absl::StatusOr<std::unique_ptr<Authorizer>> Open(Options options);

  ~Authorizer();
  Authorizer(const Authorizer&) = delete;
  Authorizer& operator=(const Authorizer&) = delete;

  bool enabled() const { return options_.enabled; }

  // OK when `identity` holds at least `needed` on `ns`. PERMISSION_DENIED
  // otherwise, with the same message whether or not the namespace exists.
  absl::Status Check(absl::string_view identity, Permission needed, absl::string_view ns) const;
  // Like Check, for methods that are not about one namespace: needs `needed`
  // on the pattern "*" (i.e. on every namespace).
  absl::Status CheckGlobal(absl::string_view identity, Permission needed) const;
  // True when `identity` may read `ns` (for filtering listings).
  bool CanRead(absl::string_view identity, absl::string_view ns) const;

  // Re-reads the policy file when it changed; a file that does not parse
  // keeps the policy in force and returns why (once per broken version).
  absl::Status ReloadIfChanged() ABSL_LOCKS_EXCLUDED(reload_mu_);

  // Counts the policies published so far (every change, whatever its
  // source, must count): a change means open watches must be re-checked.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  const std::string& policy_file() const { return options_.policy_file; }
  // The policy in force; null without a policy file. Valid for as long as
  // the Authorizer lives.
  const Policy* current() const { return current_.load(std::memory_order_acquire); }

  // Puts a new policy in force: checks it exactly as a file is checked
  // (INVALID_ARGUMENT, nothing changes), requires `expected_version` to be
  // the version in force (ABORTED otherwise; a changed file is reloaded
  // first, so a hand edit is never overwritten unseen), lets `accept` veto it
  // (its error is returned), then writes the policy file atomically (a
  // temporary file in the same directory, mode 0600, fsync, rename, fsync of
  // the directory) and publishes it. Returns the policy now in force.
  // FAILED_PRECONDITION without a policy file.
  absl::StatusOr<const Policy*> Replace(const std::vector<Policy::Role>& roles,
                                        const std::vector<Policy::Binding>& bindings,
                                        int64_t expected_version,
                                        const std::function<absl::Status(const Policy&)>& accept)
      ABSL_LOCKS_EXCLUDED(reload_mu_);

 private:
  explicit Authorizer(Options options) : options_(std::move(options)) {}
  absl::Status ReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  void PublishLocked(Policy policy) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);

  const Options options_;
  std::atomic<const Policy*> current_{nullptr};
  std::atomic<uint64_t> generation_{0};
  Mutex reload_mu_;  // serializes reloads; Check never takes it
  std::vector<std::unique_ptr<const Policy>> policies_ ABSL_GUARDED_BY(reload_mu_);
  FileStamp loaded_ ABSL_GUARDED_BY(reload_mu_);
  FileStamp refused_ ABSL_GUARDED_BY(reload_mu_);
};

}  // namespace snapconf
