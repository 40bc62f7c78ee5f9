// service/security/policy.cc
#include "service/security/policy.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace snapconf {
namespace {

absl::StatusOr<Permission> ParsePermission(const std::string& name) {
  if (name == "read") return Permission::kRead;
  if (name == "write") return Permission::kWrite;
  if (name == "admin") return Permission::kAdmin;
  return absl::InvalidArgumentError(
      absl::StrCat("permission \"", name, "\" is not one of read, write, admin"));
}

absl::Status CheckPattern(const std::string& pattern) {
  if (pattern.empty()) return absl::InvalidArgumentError("empty namespace pattern");
  const size_t star = pattern.find('*');
  if (star == std::string::npos) return absl::OkStatus();
  if (pattern == "*" || (star == pattern.size() - 1 && absl::EndsWith(pattern, "/*"))) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("namespace pattern \"", pattern,
                   "\": \"*\" may only be the whole pattern or end it after /"));
}

std::vector<std::string> StringList(const YAML::Node& node) {
  std::vector<std::string> out;
  if (node.IsScalar()) {
    out.push_back(node.as<std::string>());
  } else if (node.IsSequence()) {
    for (const YAML::Node& item : node) out.push_back(item.as<std::string>());
  }
  return out;
}

}  // namespace

absl::string_view PermissionName(Permission p) {
  switch (p) {
    case Permission::kNone:
      return "none";
    case Permission::kRead:
      return "read";
    case Permission::kWrite:
      return "write";
    case Permission::kAdmin:
      return "admin";
  }
  return "none";
}

bool PatternMatches(absl::string_view pattern, absl::string_view ns) {
  if (pattern == "*") return true;
  if (absl::EndsWith(pattern, "/*")) {
    // "team/*" covers "team/a" and "team/a/b", not "team" nor "teamx/a".
    return absl::StartsWith(ns, pattern.substr(0, pattern.size() - 1));
  }
  return pattern == ns;
}

absl::StatusOr<Policy> Policy::Parse(absl::string_view text) {
  YAML::Node doc;
  try {
    doc = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("policy is not valid YAML: ", e.what()));
  }
  Policy policy;
  if (doc.IsNull()) return policy;  // an empty file grants nothing
  if (!doc.IsMap())
    return absl::InvalidArgumentError("policy must be a map with roles and bindings");
  absl::flat_hash_map<std::string, size_t> role_index;
  try {
    for (const auto& item : doc) {
      const std::string field = item.first.as<std::string>();
      if (field != "roles" && field != "bindings") {
        return absl::InvalidArgumentError(absl::StrCat("unknown policy field \"", field, "\""));
      }
    }
    for (const YAML::Node& r : doc["roles"]) {
      Role role;
      role.name = r["name"] ? r["name"].as<std::string>() : "";
      if (role.name.empty()) return absl::InvalidArgumentError("a role has no name");
      role.patterns = StringList(r["namespaces"]);
      if (role.patterns.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("role ", role.name, " lists no namespaces"));
      }
      for (const std::string& p : role.patterns) {
        if (absl::Status s = CheckPattern(p); !s.ok()) {
          return absl::InvalidArgumentError(absl::StrCat("role ", role.name, ": ", s.message()));
        }
      }
      absl::StatusOr<Permission> permission =
          ParsePermission(r["permission"] ? r["permission"].as<std::string>() : "");
      if (!permission.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("role ", role.name, ": ", permission.status().message()));
      }
      role.permission = *permission;
      if (!role_index.emplace(role.name, policy.roles_.size()).second) {
        return absl::InvalidArgumentError(absl::StrCat("role ", role.name, " is defined twice"));
      }
      policy.roles_.push_back(std::move(role));
    }
    for (const YAML::Node& b : doc["bindings"]) {
      const std::string identity = b["identity"] ? b["identity"].as<std::string>() : "";
      if (identity.empty()) return absl::InvalidArgumentError("a binding has no identity");
      for (const std::string& name : StringList(b["roles"])) {
        auto it = role_index.find(name);
        if (it == role_index.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat("binding of ", identity, " names unknown role ", name));
        }
        policy.bindings_[identity].push_back(it->second);
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("policy: ", e.what()));
  }
  return policy;
}

Permission Policy::Granted(absl::string_view identity, absl::string_view ns) const {
  auto it = bindings_.find(identity);
  if (it == bindings_.end()) return Permission::kNone;
  Permission best = Permission::kNone;
  for (size_t index : it->second) {
    const Role& role = roles_[index];
    if (role.permission <= best) continue;
    for (const std::string& pattern : role.patterns) {
      if (PatternMatches(pattern, ns)) {
        best = role.permission;
        break;
      }
    }
  }
  return best;
}

Permission Policy::GrantedEverywhere(absl::string_view identity) const {
  auto it = bindings_.find(identity);
  if (it == bindings_.end()) return Permission::kNone;
  Permission best = Permission::kNone;
  for (size_t index : it->second) {
    const Role& role = roles_[index];
    for (const std::string& pattern : role.patterns) {
      if (pattern == "*" && role.permission > best) best = role.permission;
    }
  }
  return best;
}

absl::StatusOr<std::unique_ptr<Authorizer>> Authorizer::Open(Options options) {
  std::unique_ptr<Authorizer> authz(new Authorizer(std::move(options)));
  if (!authz->options_.policy_file.empty()) {
    RETURN_IF_ERROR(authz->ReloadIfChanged());
  }
  return authz;
}

Authorizer::~Authorizer() = default;

absl::Status Authorizer::ReloadIfChanged() {
  if (options_.policy_file.empty()) return absl::OkStatus();
  MutexLock lock(&reload_mu_);
  const std::string& path = options_.policy_file;
  ASSIGN_OR_RETURN(const FileStamp stamp, StampOf(path));
  if (stamp == loaded_ || stamp == refused_) return absl::OkStatus();
  refused_ = stamp;
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read policy file ", path));
  std::stringstream contents;
  contents << in.rdbuf();
  absl::StatusOr<Policy> policy = Policy::Parse(contents.str());
  if (!policy.ok()) {
    return absl::Status(policy.status().code(),
                        absl::StrCat(path, ": ", policy.status().message()));
  }
  policies_.push_back(std::make_unique<const Policy>(*std::move(policy)));
  current_.store(policies_.back().get(), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  loaded_ = stamp;
  return absl::OkStatus();
}

absl::Status Authorizer::Check(absl::string_view identity, Permission needed,
                               absl::string_view ns) const {
  if (!options_.enabled) return absl::OkStatus();
  const Policy* policy = current_.load(std::memory_order_acquire);
  if (policy != nullptr && policy->Granted(identity, ns) >= needed) return absl::OkStatus();
  // The same words whether or not `ns` exists.
  return absl::PermissionDeniedError(
      absl::StrCat(identity, " may not ", PermissionName(needed), " namespace ", ns));
}

absl::Status Authorizer::CheckGlobal(absl::string_view identity, Permission needed) const {
  if (!options_.enabled) return absl::OkStatus();
  const Policy* policy = current_.load(std::memory_order_acquire);
  if (policy != nullptr && policy->GrantedEverywhere(identity) >= needed) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat(identity, " needs ", PermissionName(needed), " on every namespace (\"*\")"));
}

bool Authorizer::CanRead(absl::string_view identity, absl::string_view ns) const {
  return Check(identity, Permission::kRead, ns).ok();
}

}  // namespace snapconf
