// service/metrics/metrics.cc — the registry and the text exposition.
#include "service/metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace snapconf::metrics {

size_t ThisThreadShard() {
  static std::atomic<size_t> next{0};
  thread_local const size_t shard = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shard;
}

uint64_t Counter::Value() const {
  uint64_t total = 0;
  for (const Cell& c : cells_) total += c.value.load(std::memory_order_relaxed);
  return total;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  shards_.reserve(kShards);
  for (size_t i = 0; i < kShards; ++i)
    shards_.push_back(std::make_unique<Shard>(bounds_.size() + 1));
}

void Histogram::Observe(double value) {
  // The first bound >= value is the bucket (Prometheus buckets are "le").
  const size_t bucket = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  Shard& shard = *shards_[ThisThreadShard()];
  shard.counts[bucket].fetch_add(1, std::memory_order_relaxed);
  shard.sum.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Data Histogram::Collect() const {
  Data data;
  std::vector<uint64_t> per_bucket(bounds_.size() + 1, 0);
  for (const auto& shard : shards_) {
    for (size_t i = 0; i < per_bucket.size(); ++i) {
      per_bucket[i] += shard->counts[i].load(std::memory_order_relaxed);
    }
    data.sum += shard->sum.load(std::memory_order_relaxed);
  }
  uint64_t running = 0;
  for (uint64_t n : per_bucket) {
    running += n;
    data.cumulative.push_back(running);
  }
  data.count = running;
  return data;
}

std::vector<double> LatencyBuckets() {
  std::vector<double> bounds;
  for (double b = 50e-6; b < 15; b *= 2) bounds.push_back(b);
  return bounds;
}

std::vector<double> PowerOfTwoBuckets(double max) {
  std::vector<double> bounds;
  for (double b = 1; b <= max; b *= 2) bounds.push_back(b);
  return bounds;
}

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 9.007199254740992e15) {
    return absl::StrCat(static_cast<int64_t>(value));
  }
  // The shortest text that reads back as the same double.
  char buf[64];
  const std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, r.ptr);
}

namespace {

// {a="x",b="y"} with `extra` appended (the histogram's le), or "" when empty.
std::string LabelText(const Labels& labels, const std::pair<std::string, std::string>* extra) {
  if (labels.empty() && extra == nullptr) return "";
  std::string out = "{";
  bool first = true;
  auto add = [&](const std::string& name, const std::string& value) {
    if (!first) out += ",";
    first = false;
    absl::StrAppend(&out, name, "=\"", EscapeLabelValue(value), "\"");
  };
  for (const auto& [name, value] : labels) add(name, value);
  if (extra != nullptr) add(extra->first, extra->second);
  out += "}";
  return out;
}

}  // namespace

Registry::Family* Registry::FamilyLocked(const std::string& name, const std::string& help,
                                         Type type) {
  for (auto& f : families_) {
    if (f->name == name) return f.get();
  }
  auto family = std::make_unique<Family>();
  family->name = name;
  family->help = help;
  family->type = type;
  families_.push_back(std::move(family));
  return families_.back().get();
}

Counter* Registry::AddCounter(const std::string& name, const std::string& help, Labels labels,
                              bool omit_when_zero) {
  MutexLock lock(&mu_);
  Family* f = FamilyLocked(name, help, Type::kCounter);
  Series s;
  s.labels = std::move(labels);
  s.omit_when_zero = omit_when_zero;
  s.counter = std::make_unique<Counter>();
  Counter* out = s.counter.get();
  f->series.push_back(std::move(s));
  return out;
}

Histogram* Registry::AddHistogram(const std::string& name, const std::string& help, Labels labels,
                                  std::vector<double> bounds) {
  MutexLock lock(&mu_);
  Family* f = FamilyLocked(name, help, Type::kHistogram);
  Series s;
  s.labels = std::move(labels);
  s.histogram = std::make_unique<Histogram>(std::move(bounds));
  Histogram* out = s.histogram.get();
  f->series.push_back(std::move(s));
  return out;
}

void Registry::AddGauge(const std::string& name, const std::string& help, Labels labels,
                        std::function<double()> read) {
  MutexLock lock(&mu_);
  Family* f = FamilyLocked(name, help, Type::kGauge);
  Series s;
  s.labels = std::move(labels);
  s.gauge = std::move(read);
  f->series.push_back(std::move(s));
}

void Registry::AddCounterFunction(const std::string& name, const std::string& help, Labels labels,
                                  std::function<double()> read) {
  MutexLock lock(&mu_);
  Family* f = FamilyLocked(name, help, Type::kCounter);
  Series s;
  s.labels = std::move(labels);
  s.gauge = std::move(read);
  f->series.push_back(std::move(s));
}

void Registry::AddCollector(const std::string& name, const std::string& help,
                            std::function<void(std::vector<Sample>*)> collect) {
  MutexLock lock(&mu_);
  FamilyLocked(name, help, Type::kGauge)->collect = std::move(collect);
}

std::string Registry::Render() const {
  MutexLock lock(&mu_);
  std::string out;
  for (const auto& f : families_) {
    const char* type = f->type == Type::kCounter     ? "counter"
                       : f->type == Type::kHistogram ? "histogram"
                                                     : "gauge";
    absl::StrAppend(&out, "# HELP ", f->name, " ", EscapeHelp(f->help), "\n", "# TYPE ", f->name,
                    " ", type, "\n");
    for (const Series& s : f->series) {
      if (s.counter) {
        const uint64_t value = s.counter->Value();
        if (value == 0 && s.omit_when_zero) continue;
        absl::StrAppend(&out, f->name, LabelText(s.labels, nullptr), " ", value, "\n");
      } else if (s.gauge) {
        absl::StrAppend(&out, f->name, LabelText(s.labels, nullptr), " ", FormatValue(s.gauge()),
                        "\n");
      } else if (s.histogram) {
        const Histogram::Data data = s.histogram->Collect();
        const std::vector<double>& bounds = s.histogram->bounds();
        for (size_t i = 0; i < data.cumulative.size(); ++i) {
          const std::pair<std::string, std::string> le{
              "le", i < bounds.size() ? FormatValue(bounds[i]) : "+Inf"};
          absl::StrAppend(&out, f->name, "_bucket", LabelText(s.labels, &le), " ",
                          data.cumulative[i], "\n");
        }
        absl::StrAppend(&out, f->name, "_sum", LabelText(s.labels, nullptr), " ",
                        FormatValue(data.sum), "\n");
        absl::StrAppend(&out, f->name, "_count", LabelText(s.labels, nullptr), " ", data.count,
                        "\n");
      }
    }
    if (f->collect) {
      std::vector<Sample> samples;
      f->collect(&samples);
      for (const Sample& sample : samples) {
        absl::StrAppend(&out, f->name, LabelText(sample.labels, nullptr), " ",
                        FormatValue(sample.value), "\n");
      }
    }
  }
  return out;
}

}  // namespace snapconf::metrics
