// client/cli/format.cc
//
// One JSON tree (nlohmann::ordered_json, so fields keep a stable, readable
// order) is built per result; json prints it, yaml walks it with yaml-cpp's
// emitter. Tables are built separately because people read them differently.
#include "client/cli/format.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/cli/document.h"

namespace snapconf::cli {
namespace {

using client::Change;
using client::Entry;

// Values longer than this are cut in multi-row tables.
constexpr std::size_t kCellChars = 40;

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one.
std::size_t Utf8SequenceLength(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  std::size_t len = 0;
  std::uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  // Overlong forms, UTF-16 surrogates and values past U+10FFFF.
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}

// Printable: not a C0/C1 control character and not DEL.
bool IsPrintableSequence(std::string_view s, std::size_t i, std::size_t len) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (len == 1) return c >= 0x20 && c < 0x7F;
  if (len == 2 && c == 0xC2) {
    return static_cast<unsigned char>(s[i + 1]) >= 0xA0;  // U+0080..U+009F are C1
  }
  return true;
}

bool IsPrintableUtf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t len = Utf8SequenceLength(s, i);
    if (len == 0 || !IsPrintableSequence(s, i, len)) return false;
    i += len;
  }
  return true;
}

std::size_t CountChars(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string OrDash(std::string_view bytes) { return bytes.empty() ? "-" : DisplayBytes(bytes); }

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

std::string Plural(std::size_t n, std::string_view one, std::string_view many) {
  const std::string_view word = n == 1 ? one : many;
  return absl::StrCat(n, " ", absl::string_view(word.data(), word.size()));
}

// ---- json trees ----

// `with_names`: false inside a Change, whose names are one level up.
Json EntryJson(const Entry& e, bool with_names, bool with_value = true) {
  Json j = Json::object();
  if (with_names) {
    SetBytes(j, "namespace", e.ns);
    SetBytes(j, "key", e.key);
  }
  if (with_value) SetBytes(j, "value", e.value);
  SetBytes(j, "content_type", e.content_type);
  j["create_revision"] = e.create_revision;
  j["mod_revision"] = e.mod_revision;
  j["version"] = e.version;
  return j;
}

Json ChangeJson(const Change& c) {
  Json j = Json::object();
  SetBytes(j, "namespace", c.ns);
  SetBytes(j, "key", c.key);
  j["before"] = c.before ? EntryJson(*c.before, false) : Json(nullptr);
  j["after"] = c.after ? EntryJson(*c.after, false) : Json(nullptr);
  return j;
}

Json ChangesJson(const std::vector<Change>& changes) {
  Json arr = Json::array();
  for (const Change& c : changes) arr.push_back(ChangeJson(c));
  return arr;
}

// ---- yaml ----

std::string Render(const Json& doc, OutputFormat format) {
  if (format == OutputFormat::kYaml) return ToYaml(doc, YamlStrings::kQuoteWhenNeeded);
  // Every string in the tree is valid UTF-8 (see SetBytes); "replace" only
  // guards against a future field that forgets to go through it.
  return doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

// ---- tables ----

std::string ChangeOp(const Change& c) {
  if (!c.before && c.after) return "create";
  if (c.before && !c.after) return "delete";
  return "update";
}

std::string ChangesTable(const std::vector<Change>& changes) {
  std::vector<std::vector<std::string>> rows = {{"OP", "NAMESPACE", "KEY", "BEFORE", "AFTER"}};
  for (const Change& c : changes) {
    rows.push_back({ChangeOp(c), DisplayBytes(c.ns), DisplayBytes(c.key),
                    c.before ? DisplayBytesCut(c.before->value, kCellChars) : "-",
                    c.after ? DisplayBytesCut(c.after->value, kCellChars) : "-"});
  }
  return AlignColumns(rows);
}

}  // namespace

absl::StatusOr<OutputFormat> ParseOutputFormat(std::string_view name) {
  if (name == "table") return OutputFormat::kTable;
  if (name == "json") return OutputFormat::kJson;
  if (name == "yaml") return OutputFormat::kYaml;
  return absl::InvalidArgumentError(absl::StrCat(
      "-o: want table, json or yaml, got \"", absl::string_view(name.data(), name.size()), "\""));
}

bool IsValidUtf8(std::string_view bytes) {
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t len = Utf8SequenceLength(bytes, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string DisplayBytes(std::string_view bytes) {
  if (IsPrintableUtf8(bytes)) return std::string(bytes);
  std::string out;
  out.reserve(bytes.size() + 8);
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t len = Utf8SequenceLength(bytes, i);
    if (len > 0 && IsPrintableSequence(bytes, i, len)) {
      if (bytes[i] == '\\') {
        out += "\\\\";
      } else {
        out.append(bytes.substr(i, len));
      }
      i += len;
      continue;
    }
    const auto c = static_cast<unsigned char>(bytes[i]);
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
    ++i;
  }
  return out;
}

std::string DisplayBytesCut(std::string_view bytes, std::size_t max_chars) {
  std::string shown = DisplayBytes(bytes);
  if (CountChars(shown) <= max_chars || max_chars == 0) return shown;
  std::size_t chars = 0;
  std::size_t i = 0;
  // Keep max_chars - 1 characters and add the ellipsis.
  while (i < shown.size()) {
    if ((static_cast<unsigned char>(shown[i]) & 0xC0) != 0x80) {
      if (chars == max_chars - 1) break;
      ++chars;
    }
    ++i;
  }
  shown.resize(i);
  return shown + "…";
}

std::string AlignColumns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c) {
      widths[c] = std::max(widths[c], CountChars(row[c]));
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line.append(widths[c] - CountChars(row[c]) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string FormatGet(const client::GetResult& r, OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json doc = Json::object();
    doc["revision"] = r.revision;
    doc["entry"] = EntryJson(r.entry, true);
    return Render(doc, format);
  }
  const Entry& e = r.entry;
  return AlignColumns({{"namespace", DisplayBytes(e.ns)},
                       {"key", DisplayBytes(e.key)},
                       {"value", DisplayBytes(e.value)},
                       {"content_type", OrDash(e.content_type)},
                       {"version", absl::StrCat(e.version)},
                       {"create_revision", absl::StrCat(e.create_revision)},
                       {"mod_revision", absl::StrCat(e.mod_revision)},
                       {"read_at_revision", absl::StrCat(r.revision)}});
}

std::string FormatList(const client::ListPage& page, bool keys_only, OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json doc = Json::object();
    doc["revision"] = page.revision;
    Json entries = Json::array();
    for (const Entry& e : page.entries) entries.push_back(EntryJson(e, true, !keys_only));
    doc["entries"] = std::move(entries);
    doc["truncated"] = !page.next_page_token.empty();
    return Render(doc, format);
  }
  std::string out;
  if (!page.entries.empty()) {
    std::vector<std::vector<std::string>> rows;
    if (keys_only) {
      rows.push_back({"KEY", "CONTENT_TYPE", "VERSION", "MOD_REVISION"});
    } else {
      rows.push_back({"KEY", "VALUE", "CONTENT_TYPE", "VERSION", "MOD_REVISION"});
    }
    for (const Entry& e : page.entries) {
      std::vector<std::string> row = {DisplayBytes(e.key)};
      if (!keys_only) row.push_back(DisplayBytesCut(e.value, kCellChars));
      row.push_back(OrDash(e.content_type));
      row.push_back(absl::StrCat(e.version));
      row.push_back(absl::StrCat(e.mod_revision));
      rows.push_back(std::move(row));
    }
    out = AlignColumns(rows);
  }
  absl::StrAppend(&out, Plural(page.entries.size(), "entry", "entries"), " at revision ",
                  page.revision,
                  page.next_page_token.empty() ? "" : " (limit reached; more entries exist)", "\n");
  return out;
}

std::string FormatNamespaces(const client::NamespaceList& list, OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json doc = Json::object();
    doc["revision"] = list.revision;
    Json arr = Json::array();
    for (const auto& n : list.namespaces) {
      Json j = Json::object();
      SetBytes(j, "namespace", n.ns);
      j["key_count"] = n.key_count;
      arr.push_back(std::move(j));
    }
    doc["namespaces"] = std::move(arr);
    return Render(doc, format);
  }
  std::string out;
  if (!list.namespaces.empty()) {
    std::vector<std::vector<std::string>> rows = {{"NAMESPACE", "KEYS"}};
    for (const auto& n : list.namespaces) {
      rows.push_back({DisplayBytes(n.ns), absl::StrCat(n.key_count)});
    }
    out = AlignColumns(rows);
  }
  absl::StrAppend(&out, Plural(list.namespaces.size(), "namespace", "namespaces"), " at revision ",
                  list.revision, "\n");
  return out;
}

std::string FormatPut(const client::PutResult& r, OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json doc = Json::object();
    doc["revision"] = r.revision;
    doc["entry"] = EntryJson(r.entry, true);
    return Render(doc, format);
  }
  return absl::StrCat("put ", DisplayBytes(r.entry.ns), " ", DisplayBytes(r.entry.key),
                      ": revision ", r.revision, ", version ", r.entry.version, "\n");
}

std::string FormatDelete(const client::DeleteResult& r, OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json doc = Json::object();
    doc["revision"] = r.revision;
    doc["deleted"] = EntryJson(r.deleted, true);
    return Render(doc, format);
  }
  return absl::StrCat("deleted ", DisplayBytes(r.deleted.ns), " ", DisplayBytes(r.deleted.key),
                      ": revision ", r.revision, " (was version ", r.deleted.version, ")\n");
}

std::string FormatChanges(const client::ChangeList& changes, std::string_view summary,
                          OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json doc = Json::object();
    doc["revision"] = changes.revision;
    doc["changes"] = ChangesJson(changes.changes);
    return Render(doc, format);
  }
  std::string out = absl::StrCat(absl::string_view(summary.data(), summary.size()), "\n");
  if (changes.changes.empty()) return out + "no changes\n";
  return out + ChangesTable(changes.changes);
}

std::string FormatHistory(const client::HistoryPage& page, OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json doc = Json::object();
    doc["revision"] = page.revision;
    Json records = Json::array();
    for (const auto& r : page.records) {
      Json j = Json::object();
      j["revision"] = r.revision;
      j["commit_time"] = Rfc3339(r.commit_time);
      SetBytes(j, "author", r.author);
      SetBytes(j, "message", r.message);
      j["changes"] = ChangesJson(r.changes);
      records.push_back(std::move(j));
    }
    doc["records"] = std::move(records);
    doc["truncated"] = !page.next_page_token.empty();
    return Render(doc, format);
  }
  std::string out;
  if (!page.records.empty()) {
    std::vector<std::vector<std::string>> rows = {
        {"REVISION", "TIME", "AUTHOR", "OP", "NAMESPACE", "KEY", "MESSAGE"}};
    for (const auto& r : page.records) {
      const std::string rev = absl::StrCat(r.revision);
      const std::string time = Rfc3339(r.commit_time);
      const std::string author = OrDash(r.author);
      const std::string message = DisplayBytesCut(r.message, kCellChars);
      if (r.changes.empty()) rows.push_back({rev, time, author, "-", "-", "-", message});
      for (const Change& c : r.changes) {
        rows.push_back(
            {rev, time, author, ChangeOp(c), DisplayBytes(c.ns), DisplayBytes(c.key), message});
      }
    }
    out = AlignColumns(rows);
  }
  absl::StrAppend(
      &out, Plural(page.records.size(), "record", "records"), " at revision ", page.revision,
      page.next_page_token.empty() ? "" : " (limit reached; older records exist)", "\n");
  return out;
}

std::string FormatStatus(const client::ServerStatus& s, OutputFormat format) {
  if (format != OutputFormat::kTable) {
    Json doc = Json::object();
    doc["node_id"] = s.node_id;
    doc["version"] = s.version;
    doc["store"] = s.store;
    doc["revision"] = s.revision;
    doc["oldest_revision"] = s.oldest_revision;
    doc["key_count"] = s.key_count;
    doc["namespace_count"] = s.namespace_count;
    doc["writable"] = s.writable;
    doc["open_watches"] = s.open_watches;
    doc["start_time"] = Rfc3339(s.start_time);
    doc["unavailable_reason"] = s.unavailable_reason;
    return Render(doc, format);
  }
  std::vector<std::vector<std::string>> rows = {
      {"node_id", OrDash(s.node_id)},
      {"version", OrDash(s.version)},
      {"store", OrDash(s.store)},
      {"revision", absl::StrCat(s.revision)},
      {"oldest_revision", absl::StrCat(s.oldest_revision)},
      {"key_count", absl::StrCat(s.key_count)},
      {"namespace_count", absl::StrCat(s.namespace_count)},
      {"writable", s.writable ? "true" : "false"},
      {"open_watches", absl::StrCat(s.open_watches)},
      {"start_time", Rfc3339(s.start_time)}};
  if (!s.unavailable_reason.empty()) {
    rows.push_back({"unavailable_reason", DisplayBytes(s.unavailable_reason)});
  }
  return AlignColumns(rows);
}

std::string FormatWatchEvent(const client::WatchEvent& event, OutputFormat format) {
  // Each watch message becomes flat records: a JSON object for json/yaml and
  // a text line for the table, built side by side from the same data.
  std::vector<Json> records;
  std::vector<std::string> lines;
  auto record = [](std::string_view kind, std::int64_t revision) {
    Json j = Json::object();
    j["kind"] = std::string(kind);
    j["revision"] = revision;
    return j;
  };
  switch (event.kind) {
    case client::WatchEvent::Kind::kProgress:
      records.push_back(record("progress", event.revision));
      lines.push_back(absl::StrCat(event.revision, " progress"));
      break;
    case client::WatchEvent::Kind::kReset:
      for (const Entry& e : event.entries) {
        Json j = record("reset", event.revision);
        j["reason"] = event.reset_reason;
        SetBytes(j, "namespace", e.ns);
        SetBytes(j, "key", e.key);
        SetBytes(j, "value", e.value);
        j["mod_revision"] = e.mod_revision;
        records.push_back(std::move(j));
        lines.push_back(absl::StrCat(event.revision, " reset ", DisplayBytes(e.ns), " ",
                                     DisplayBytes(e.key), " = ", DisplayBytes(e.value)));
      }
      if (event.entries.empty() && !event.more) {
        Json j = record("reset", event.revision);
        j["reason"] = event.reset_reason;
        records.push_back(std::move(j));
        lines.push_back(absl::StrCat(event.revision, " reset (", event.reset_reason, ", empty)"));
      }
      break;
    case client::WatchEvent::Kind::kChanges:
      for (const client::WatchEvent::Revision& r : event.revisions) {
        for (const Change& c : r.changes) {
          Json j = record("change", r.revision);
          SetBytes(j, "namespace", c.ns);
          SetBytes(j, "key", c.key);
          j["op"] = c.after ? "put" : "delete";
          if (c.after) SetBytes(j, "value", c.after->value);
          if (event.net) j["net"] = true;
          records.push_back(std::move(j));
          std::string line = absl::StrCat(r.revision, c.after ? " put " : " delete ",
                                          DisplayBytes(c.ns), " ", DisplayBytes(c.key));
          if (c.after) absl::StrAppend(&line, " = ", DisplayBytes(c.after->value));
          lines.push_back(std::move(line));
        }
      }
      break;
  }
  std::string out;
  if (format == OutputFormat::kTable) {
    for (const std::string& line : lines) absl::StrAppend(&out, line, "\n");
    return out;
  }
  for (const Json& j : records) {
    if (format == OutputFormat::kJson) {
      absl::StrAppend(&out, j.dump(-1, ' ', false, Json::error_handler_t::replace), "\n");
    } else {
      absl::StrAppend(&out, "---\n", Render(j, OutputFormat::kYaml));
    }
  }
  return out;
}

}  // namespace snapconf::cli
