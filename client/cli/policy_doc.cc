// client/cli/policy_doc.cc
#include "client/cli/policy_doc.h"

#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/cli/document.h"
#include "common/status_macros.h"

namespace snapconf::cli {
namespace {

std::string Render(const Json& doc, OutputFormat format) {
  if (format == OutputFormat::kJson) return doc.dump(2) + "\n";
  return ToYaml(doc, YamlStrings::kQuoteWhenNeeded);
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

absl::Status Bad(std::string_view source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(source), ": ", what));
}

// A string, or a list of strings ("namespaces: x" is a list of one).
absl::StatusOr<std::vector<std::string>> Strings(const Json& node, std::string_view source,
                                                 const std::string& field) {
  std::vector<std::string> out;
  if (node.is_string()) {
    out.push_back(node.get<std::string>());
    return out;
  }
  if (!node.is_array()) return Bad(source, absl::StrCat(field, " must be a list of strings"));
  for (const Json& item : node) {
    if (!item.is_string()) return Bad(source, absl::StrCat(field, " must be a list of strings"));
    out.push_back(item.get<std::string>());
  }
  return out;
}

absl::Status OnlyFields(const Json& obj, std::vector<std::string_view> allowed,
                        std::string_view source, const std::string& where) {
  for (const auto& [name, value] : obj.items()) {
    (void)value;
    bool known = false;
    for (std::string_view a : allowed) known = known || name == a;
    if (!known) return Bad(source, absl::StrCat("unknown field \"", name, "\" in ", where));
  }
  return absl::OkStatus();
}

}  // namespace

std::string FormatPolicy(const client::AccessPolicy& policy, OutputFormat format) {
  Json doc = Json::object();
  doc["version"] = policy.version;
  Json roles = Json::array();
  for (const client::PolicyRole& r : policy.roles) {
    roles.push_back(
        Json{{"name", r.name}, {"namespaces", r.namespaces}, {"permission", r.permission}});
  }
  doc["roles"] = std::move(roles);
  Json bindings = Json::array();
  for (const client::PolicyBinding& b : policy.bindings) {
    bindings.push_back(Json{{"identity", b.identity}, {"roles", b.roles}});
  }
  doc["bindings"] = std::move(bindings);
  return Render(doc, format == OutputFormat::kJson ? OutputFormat::kJson : OutputFormat::kYaml);
}

absl::StatusOr<client::AccessPolicy> ParsePolicyDocument(std::string_view text,
                                                         std::string_view source) {
  ASSIGN_OR_RETURN(const Json doc, ParseDocument(text, source));
  if (!doc.is_object()) return Bad(source, "a policy is a map with version, roles and bindings");
  RETURN_IF_ERROR(OnlyFields(doc, {"version", "roles", "bindings"}, source, "the policy"));
  client::AccessPolicy policy;
  // YAML scalars arrive as strings; JSON numbers as numbers.
  const auto version = doc.find("version");
  if (version == doc.end()) {
    return Bad(source,
               "no version: start from 'snapconfctl policy get', which prints the version in "
               "force, and edit that");
  }
  if (version->is_number_integer()) {
    policy.version = version->get<std::int64_t>();
  } else if (!version->is_string() ||
             !absl::SimpleAtoi(version->get<std::string>(), &policy.version)) {
    return Bad(source, "version must be a whole number");
  }
  if (const auto roles = doc.find("roles"); roles != doc.end() && !roles->is_null()) {
    if (!roles->is_array()) return Bad(source, "roles must be a list");
    for (const Json& r : *roles) {
      if (!r.is_object()) return Bad(source, "each role must be a map");
      RETURN_IF_ERROR(OnlyFields(r, {"name", "namespaces", "permission"}, source, "a role"));
      client::PolicyRole role;
      if (r.contains("name") && r["name"].is_string()) role.name = r["name"].get<std::string>();
      if (r.contains("namespaces")) {
        ASSIGN_OR_RETURN(role.namespaces,
                         Strings(r["namespaces"], source, absl::StrCat("role ", role.name)));
      }
      if (r.contains("permission") && r["permission"].is_string()) {
        role.permission = r["permission"].get<std::string>();
      }
      // Names, patterns and permissions are checked by the server, with the
      // same rules as its policy file.
      policy.roles.push_back(std::move(role));
    }
  }
  if (const auto bindings = doc.find("bindings"); bindings != doc.end() && !bindings->is_null()) {
    if (!bindings->is_array()) return Bad(source, "bindings must be a list");
    for (const Json& b : *bindings) {
      if (!b.is_object()) return Bad(source, "each binding must be a map");
      RETURN_IF_ERROR(OnlyFields(b, {"identity", "roles"}, source, "a binding"));
      client::PolicyBinding binding;
      if (b.contains("identity") && b["identity"].is_string()) {
        binding.identity = b["identity"].get<std::string>();
      }
      if (b.contains("roles")) {
        ASSIGN_OR_RETURN(binding.roles,
                         Strings(b["roles"], source, absl::StrCat("roles of ", binding.identity)));
      }
      policy.bindings.push_back(std::move(binding));
    }
  }
  return policy;
}

std::string FormatAudit(const client::AuditPage& page, OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json events = Json::array();
    for (const client::AuditEvent& e : page.events) {
      events.push_back(Json{{"time", TimeText(e.time)},
                            {"identity", e.identity},
                            {"method", e.method},
                            {"namespaces", e.namespaces},
                            {"keys", e.keys},
                            {"old_revision", e.old_revision},
                            {"new_revision", e.new_revision},
                            {"outcome", e.outcome},
                            {"detail", e.detail}});
    }
    Json doc = Json::object();
    doc["events"] = std::move(events);
    doc["next_page_token"] = page.next_page_token;
    return Render(doc, format);
  }
  std::vector<std::vector<std::string>> rows = {
      {"TIME", "IDENTITY", "METHOD", "KEYS", "REVISIONS", "OUTCOME"}};
  for (const client::AuditEvent& e : page.events) {
    std::string method = e.method;
    if (const size_t slash = method.rfind('/'); slash != std::string::npos) {
      method = method.substr(slash + 1);
    }
    std::vector<std::string> keys(e.keys.begin(),
                                  e.keys.begin() + std::min<size_t>(e.keys.size(), 3));
    std::string key_text =
        keys.empty() ? absl::StrJoin(e.namespaces, ",") : absl::StrJoin(keys, ",");
    if (e.keys.size() > 3) absl::StrAppend(&key_text, ",+", e.keys.size() - 3);
    rows.push_back({TimeText(e.time), DisplayBytes(e.identity), method,
                    key_text.empty() ? "-" : DisplayBytesCut(key_text, 60),
                    absl::StrCat(e.old_revision, "->", e.new_revision), e.outcome});
  }
  std::string out = AlignColumns(rows);
  absl::StrAppend(&out, page.events.size(), page.events.size() == 1 ? " event" : " events",
                  page.next_page_token.empty() ? "\n" : " (more: raise --limit)\n");
  return out;
}

}  // namespace snapconf::cli
