// service/log.cc — rendering and writing structured log lines.
#include "service/log.h"

#include <unistd.h>

#include <atomic>

#include "absl/time/clock.h"

namespace snapconf {
namespace {

std::atomic<LogFormat> g_format{LogFormat::kText};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are
// not one (overlong forms, surrogates and values past U+10FFFF included).
size_t Utf8SequenceLength(absl::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t n = 0;
  uint32_t cp = 0;
  if (b0 < 0x80) return 1;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

void AppendHexByte(std::string* out, const char* prefix, unsigned char b) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->append(prefix);
  out->push_back(kHex[b >> 4]);
  out->push_back(kHex[b & 0xF]);
}

// The two formats quote alike and differ only in how they spell a byte that
// must not appear as is: JSON has \u00NN for control bytes and U+FFFD for
// bytes that are not UTF-8; the text format keeps the byte as \xNN.
struct Spelling {
  const char* control_prefix;
  const char* invalid_utf8;  // null: the byte as control_prefix + hex
};

void AppendQuoted(std::string* out, absl::string_view s, const Spelling& spelling) {
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = Utf8SequenceLength(s, i);
      if (n > 0) {
        out->append(s.data() + i, n);
        i += n;
      } else if (spelling.invalid_utf8 != nullptr) {
        out->append(spelling.invalid_utf8);
        ++i;
      } else {
        AppendHexByte(out, spelling.control_prefix, c);
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          AppendHexByte(out, spelling.control_prefix, c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

void AppendJsonString(std::string* out, absl::string_view s) {
  AppendQuoted(out, s, {.control_prefix = "\\u00", .invalid_utf8 = "\\ufffd"});
}

// A text value: bare when it is plain, else quoted with \" \\ \n \r \t and
// \xNN for other control bytes and bytes that are not UTF-8.
void AppendTextValue(std::string* out, absl::string_view s) {
  bool plain = !s.empty();
  for (size_t i = 0; i < s.size() && plain; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c <= 0x20 || c == '"' || c == '=' || c == '\\' || c >= 0x7f) plain = false;
  }
  if (plain) {
    out->append(s.data(), s.size());
    return;
  }
  AppendQuoted(out, s, {.control_prefix = "\\x", .invalid_utf8 = nullptr});
}

void WriteLine(const std::string& line) {
  size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("--log-format=", name, " is not supported (text or json)"));
}

void SetLogFormat(LogFormat format) { g_format.store(format, std::memory_order_relaxed); }

std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          absl::string_view event, absl::Span<const LogField> fields) {
  const std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone());
  std::string line;
  if (format == LogFormat::kJson) {
    absl::StrAppend(&line, "{\"ts\":\"", ts, "\",\"level\":\"", LevelName(level), "\",\"event\":");
    AppendJsonString(&line, event);
    for (const LogField& f : fields) {
      line.push_back(',');
      AppendJsonString(&line, f.key());
      line.push_back(':');
      if (f.literal()) {
        line.append(f.value());
      } else {
        AppendJsonString(&line, f.value());
      }
    }
    line.append("}\n");
    return line;
  }
  absl::StrAppend(&line, "ts=", ts, " level=", LevelName(level), " event=");
  AppendTextValue(&line, event);
  for (const LogField& f : fields) {
    line.push_back(' ');
    line.append(f.key().data(), f.key().size());
    line.push_back('=');
    AppendTextValue(&line, f.value());
  }
  line.push_back('\n');
  return line;
}

void LogEvent(LogLevel level, absl::string_view event, absl::Span<const LogField> fields) {
  // One write(2) per line keeps concurrent lines whole.
  WriteLine(
      FormatLogLine(g_format.load(std::memory_order_relaxed), absl::Now(), level, event, fields));
}

void LogLine(absl::string_view message) {
  LogEvent(LogLevel::kInfo, "message", {{"msg", message}});
}

}  // namespace snapconf
