// tests/fuzz/validate_fuzz.cc
//
// Fuzzes service/validate.h against an independent statement of the rules in
// its header: every name is accepted exactly when the reference says so, a
// rejection is INVALID_ARGUMENT naming the field, an error message stays short
// whatever the input (nothing huge or raw is echoed back), and an accepted key
// is also an accepted prefix (one spelling per key).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "service/limits.h"
#include "service/validate.h"
#include "tests/fuzz/fuzz_input.h"

namespace snapconf::fuzz {
namespace {

// Well-formed UTF-8 as the Unicode standard tabulates it (byte ranges per
// position), written independently of the decoder under test.
bool RefUtf8(std::string_view s) {
  size_t i = 0;
  auto in = [&](size_t k, unsigned lo, unsigned hi) {
    if (i + k >= s.size()) return false;
    const unsigned b = static_cast<unsigned char>(s[i + k]);
    return b >= lo && b <= hi;
  };
  while (i < s.size()) {
    const unsigned b = static_cast<unsigned char>(s[i]);
    size_t len = 0;
    if (b <= 0x7F) {
      len = 1;
    } else if (b >= 0xC2 && b <= 0xDF) {
      len = in(1, 0x80, 0xBF) ? 2 : 0;
    } else if (b == 0xE0) {
      len = in(1, 0xA0, 0xBF) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) {
      len = in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if (b == 0xED) {
      len = in(1, 0x80, 0x9F) && in(2, 0x80, 0xBF) ? 3 : 0;
    } else if (b == 0xF0) {
      len = in(1, 0x90, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    } else if (b >= 0xF1 && b <= 0xF3) {
      len = in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    } else if (b == 0xF4) {
      len = in(1, 0x80, 0x8F) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF) ? 4 : 0;
    }
    if (len == 0) return false;
    i += len;
  }
  return true;
}

bool Lower(char c) { return c >= 'a' && c <= 'z'; }
bool Digit(char c) { return c >= '0' && c <= '9'; }
bool KeyChar(char c) {
  return Lower(c) || (c >= 'A' && c <= 'Z') || Digit(c) ||
         std::string_view("._-/:@").find(c) != std::string_view::npos;
}

bool RefNamespace(std::string_view ns, const Limits& limits) {
  if (ns.empty() || ns.size() > limits.max_namespace_bytes) return false;
  size_t start = 0;
  while (true) {
    const size_t end = std::min(ns.find('/', start), ns.size());
    const std::string_view segment = ns.substr(start, end - start);
    if (segment.empty() || !(Lower(segment[0]) || Digit(segment[0]))) return false;
    for (char c : segment) {
      if (!(Lower(c) || Digit(c) || c == '.' || c == '_' || c == '-')) return false;
    }
    if (end == ns.size()) return true;
    start = end + 1;
  }
}

bool RefKeyShape(std::string_view s, bool prefix) {
  for (char c : s) {
    if (!KeyChar(c)) return false;
  }
  if (s.find("//") != std::string_view::npos) return false;
  if (!s.empty() && s.front() == '/') return false;
  if (!prefix && !s.empty() && s.back() == '/') return false;
  return true;
}

bool RefKey(std::string_view key, const Limits& limits) {
  return !key.empty() && key.size() <= limits.max_key_bytes && RefKeyShape(key, false);
}
bool RefPrefix(std::string_view prefix, const Limits& limits) {
  return prefix.size() <= limits.max_key_bytes && RefKeyShape(prefix, true);
}
bool RefContentType(std::string_view ct, const Limits& limits) {
  if (ct.size() > limits.max_content_type_bytes) return false;
  for (char c : ct) {
    const unsigned b = static_cast<unsigned char>(c);
    if (b < 0x20 || b > 0x7E) return false;
  }
  return true;
}
bool RefMessage(std::string_view m, const Limits& limits) {
  return m.size() <= limits.max_message_bytes && RefUtf8(m);
}

// Checks one verdict against the reference. Errors must name `field` and stay
// bounded: the validator quotes at most a short, escaped excerpt.
void Expect(const absl::Status& status, bool want_ok, std::string_view field,
            std::string_view input) {
  FUZZ_CHECK(status.ok() == want_ok, "field %.*s: validator says %s, reference says %s (%zu bytes)",
             static_cast<int>(field.size()), field.data(), status.ok() ? "ok" : "invalid",
             want_ok ? "ok" : "invalid", input.size());
  if (status.ok()) return;
  FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, "code %d",
             static_cast<int>(status.code()));
  FUZZ_CHECK(std::string(status.message()).find(field) != std::string::npos,
             "message lacks field: %s", std::string(status.message()).c_str());
  FUZZ_CHECK(status.message().size() < 512, "message of %zu bytes", status.message().size());
}

}  // namespace
}  // namespace snapconf::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace snapconf;
  using namespace snapconf::fuzz;
  FuzzInput input(data, size);
  Limits limits;
  // Sometimes tiny limits, so the length checks meet short inputs too.
  if (input.Bool()) {
    limits.max_key_bytes = 1 + input.Below(16);
    limits.max_namespace_bytes = 1 + input.Below(16);
    limits.max_content_type_bytes = input.Below(16);
    limits.max_message_bytes = input.Below(32);
    limits.max_value_bytes = input.Below(32);
  }
  const std::string s = input.Rest();

  FUZZ_CHECK(IsValidUtf8(s) == RefUtf8(s), "IsValidUtf8 disagrees on %zu bytes", s.size());
  Expect(ValidateNamespace(s, limits), RefNamespace(s, limits), "namespace", s);
  Expect(ValidateKey(s, limits), RefKey(s, limits), "key", s);
  Expect(ValidatePrefix(s, limits), RefPrefix(s, limits), "prefix", s);
  Expect(ValidateKey(s, limits, "compares[3].key"), RefKey(s, limits), "compares[3].key", s);
  Expect(ValidateContentType(s, limits), RefContentType(s, limits), "content_type", s);
  Expect(ValidateMessage(s, limits), RefMessage(s, limits), "message", s);
  Expect(ValidateValue(s, limits), s.size() <= limits.max_value_bytes, "value", s);

  if (ValidateKey(s, limits).ok()) {
    FUZZ_CHECK(ValidatePrefix(s, limits).ok(), "an accepted key is not an accepted prefix");
  }
  return 0;
}
