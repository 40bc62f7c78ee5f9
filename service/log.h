// service/log.h
//
// Structured log lines on stderr: one event per line, each line one write(2),
// so concurrent lines never interleave. An event has a name and key=value
// fields; the process-wide format (set once at start, --log-format) renders
// it as
//   text: ts=2026-01-02T03:04:05.678Z level=info event=serving address=127.0.0.1:7070
//         (a value with spaces, quotes, '=' or control characters is quoted and
//         escaped; bytes that are not UTF-8 become \xNN)
//   json: {"ts":"2026-01-02T03:04:05.678Z","level":"info","event":"serving",
//          "address":"127.0.0.1:7070"}  (integers and booleans are JSON
//          numbers and booleans; invalid UTF-8 becomes U+FFFD)
// Fields hold what an operator needs; a token's secret is never a field (its
// public id may be).
//
// Thread safety: LogEvent and LogLine may be called from any thread;
// SetLogFormat before other threads log.
//
//   LogEvent(LogLevel::kInfo, "serving", {{"address", address}, {"revision", revision}});
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace snapconf {

enum class LogFormat { kText, kJson };
enum class LogLevel { kInfo, kWarning, kError };

// "text" or "json"; INVALID_ARGUMENT otherwise.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view name);
void SetLogFormat(LogFormat format);

// One key=value field. Strings are quoted in JSON; integers and booleans are
// not.
class LogField {
 public:
  LogField(absl::string_view key, absl::string_view value) : key_(key), value_(value) {}
  LogField(absl::string_view key, const char* value) : key_(key), value_(value) {}
  LogField(absl::string_view key, const std::string& value) : key_(key), value_(value) {}
  LogField(absl::string_view key, std::string_view value) : key_(key), value_(value) {}
  LogField(absl::string_view key, bool value)
      : key_(key), value_(value ? "true" : "false"), literal_(true) {}
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  LogField(absl::string_view key, T value)
      : key_(key), value_(absl::StrCat(value)), literal_(true) {}

  absl::string_view key() const { return key_; }
  const std::string& value() const { return value_; }
  // A number or boolean (unquoted in JSON).
  bool literal() const { return literal_; }

 private:
  absl::string_view key_;
  std::string value_;
  bool literal_ = false;
};

// Writes one event line.
void LogEvent(LogLevel level, absl::string_view event, absl::Span<const LogField> fields);
inline void LogEvent(LogLevel level, absl::string_view event,
                     std::initializer_list<LogField> fields) {
  LogEvent(level, event, absl::Span<const LogField>(fields.begin(), fields.size()));
}

// A free-text line: the event "message" with the field msg.
void LogLine(absl::string_view message);

// The line LogEvent writes (with its trailing newline), for tests.
std::string FormatLogLine(LogFormat format, absl::Time time, LogLevel level,
                          absl::string_view event, absl::Span<const LogField> fields);

}  // namespace snapconf
