// tests/metrics/prometheus_text.h
//
// A strict parser of the Prometheus text exposition format 0.0.4, for tests:
// it checks what a scraper relies on (names, label syntax and escapes, values,
// TYPE before samples, one TYPE per family, no duplicate series, histograms
// with cumulative buckets, a +Inf bucket equal to _count) and returns the
// samples so tests can read values. Independent of the code that renders.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace snapconf::testing {

using PromLabels = std::map<std::string, std::string>;

struct PromText {
  std::map<std::string, std::string> types;  // family -> counter/gauge/histogram/...
  std::map<std::string, std::string> help;
  // sample name -> labels -> value
  std::map<std::string, std::map<PromLabels, double>> samples;

  std::optional<double> Value(const std::string& name, const PromLabels& labels) const {
    auto it = samples.find(name);
    if (it == samples.end()) return std::nullopt;
    auto s = it->second.find(labels);
    if (s == it->second.end()) return std::nullopt;
    return s->second;
  }
  // Sum over every series of `name` whose labels include `match`.
  double Sum(const std::string& name, const PromLabels& match = {}) const {
    double total = 0;
    auto it = samples.find(name);
    if (it == samples.end()) return 0;
    for (const auto& [labels, value] : it->second) {
      bool ok = true;
      for (const auto& [k, v] : match) {
        auto l = labels.find(k);
        if (l == labels.end() || l->second != v) ok = false;
      }
      if (ok) total += value;
    }
    return total;
  }
};

namespace prom_internal {

inline bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
inline bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

inline bool ValidName(absl::string_view s, bool label) {
  if (s.empty() || !IsNameStart(s[0]) || (label && s[0] == ':')) return false;
  for (char c : s) {
    if (!IsNameChar(c) || (label && c == ':')) return false;
  }
  return true;
}

inline std::optional<double> ParseValue(absl::string_view s) {
  if (s == "+Inf" || s == "Inf") return HUGE_VAL;
  if (s == "-Inf") return -HUGE_VAL;
  if (s == "NaN") return std::nan("");
  double d = 0;
  if (s.empty() || !absl::SimpleAtod(s, &d) || std::isinf(d) || std::isnan(d)) return std::nullopt;
  return d;
}

}  // namespace prom_internal

inline absl::StatusOr<PromText> ParsePrometheusText(absl::string_view text) {
  using namespace prom_internal;
  PromText out;
  if (!text.empty() && text.back() != '\n') {
    return absl::InvalidArgumentError("the last line does not end with a newline");
  }
  std::set<std::string> families_with_samples;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    auto fail = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", why, ": ", line));
    };
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      if (parts.size() >= 3 && (parts[1] == "HELP" || parts[1] == "TYPE")) {
        const std::string name(parts[2]);
        if (!ValidName(name, false)) return fail("bad metric name");
        if (parts[1] == "TYPE") {
          const std::string type = parts.size() == 4 ? std::string(parts[3]) : "";
          static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                       "untyped"};
          if (!kTypes.contains(type)) return fail("unknown type");
          if (out.types.contains(name)) return fail("second TYPE for a family");
          if (families_with_samples.contains(name)) return fail("TYPE after samples");
          out.types[name] = type;
        } else {
          if (out.help.contains(name)) return fail("second HELP for a family");
          const absl::string_view h = parts.size() == 4 ? parts[3] : "";
          std::string unescaped;
          for (size_t i = 0; i < h.size(); ++i) {
            if (h[i] != '\\') {
              unescaped += h[i];
              continue;
            }
            if (++i >= h.size()) return fail("dangling backslash in HELP");
            if (h[i] == '\\') {
              unescaped += '\\';
            } else if (h[i] == 'n') {
              unescaped += '\n';
            } else {
              return fail("bad escape in HELP");
            }
          }
          out.help[name] = unescaped;
        }
      }
      continue;
    }
    // name{labels} value [timestamp]
    size_t i = 0;
    while (i < line.size() && IsNameChar(line[i])) ++i;
    const std::string name(line.substr(0, i));
    if (!ValidName(name, false)) return fail("bad metric name");
    PromLabels labels;
    if (i < line.size() && line[i] == '{') {
      ++i;
      for (;;) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        const size_t start = i;
        while (i < line.size() && IsNameChar(line[i])) ++i;
        const std::string label(line.substr(start, i - start));
        if (!ValidName(label, true)) return fail("bad label name");
        if (i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
          return fail("expected =\" after a label name");
        }
        i += 2;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          const char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c != '\\') {
            value += c;
            continue;
          }
          if (i >= line.size()) return fail("dangling backslash");
          const char e = line[i++];
          if (e == '\\') {
            value += '\\';
          } else if (e == '"') {
            value += '"';
          } else if (e == 'n') {
            value += '\n';
          } else {
            return fail("bad escape in a label value");
          }
        }
        if (!closed) return fail("unterminated label value");
        if (!labels.emplace(label, value).second) return fail("repeated label");
        if (i < line.size() && line[i] == ',')
          ++i;
        else if (i >= line.size() || line[i] != '}')
          return fail("expected , or }");
      }
    }
    if (i >= line.size() || line[i] != ' ') return fail("expected a space before the value");
    std::vector<absl::string_view> rest = absl::StrSplit(line.substr(i + 1), ' ');
    if (rest.empty() || rest.size() > 2) return fail("expected a value and an optional timestamp");
    std::optional<double> value = ParseValue(rest[0]);
    if (!value) return fail("bad value");
    int64_t ts = 0;
    if (rest.size() == 2 && !absl::SimpleAtoi(rest[1], &ts)) return fail("bad timestamp");

    // The family the sample belongs to.
    std::string family = name;
    if (!out.types.contains(family)) {
      for (absl::string_view suffix : {"_bucket", "_sum", "_count"}) {
        if (absl::EndsWith(name, suffix)) {
          const std::string base = name.substr(0, name.size() - suffix.size());
          if (out.types.contains(base) && (out.types[base] == "histogram" ||
                                           (out.types[base] == "summary" && suffix != "_bucket"))) {
            family = base;
          }
        }
      }
    }
    if (!out.types.contains(family)) return fail("sample without a TYPE line before it");
    if (out.types[family] == "histogram" && family == name) {
      return fail("histogram sample without _bucket/_sum/_count");
    }
    if (absl::EndsWith(name, "_bucket") && family != name && !labels.contains("le")) {
      return fail("bucket without le");
    }
    if (out.types[family] == "counter" && *value < 0) return fail("negative counter");
    families_with_samples.insert(family);
    if (!out.samples[name].emplace(labels, *value).second) return fail("duplicate series");
  }
  // Histograms: cumulative buckets ending in +Inf == _count.
  for (const auto& [family, type] : out.types) {
    if (type != "histogram") continue;
    std::map<PromLabels, std::vector<std::pair<double, double>>> series;
    for (const auto& [labels, value] : out.samples[family + "_bucket"]) {
      PromLabels rest = labels;
      const std::optional<double> le = ParseValue(rest["le"]);
      if (!le) return absl::InvalidArgumentError(absl::StrCat(family, ": bad le"));
      rest.erase("le");
      series[rest].push_back({*le, value});
    }
    for (auto& [labels, buckets] : series) {
      std::sort(buckets.begin(), buckets.end());
      for (size_t i = 1; i < buckets.size(); ++i) {
        if (buckets[i].second < buckets[i - 1].second) {
          return absl::InvalidArgumentError(absl::StrCat(family, ": buckets not cumulative"));
        }
      }
      if (buckets.empty() || !std::isinf(buckets.back().first)) {
        return absl::InvalidArgumentError(absl::StrCat(family, ": no +Inf bucket"));
      }
      const std::optional<double> count = out.Value(family + "_count", labels);
      if (!count || *count != buckets.back().second) {
        return absl::InvalidArgumentError(absl::StrCat(family, ": +Inf bucket != _count"));
      }
      if (!out.Value(family + "_sum", labels)) {
        return absl::InvalidArgumentError(absl::StrCat(family, ": no _sum"));
      }
    }
  }
  return out;
}

}  // namespace snapconf::testing
