// service/security/policy.cc
#include "service/security/policy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
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
      if (field != "roles" && field != "bindings" && field != "version") {
        return absl::InvalidArgumentError(absl::StrCat("unknown policy field \"", field, "\""));
      }
    }
    if (doc["version"]) {
      int64_t version = -1;
      if (!doc["version"].IsScalar() || !YAML::convert<int64_t>::decode(doc["version"], version) ||
          version < 0) {
        return absl::InvalidArgumentError("policy version must be a whole number, 0 or more");
      }
      policy.version_ = version;
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

std::vector<Policy::Binding> Policy::bindings() const {
  std::vector<Binding> out;
  out.reserve(bindings_.size());
  for (const auto& [identity, indexes] : bindings_) {
    Binding b{identity, {}};
    for (size_t index : indexes) b.roles.push_back(roles_[index].name);
    out.push_back(std::move(b));
  }
  std::sort(out.begin(), out.end(),
            [](const Binding& a, const Binding& b) { return a.identity < b.identity; });
  return out;
}

std::string Policy::ToYaml(const std::vector<Role>& roles, const std::vector<Binding>& bindings,
                           int64_t version) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "version" << YAML::Value << version;
  out << YAML::Key << "roles" << YAML::Value << YAML::BeginSeq;
  for (const Role& role : roles) {
    out << YAML::BeginMap;
    out << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted << role.name;
    out << YAML::Key << "namespaces" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const std::string& p : role.patterns) out << YAML::DoubleQuoted << p;
    out << YAML::EndSeq;
    out << YAML::Key << "permission" << YAML::Value << YAML::DoubleQuoted
        << std::string(role.permission == Permission::kNone ? "" : PermissionName(role.permission));
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "bindings" << YAML::Value << YAML::BeginSeq;
  for (const Binding& b : bindings) {
    out << YAML::BeginMap;
    out << YAML::Key << "identity" << YAML::Value << YAML::DoubleQuoted << b.identity;
    out << YAML::Key << "roles" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const std::string& r : b.roles) out << YAML::DoubleQuoted << r;
    out << YAML::EndSeq;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::EndMap;
  std::string text(out.c_str(), out.size());
  text.push_back('\n');
  return text;
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
  return ReloadLocked();
}

void Authorizer::PublishLocked(Policy policy) {
  // Versions never go backwards, whatever the file says.
  const Policy* before = current_.load(std::memory_order_relaxed);
  const int64_t floor = before == nullptr ? 1 : before->version() + 1;
  policy.set_version(std::max(policy.version(), floor));
  policies_.push_back(std::make_unique<const Policy>(std::move(policy)));
  current_.store(policies_.back().get(), std::memory_order_release);
  // Counted after the store: whoever sees the new generation sees the policy.
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

absl::Status Authorizer::ReloadLocked() {
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
  PublishLocked(*std::move(policy));
  loaded_ = stamp;
  return absl::OkStatus();
}

namespace {

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  std::string tmp = absl::StrCat(path, ".tmp.XXXXXX");
  const int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot write a policy file next to ", path, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  bool ok = ::fchmod(fd, 0600) == 0;
  while (ok && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = ok ? errno : saved;
    ::unlink(tmp.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot write policy file ", path, ": ", std::strerror(err)));
  }
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<const Policy*> Authorizer::Replace(
    const std::vector<Policy::Role>& roles, const std::vector<Policy::Binding>& bindings,
    int64_t expected_version, const std::function<absl::Status(const Policy&)>& accept) {
  if (options_.policy_file.empty()) {
    return absl::FailedPreconditionError(
        "this server has no --policy-file: there is no policy to change (authorization is off "
        "on a loopback-only server without authentication)");
  }
  MutexLock lock(&reload_mu_);
  // A hand edit not yet picked up is taken into account first; a broken file
  // is what this update replaces.
  (void)ReloadLocked();
  const Policy* in_force = current_.load(std::memory_order_relaxed);
  const int64_t version = in_force == nullptr ? 0 : in_force->version();
  // Parsing the document that will be written is the file loader's check.
  const std::string text = Policy::ToYaml(roles, bindings, version + 1);
  absl::StatusOr<Policy> policy = Policy::Parse(text);
  if (!policy.ok()) return policy.status();
  if (expected_version != version) {
    return absl::AbortedError(absl::StrCat("the policy changed: version ", version,
                                           " is in force, the update was based on version ",
                                           expected_version, "; read it again"));
  }
  RETURN_IF_ERROR(accept(*policy));
  RETURN_IF_ERROR(WriteFileAtomically(options_.policy_file, text));
  ASSIGN_OR_RETURN(const FileStamp stamp, StampOf(options_.policy_file));
  PublishLocked(*std::move(policy));
  loaded_ = stamp;
  refused_ = FileStamp{};
  return current_.load(std::memory_order_relaxed);
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
