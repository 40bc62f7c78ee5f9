#include "service/validate.h"

#include <cstdint>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace snapconf {
namespace {

// Shows a rejected name in an error without echoing control bytes.
std::string Quote(absl::string_view s) {
  constexpr size_t kShown = 64;
  std::string shown = absl::CHexEscape(s.substr(0, kShown));
  if (s.size() > kShown) absl::StrAppend(&shown, "...");
  return absl::StrCat("\"", shown, "\"");
}

absl::Status Invalid(absl::string_view field, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, " ", Quote(value), " ", why));
}

bool IsNamespaceStart(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsNamespaceChar(char c) { return IsNamespaceStart(c) || c == '.' || c == '_' || c == '-'; }
bool IsKeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-' || c == '/' || c == ':' || c == '@';
}

// Shared by keys and prefixes: the alphabet and the slash rules.
absl::Status CheckKeyShape(absl::string_view s, absl::string_view field, bool is_prefix) {
  if (!IsValidUtf8(s)) return Invalid(field, s, "is not valid UTF-8");
  for (size_t i = 0; i < s.size(); ++i) {
    if (!IsKeyChar(s[i])) {
      return Invalid(field, s,
                     absl::StrCat("has a character outside [A-Za-z0-9._-/:@] at byte ", i));
    }
    if (s[i] == '/' && i + 1 < s.size() && s[i + 1] == '/') {
      return Invalid(field, s, "contains an empty segment (\"//\")");
    }
  }
  if (!s.empty() && s.front() == '/') return Invalid(field, s, "must not start with '/'");
  if (!is_prefix && !s.empty() && s.back() == '/')
    return Invalid(field, s, "must not end with '/'");
  return absl::OkStatus();
}

}  // namespace

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  while (i < s.size()) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char cc = p[i + k];
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMinForLength[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

absl::Status ValidateNamespace(absl::string_view ns, const Limits& limits,
                               absl::string_view field) {
  if (ns.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (ns.size() > limits.max_namespace_bytes) {
    return Invalid(
        field, ns,
        absl::StrCat("is ", ns.size(), " bytes, over the limit of ", limits.max_namespace_bytes));
  }
  if (!IsValidUtf8(ns)) return Invalid(field, ns, "is not valid UTF-8");
  bool segment_start = true;
  for (size_t i = 0; i < ns.size(); ++i) {
    const char c = ns[i];
    if (c == '/') {
      if (segment_start) return Invalid(field, ns, "has an empty segment");
      segment_start = true;
      continue;
    }
    if (segment_start ? !IsNamespaceStart(c) : !IsNamespaceChar(c)) {
      return Invalid(field, ns,
                     absl::StrCat("has an invalid character at byte ", i,
                                  ": segments are [a-z0-9] followed by [a-z0-9._-]"));
    }
    segment_start = false;
  }
  if (segment_start) return Invalid(field, ns, "has an empty segment");
  return absl::OkStatus();
}

absl::Status ValidateKey(absl::string_view key, const Limits& limits, absl::string_view field) {
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (key.size() > limits.max_key_bytes) {
    return Invalid(
        field, key,
        absl::StrCat("is ", key.size(), " bytes, over the limit of ", limits.max_key_bytes));
  }
  return CheckKeyShape(key, field, /*is_prefix=*/false);
}

absl::Status ValidatePrefix(absl::string_view prefix, const Limits& limits,
                            absl::string_view field) {
  if (prefix.size() > limits.max_key_bytes) {
    return Invalid(
        field, prefix,
        absl::StrCat("is ", prefix.size(), " bytes, over the limit of ", limits.max_key_bytes));
  }
  return CheckKeyShape(prefix, field, /*is_prefix=*/true);
}

absl::Status ValidateValue(absl::string_view value, const Limits& limits) {
  if (value.size() > limits.max_value_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "value is ", value.size(), " bytes, over the limit of ", limits.max_value_bytes));
  }
  return absl::OkStatus();
}

absl::Status ValidateContentType(absl::string_view content_type, const Limits& limits) {
  if (content_type.size() > limits.max_content_type_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("content_type is over the limit of ",
                                                   limits.max_content_type_bytes, " bytes"));
  }
  for (char c : content_type) {
    if (c < 0x21 || c > 0x7E) {
      if (c == ' ') continue;  // "text/plain; charset=utf-8"
      return Invalid("content_type", content_type, "must be printable ASCII");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateMessage(absl::string_view message, const Limits& limits) {
  if (message.size() > limits.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message is ", message.size(), " bytes, over the limit of ", limits.max_message_bytes));
  }
  if (!IsValidUtf8(message)) return absl::InvalidArgumentError("message is not valid UTF-8");
  return absl::OkStatus();
}

}  // namespace snapconf
