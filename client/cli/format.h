// client/cli/format.h
//
// Renders AdminClient results for snapconfctl in three formats. Pure
// functions of their arguments (no I/O, no clock); thread-safe.
//
//   table  for people: aligned columns, a summary line. Bytes that are
//          printable UTF-8 are shown as they are; anything else is escaped
//          (\n, \t, \\, \xNN for control characters and invalid bytes), so
//          one entry is always one line. Long values are cut in listings
//          (`get` shows them whole).
//   json   one JSON document (pretty-printed, two spaces, final newline).
//          Bytes fields are strings when they are valid UTF-8; otherwise the
//          field holds base64 and a sibling "<field>_encoding": "base64"
//          says so (e.g. "value" + "value_encoding"). Absent before/after of
//          a change are null. Times are RFC 3339 UTC.
//   yaml   the same document as json, in block style. Strings that a YAML
//          reader could take for a number, boolean or null are quoted.
//
//   std::cout << FormatGet(result, OutputFormat::kJson);
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "client/admin_client.h"

namespace snapconf::cli {

enum class OutputFormat { kTable, kJson, kYaml };

// "table", "json" or "yaml"; INVALID_ARGUMENT otherwise.
absl::StatusOr<OutputFormat> ParseOutputFormat(std::string_view name);

std::string FormatGet(const client::GetResult& result, OutputFormat format);
// `keys_only` drops values. A non-empty next_page_token means the listing
// was cut by a limit; the table says so.
std::string FormatList(const client::ListPage& page, bool keys_only, OutputFormat format);
std::string FormatNamespaces(const client::NamespaceList& list, OutputFormat format);
std::string FormatPut(const client::PutResult& result, OutputFormat format);
std::string FormatDelete(const client::DeleteResult& result, OutputFormat format);
// Txn, Diff and Rollback results. `summary` is the table's first line (for
// example "committed revision 7"); json and yaml carry revision and changes.
std::string FormatChanges(const client::ChangeList& changes, std::string_view summary,
                          OutputFormat format);
std::string FormatHistory(const client::HistoryPage& page, OutputFormat format);
std::string FormatStatus(const client::ServerStatus& status, OutputFormat format);
// One watch message as lines: one line per changed key or reset entry, and
// one per progress message. json: one compact JSON object per line with
// "kind" ("change", "reset" or "progress"), "revision", and for keys
// "namespace", "key", "op" and "value" (absent on deletes). yaml: one
// document per line-equivalent object, each starting with "---".
std::string FormatWatchEvent(const client::WatchEvent& event, OutputFormat format);

// Building blocks, exposed for tests.
bool IsValidUtf8(std::string_view bytes);
// Bytes as one line of text (see "table" above).
std::string DisplayBytes(std::string_view bytes);
// DisplayBytes cut to at most `max_chars` characters, ending in "…" when cut.
std::string DisplayBytesCut(std::string_view bytes, std::size_t max_chars);
// Rows aligned in columns two spaces apart, no trailing spaces, each line
// ending in '\n'. Width counts UTF-8 characters.
std::string AlignColumns(const std::vector<std::vector<std::string>>& rows);

}  // namespace snapconf::cli
