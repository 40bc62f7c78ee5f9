#include "client/cli/document.h"

#include <yaml-cpp/yaml.h>

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "client/cli/format.h"

namespace snapconf::cli {
namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

Json FromYaml(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      Json obj = Json::object();
      for (const auto& kv : node) obj[kv.first.as<std::string>()] = FromYaml(kv.second);
      return obj;
    }
    case YAML::NodeType::Sequence: {
      Json arr = Json::array();
      for (const auto& item : node) arr.push_back(FromYaml(item));
      return arr;
    }
    case YAML::NodeType::Scalar:
      return node.Scalar();
    default:
      return nullptr;
  }
}

// 1-based line and column of a byte offset.
std::string Position(std::string_view text, std::size_t offset) {
  std::size_t line = 1;
  std::size_t col = 1;
  for (std::size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return absl::StrCat(line, ":", col);
}

bool IsPlainSafe(const std::string& s) {
  if (s.empty()) return false;
  const char first = s[0];
  if (!absl::ascii_isalpha(static_cast<unsigned char>(first)) && first != '_' && first != '/') {
    return false;
  }
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '/' &&
        c != '-') {
      return false;
    }
  }
  static const char* const kSpecial[] = {"true", "false", "yes", "no", "on",
                                         "off",  "null",  "y",   "n"};
  const std::string lower = absl::AsciiStrToLower(s);
  for (const char* w : kSpecial) {
    if (lower == w) return false;
  }
  return true;
}

void EmitYaml(YAML::Emitter& out, const Json& j, YamlStrings strings) {
  switch (j.type()) {
    case Json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [k, v] : j.items()) {
        out << YAML::Key << k << YAML::Value;
        EmitYaml(out, v, strings);
      }
      out << YAML::EndMap;
      break;
    case Json::value_t::array:
      if (j.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        break;
      }
      out << YAML::BeginSeq;
      for (const auto& v : j) EmitYaml(out, v, strings);
      out << YAML::EndSeq;
      break;
    case Json::value_t::string: {
      const std::string& s = j.get_ref<const std::string&>();
      if (strings == YamlStrings::kQuoteWhenNeeded && IsPlainSafe(s)) {
        out << s;
      } else {
        out << YAML::DoubleQuoted << s;
      }
      break;
    }
    case Json::value_t::boolean:
      out << YAML::TrueFalseBool << j.get<bool>();
      break;
    case Json::value_t::number_integer:
      out << j.get<std::int64_t>();
      break;
    case Json::value_t::number_unsigned:
      out << j.get<std::uint64_t>();
      break;
    case Json::value_t::number_float:
      out << j.get<double>();
      break;
    default:
      out << YAML::Null;
      break;
  }
}

}  // namespace

absl::StatusOr<Json> ParseDocument(std::string_view text, std::string_view source_name) {
  const std::size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '{') {
    try {
      return Json::parse(text.begin(), text.end());
    } catch (const Json::parse_error& e) {
      // e.byte is 1-based and points just past the offending character.
      const std::size_t offset = e.byte > 0 ? e.byte - 1 : 0;
      std::string what = e.what();
      // nlohmann's text starts with "[json.exception.parse_error.101] parse error at ...".
      if (const std::size_t colon = what.find(": "); colon != std::string::npos) {
        what = what.substr(colon + 2);
      }
      return absl::InvalidArgumentError(
          absl::StrCat(AV(source_name), ":", Position(text, offset), ": invalid JSON: ", what));
    }
  }
  try {
    return FromYaml(YAML::Load(std::string(text)));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(AV(source_name), ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": invalid YAML: ", e.msg));
  }
}

void SetBytes(Json& obj, const std::string& field, std::string_view bytes) {
  if (IsValidUtf8(bytes)) {
    obj[field] = std::string(bytes);
  } else {
    obj[field] = absl::Base64Escape(AV(bytes));
    obj[field + "_encoding"] = "base64";
  }
}

std::string ToYaml(const Json& doc, YamlStrings strings) {
  YAML::Emitter out;
  EmitYaml(out, doc, strings);
  return absl::StrCat(out.c_str(), "\n");
}

}  // namespace snapconf::cli
