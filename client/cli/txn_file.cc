// client/cli/txn_file.cc
//
// Both syntaxes are first turned into one tree (ParseDocument, where the
// parsers' exceptions stop), then one validator walks it.
#include "client/cli/txn_file.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/cli/document.h"
#include "common/status_macros.h"

namespace snapconf::cli {
namespace {

using client::Compare;
using client::TxnOperation;
using client::TxnSpec;

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

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

  // A string field; `required` fields must be present (they may be empty).
  absl::StatusOr<std::string> String(const Json& obj, const std::string& path, const char* field,
                                     bool required) const {
    auto it = obj.find(field);
    if (it == obj.end()) {
      if (required) return Error(absl::StrCat(path, ".", field), "missing");
      return std::string();
    }
    if (!it->is_string()) return Error(absl::StrCat(path, ".", field), "want a string");
    return it->get<std::string>();
  }

  // A bytes field: a string, base64 when "<field>_encoding" says so.
  absl::StatusOr<std::string> Bytes(const Json& obj, const std::string& path, const char* field,
                                    bool required) const {
    ASSIGN_OR_RETURN(std::string text, String(obj, path, field, required));
    const std::string enc_field = absl::StrCat(field, "_encoding");
    ASSIGN_OR_RETURN(std::string encoding, String(obj, path, enc_field.c_str(), false));
    if (encoding.empty()) return text;
    if (encoding != "base64") {
      return Error(absl::StrCat(path, ".", enc_field), "want \"base64\"");
    }
    std::string bytes;
    if (!absl::Base64Unescape(text, &bytes)) {
      return Error(absl::StrCat(path, ".", field), "not valid base64");
    }
    return bytes;
  }

  absl::StatusOr<std::int64_t> Number(const Json& obj, const std::string& path,
                                      bool allow_bool) const {
    const std::string p = absl::StrCat(path, ".number");
    auto it = obj.find("number");
    if (it == obj.end()) return Error(p, "missing");
    if (it->is_number_integer()) return it->get<std::int64_t>();
    if (allow_bool && it->is_boolean()) return it->get<bool>() ? 1 : 0;
    if (it->is_string()) {  // every YAML scalar arrives as a string
      const std::string s = it->get<std::string>();
      std::int64_t v = 0;
      if (absl::SimpleAtoi(s, &v)) return v;
      if (allow_bool && (s == "true" || s == "false")) return s == "true" ? 1 : 0;
    }
    return Error(p, allow_bool ? "want an integer or true/false" : "want an integer");
  }

  absl::StatusOr<Compare> ParseCompare(const Json& j, const std::string& path) const {
    RETURN_IF_ERROR(CheckFields(
        j, path, {"namespace", "key", "target", "op", "number", "value", "value_encoding"}));
    Compare c;
    ASSIGN_OR_RETURN(c.ns, Bytes(j, path, "namespace", true));
    ASSIGN_OR_RETURN(std::string target, String(j, path, "target", true));
    ASSIGN_OR_RETURN(std::string op, String(j, path, "op", true));
    static const std::pair<const char*, Compare::Target> kTargets[] = {
        {"mod_revision", Compare::Target::kModRevision},
        {"create_revision", Compare::Target::kCreateRevision},
        {"version", Compare::Target::kVersion},
        {"exists", Compare::Target::kExists},
        {"value", Compare::Target::kValue},
        {"namespace_revision", Compare::Target::kNamespaceRevision}};
    bool found = false;
    for (const auto& [name, t] : kTargets) {
      if (target == name) {
        c.target = t;
        found = true;
      }
    }
    if (!found) {
      return Error(absl::StrCat(path, ".target"),
                   absl::StrCat("unknown target \"", target,
                                "\" (want mod_revision, create_revision, version, exists, "
                                "value or namespace_revision)"));
    }
    if (op == "==") {
      c.op = Compare::Op::kEqual;
    } else if (op == "!=") {
      c.op = Compare::Op::kNotEqual;
    } else if (op == "<") {
      c.op = Compare::Op::kLess;
    } else if (op == ">") {
      c.op = Compare::Op::kGreater;
    } else {
      return Error(absl::StrCat(path, ".op"),
                   absl::StrCat("unknown op \"", op, "\" (want ==, !=, < or >)"));
    }
    if (c.target == Compare::Target::kNamespaceRevision) {
      // The key may be given empty, never set.
      ASSIGN_OR_RETURN(std::string key, Bytes(j, path, "key", false));
      if (!key.empty()) {
        return Error(absl::StrCat(path, ".key"), "must be empty for target namespace_revision");
      }
    } else {
      ASSIGN_OR_RETURN(c.key, Bytes(j, path, "key", true));
      if (c.key.empty()) return Error(absl::StrCat(path, ".key"), "must not be empty");
    }
    if (c.target == Compare::Target::kValue) {
      if (j.contains("number"))
        return Error(absl::StrCat(path, ".number"),
                     "not used with "
                     "target value");
      ASSIGN_OR_RETURN(c.value, Bytes(j, path, "value", true));
    } else {
      if (j.contains("value")) {
        return Error(absl::StrCat(path, ".value"), "only used with target value");
      }
      ASSIGN_OR_RETURN(c.number, Number(j, path, c.target == Compare::Target::kExists));
    }
    return c;
  }

  absl::StatusOr<TxnOperation> ParseOperation(const Json& j, const std::string& path) const {
    RETURN_IF_ERROR(CheckFields(j, path, {"put", "delete"}));
    if (j.size() != 1) return Error(path, "want exactly one of \"put\" or \"delete\"");
    TxnOperation op;
    if (j.contains("put")) {
      const std::string p = absl::StrCat(path, ".put");
      const Json& put = j.at("put");
      RETURN_IF_ERROR(
          CheckFields(put, p, {"namespace", "key", "value", "value_encoding", "content_type"}));
      op.kind = TxnOperation::Kind::kPut;
      ASSIGN_OR_RETURN(op.ns, Bytes(put, p, "namespace", true));
      ASSIGN_OR_RETURN(op.key, Bytes(put, p, "key", true));
      ASSIGN_OR_RETURN(op.value, Bytes(put, p, "value", true));
      ASSIGN_OR_RETURN(op.content_type, String(put, p, "content_type", false));
    } else {
      const std::string p = absl::StrCat(path, ".delete");
      const Json& del = j.at("delete");
      RETURN_IF_ERROR(CheckFields(del, p, {"namespace", "key"}));
      op.kind = TxnOperation::Kind::kDelete;
      ASSIGN_OR_RETURN(op.ns, Bytes(del, p, "namespace", true));
      ASSIGN_OR_RETURN(op.key, Bytes(del, p, "key", true));
    }
    return op;
  }

  absl::StatusOr<TxnSpec> ParseSpec(const Json& doc) const {
    if (!doc.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(AV(source_), ": want an object with compares, operations and message"));
    }
    RETURN_IF_ERROR(CheckFields(doc, "document", {"compares", "operations", "message"}));
    TxnSpec spec;
    if (auto it = doc.find("compares"); it != doc.end() && !it->is_null()) {
      if (!it->is_array()) return Error("compares", "want a list");
      for (std::size_t i = 0; i < it->size(); ++i) {
        ASSIGN_OR_RETURN(Compare c, ParseCompare((*it)[i], absl::StrCat("compares[", i, "]")));
        spec.compares.push_back(std::move(c));
      }
    }
    auto ops = doc.find("operations");
    if (ops == doc.end() || !ops->is_array() || ops->empty()) {
      return Error("operations", "want a non-empty list");
    }
    for (std::size_t i = 0; i < ops->size(); ++i) {
      ASSIGN_OR_RETURN(TxnOperation op,
                       ParseOperation((*ops)[i], absl::StrCat("operations[", i, "]")));
      spec.operations.push_back(std::move(op));
    }
    ASSIGN_OR_RETURN(spec.message, String(doc, "document", "message", false));
    return spec;
  }

 private:
  std::string_view source_;
};

}  // namespace

absl::StatusOr<TxnSpec> ParseTxnFile(std::string_view text, std::string_view source_name) {
  ASSIGN_OR_RETURN(const Json doc, ParseDocument(text, source_name));
  return Validator(source_name).ParseSpec(doc);
}

}  // namespace snapconf::cli
