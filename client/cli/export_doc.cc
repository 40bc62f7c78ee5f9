// client/cli/export_doc.cc
//
// Both syntaxes go through one document tree (client/cli/document.h):
// rendering builds it and prints JSON or YAML; parsing turns either into the
// same tree and validates it once.
#include "client/cli/export_doc.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli/document.h"
#include "common/status_macros.h"

namespace snapconf::cli {
namespace {

using client::Change;
using client::Entry;

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// ---- rendering ----

Json DocumentJson(const ExportDocument& doc) {
  Json j = Json::object();
  SetBytes(j, "namespace", doc.ns);
  SetBytes(j, "prefix", doc.prefix);
  j["revision"] = doc.revision;
  Json entries = Json::array();
  for (const ExportEntry& e : doc.entries) {
    Json item = Json::object();
    SetBytes(item, "key", e.key);
    SetBytes(item, "value", e.value);
    SetBytes(item, "content_type", e.content_type);
    entries.push_back(std::move(item));
  }
  j["entries"] = std::move(entries);
  return j;
}

// ---- parsing ----

class Validator {
 public:
  explicit Validator(std::string_view source) : source_(source) {}

  absl::Status Error(const std::string& path, std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(AV(source_), ": ", path, ": ", AV(what)));
  }

  absl::Status CheckFields(const Json& obj, const std::string& path,
                           std::initializer_list<const char*> allowed) const {
    if (!obj.is_object()) return Error(path, "want an object");
    for (const auto& [k, v] : obj.items()) {
      bool ok = false;
      for (const char* a : allowed) ok = ok || k == a;
      if (!ok) return Error(path, absl::StrCat("unknown field \"", k, "\""));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> String(const Json& obj, const std::string& path,
                                     const std::string& field, bool required) const {
    auto it = obj.find(field);
    if (it == obj.end() || it->is_null()) {
      if (required) return Error(absl::StrCat(path, ".", field), "missing");
      return std::string();
    }
    if (!it->is_string()) return Error(absl::StrCat(path, ".", field), "want a string");
    return it->get<std::string>();
  }

  absl::StatusOr<std::string> Bytes(const Json& obj, const std::string& path,
                                    const std::string& field, bool required) const {
    ASSIGN_OR_RETURN(std::string text, String(obj, path, field, required));
    const std::string enc_field = absl::StrCat(field, "_encoding");
    ASSIGN_OR_RETURN(std::string encoding, String(obj, path, enc_field, false));
    if (encoding.empty()) return text;
    if (encoding != "base64") return Error(absl::StrCat(path, ".", enc_field), "want \"base64\"");
    std::string bytes;
    if (!absl::Base64Unescape(text, &bytes)) {
      return Error(absl::StrCat(path, ".", field), "not valid base64");
    }
    return bytes;
  }

  absl::StatusOr<std::int64_t> Revision(const Json& doc) const {
    auto it = doc.find("revision");
    if (it == doc.end() || it->is_null()) return 0;
    if (it->is_number_integer()) return it->get<std::int64_t>();
    std::int64_t v = 0;
    if (it->is_string() && absl::SimpleAtoi(it->get<std::string>(), &v)) return v;
    return Error("revision", "want an integer");
  }

  absl::StatusOr<ExportDocument> Parse(const Json& doc) const {
    if (!doc.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AV(source_), ": want an object with namespace, revision and entries"));
    }
    RETURN_IF_ERROR(CheckFields(
        doc, "document",
        {"namespace", "namespace_encoding", "prefix", "prefix_encoding", "revision", "entries"}));
    ExportDocument out;
    ASSIGN_OR_RETURN(out.ns, Bytes(doc, "document", "namespace", true));
    if (out.ns.empty()) return Error("document.namespace", "must not be empty");
    ASSIGN_OR_RETURN(out.prefix, Bytes(doc, "document", "prefix", false));
    ASSIGN_OR_RETURN(out.revision, Revision(doc));
    auto entries = doc.find("entries");
    if (entries == doc.end()) return Error("entries", "missing");
    if (!entries->is_array()) return Error("entries", "want a list");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < entries->size(); ++i) {
      const std::string path = absl::StrCat("entries[", i, "]");
      const Json& e = (*entries)[i];
      RETURN_IF_ERROR(CheckFields(e, path,
                                  {"key", "key_encoding", "value", "value_encoding", "content_type",
                                   "content_type_encoding"}));
      ExportEntry entry;
      ASSIGN_OR_RETURN(entry.key, Bytes(e, path, "key", true));
      ASSIGN_OR_RETURN(entry.value, Bytes(e, path, "value", true));
      ASSIGN_OR_RETURN(entry.content_type, Bytes(e, path, "content_type", false));
      if (entry.key.empty()) return Error(absl::StrCat(path, ".key"), "must not be empty");
      if (!absl::StartsWith(entry.key, out.prefix)) {
        return Error(absl::StrCat(path, ".key"), "outside the document's prefix");
      }
      if (!seen.insert(entry.key).second) {
        return Error(absl::StrCat(path, ".key"), "duplicate key");
      }
      out.entries.push_back(std::move(entry));
    }
    std::sort(out.entries.begin(), out.entries.end(),
              [](const ExportEntry& a, const ExportEntry& b) { return a.key < b.key; });
    return out;
  }

 private:
  std::string_view source_;
};

Entry PlanEntry(const std::string& ns, const ExportEntry& e) {
  Entry out;
  out.ns = ns;
  out.key = e.key;
  out.value = e.value;
  out.content_type = e.content_type;
  return out;
}

}  // namespace

ExportDocument MakeExportDocument(const std::string& ns, const std::string& prefix,
                                  const client::ListPage& page) {
  ExportDocument doc;
  doc.ns = ns;
  doc.prefix = prefix;
  doc.revision = page.revision;
  for (const Entry& e : page.entries) doc.entries.push_back({e.key, e.value, e.content_type});
  std::sort(doc.entries.begin(), doc.entries.end(),
            [](const ExportEntry& a, const ExportEntry& b) { return a.key < b.key; });
  return doc;
}

std::string FormatExportDocument(const ExportDocument& doc, OutputFormat format) {
  const Json j = DocumentJson(doc);
  if (format == OutputFormat::kJson) {
    return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
  }
  // Always quoted: a value such as "007" or " padded " must come back exactly.
  return ToYaml(j, YamlStrings::kAlwaysQuoted);
}

absl::StatusOr<ExportDocument> ParseExportDocument(std::string_view text,
                                                   std::string_view source_name) {
  ASSIGN_OR_RETURN(const Json doc, ParseDocument(text, source_name));
  return Validator(source_name).Parse(doc);
}

ImportPlan PlanImport(const ExportDocument& doc, const std::vector<Entry>& current, bool prune) {
  std::map<std::string, const Entry*> existing;
  for (const Entry& e : current) existing[e.key] = &e;
  std::set<std::string> wanted;
  ImportPlan plan;
  for (const ExportEntry& e : doc.entries) {
    wanted.insert(e.key);
    auto it = existing.find(e.key);
    Change c;
    c.ns = doc.ns;
    c.key = e.key;
    if (it == existing.end()) {
      c.after = PlanEntry(doc.ns, e);
    } else if (it->second->value != e.value || it->second->content_type != e.content_type) {
      c.before = *it->second;
      c.after = PlanEntry(doc.ns, e);
    } else {
      ++plan.unchanged;
      continue;
    }
    plan.changes.push_back(std::move(c));
  }
  if (prune) {
    for (const auto& [key, entry] : existing) {
      if (wanted.count(key) != 0) continue;
      Change c;
      c.ns = doc.ns;
      c.key = key;
      c.before = *entry;
      plan.changes.push_back(std::move(c));
    }
  }
  std::sort(plan.changes.begin(), plan.changes.end(),
            [](const Change& a, const Change& b) { return a.key < b.key; });
  return plan;
}

client::TxnSpec ImportTxn(const std::string& ns, const ImportPlan& plan,
                          std::int64_t namespace_revision, const std::string& message) {
  client::TxnSpec spec;
  client::Compare guard;
  guard.ns = ns;
  guard.target = client::Compare::Target::kNamespaceRevision;
  guard.op = client::Compare::Op::kEqual;
  guard.number = namespace_revision;
  spec.compares.push_back(std::move(guard));
  for (const Change& c : plan.changes) {
    client::TxnOperation op;
    op.ns = ns;
    op.key = c.key;
    if (c.after) {
      op.kind = client::TxnOperation::Kind::kPut;
      op.value = c.after->value;
      op.content_type = c.after->content_type;
    } else {
      op.kind = client::TxnOperation::Kind::kDelete;
    }
    spec.operations.push_back(std::move(op));
  }
  spec.message = message;
  return spec;
}

}  // namespace snapconf::cli
