// client/cli/document.h
//
// The one JSON/YAML document layer that snapconfctl's output and its input
// files (txn, import) share. Pure functions; thread-safe.
//
//   ASSIGN_OR_RETURN(Json doc, ParseDocument(text, "plan.yaml"));
//   SetBytes(doc, "value", raw_bytes);          // base64 + "value_encoding" when not UTF-8
//   std::cout << ToYaml(doc, YamlStrings::kQuoteWhenNeeded);
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace snapconf::cli {

using Json = nlohmann::ordered_json;

// JSON when the first non-blank character is '{', YAML otherwise; YAML
// scalars stay strings, so both spellings produce the same tree. Syntax
// errors are INVALID_ARGUMENT "SOURCE:LINE:COL: invalid JSON|YAML: ...".
absl::StatusOr<Json> ParseDocument(std::string_view text, std::string_view source_name);

// Sets obj[field] to `bytes` when they are valid UTF-8; otherwise to their
// base64 form, with a sibling "<field>_encoding": "base64".
void SetBytes(Json& obj, const std::string& field, std::string_view bytes);

enum class YamlStrings {
  // Plain when a YAML reader cannot take the text for anything but a string.
  kQuoteWhenNeeded,
  // Always double-quoted: for files read back by tools, where a value such as
  // "007" or " padded " must survive exactly.
  kAlwaysQuoted,
};

// The document in YAML block style, ending in a newline.
std::string ToYaml(const Json& doc, YamlStrings strings);

}  // namespace snapconf::cli
