// client/cli/export_doc.h
//
// The documents of `snapconfctl export` and `snapconfctl import`, and the
// plan an import applies. Pure functions of their arguments (no I/O, no
// clock); thread-safe.
//
// A document holds every entry of one namespace (under an optional key
// prefix) as of one revision:
//
//   {"namespace": "payments/prod", "prefix": "db.", "revision": 42,
//    "entries": [{"key": "db.pool.max", "value": "20", "content_type": "text/plain"}]}
//
// Bytes fields (namespace, prefix, key, value) are strings when they are
// valid UTF-8; otherwise base64 with a sibling "<field>_encoding": "base64",
// the convention of format.h. YAML holds the same document. Parsing accepts
// JSON when the first non-blank character is '{', YAML otherwise (as txn
// files); unknown fields are errors.
//
//   ExportDocument doc = MakeExportDocument("payments/prod", "db.", page);
//   std::cout << FormatExportDocument(doc, OutputFormat::kYaml);
//   ASSIGN_OR_RETURN(ExportDocument back, ParseExportDocument(text, "prod.yaml"));
//   ImportPlan plan = PlanImport(back, current.entries, /*prune=*/false);
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "client/admin_client.h"
#include "client/cli/format.h"

namespace snapconf::cli {

// The server's limit on the operations of one Txn. An import is one Txn (all
// or nothing), so a larger plan is refused rather than split.
inline constexpr std::size_t kMaxImportOperations = 128;

struct ExportEntry {
  std::string key;
  std::string value;
  std::string content_type;

  friend bool operator==(const ExportEntry&, const ExportEntry&) = default;
};

struct ExportDocument {
  std::string ns;
  std::string prefix;  // empty: the whole namespace
  std::int64_t revision = 0;
  std::vector<ExportEntry> entries;  // key order, keys unique

  friend bool operator==(const ExportDocument&, const ExportDocument&) = default;
};

// The document of a listing (ListAll of `ns` under `prefix`).
ExportDocument MakeExportDocument(const std::string& ns, const std::string& prefix,
                                  const client::ListPage& page);

// json: the document as JSON; yaml and table: the document as YAML (an export
// is meant for a file, so there is no table form). Ends in a newline.
std::string FormatExportDocument(const ExportDocument& doc, OutputFormat format);

// INVALID_ARGUMENT naming `source_name` and the line and column (syntax) or
// the field path (content) on errors. Rejects an empty namespace, duplicate
// keys and keys outside the prefix. Entries come back in key order.
absl::StatusOr<ExportDocument> ParseExportDocument(std::string_view text,
                                                   std::string_view source_name);

// What an import writes: creates (no `before`), updates (both) and, with
// prune, deletes (no `after`), in key order, as a ChangeList for
// FormatChanges.
struct ImportPlan {
  std::vector<client::Change> changes;
  std::size_t unchanged = 0;  // entries already equal to the document
};

// Compares the document with `current` (the namespace's entries under the
// document's prefix). Entries are equal when value and content type are;
// revisions are never compared. `prune` deletes keys absent from the document.
ImportPlan PlanImport(const ExportDocument& doc, const std::vector<client::Entry>& current,
                      bool prune);

// The plan as one Txn that commits only while the namespace's newest change
// is still `namespace_revision`.
client::TxnSpec ImportTxn(const std::string& ns, const ImportPlan& plan,
                          std::int64_t namespace_revision, const std::string& message);

}  // namespace snapconf::cli
