// Unit tests of the metrics registry, its text exposition and the structured
// log formats (escaping above all).
#include "service/metrics/metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "service/log.h"
#include "tests/metrics/prometheus_text.h"
#include "tests/testing/server_process.h"

namespace snapconf {
namespace {

using ::snapconf::metrics::Counter;
using ::snapconf::metrics::Histogram;
using ::snapconf::metrics::Registry;
using ::testing::HasSubstr;

TEST(CounterTest, SumsIncrementsFromManyThreads) {
  Counter counter;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) counter.Increment();
    });
  }
  for (auto& t : threads) t.join();
  counter.Increment(5);
  EXPECT_EQ(counter.Value(), 40005u);
}

// Under ThreadSanitizer (label concurrency): increments and observations race
// scrapes, and every scrape sees monotonic, consistent totals.
TEST(RegistryConcurrentTest, ScrapesWhileThreadsCountAndObserve) {
  Registry r;
  Counter* c = r.AddCounter("t_total", "T.");
  Histogram* h = r.AddHistogram("t_seconds", "S.", {}, {0.5, 1});
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        c->Increment();
        h->Observe(i % 2 == 0 ? 0.25 : 2.0);
      }
    });
  }
  double last = 0;
  for (int scrape = 0; scrape < 50; ++scrape) {
    absl::StatusOr<testing::PromText> m = testing::ParsePrometheusText(r.Render());
    ASSERT_TRUE(m.ok()) << m.status();
    const double now = m->Value("t_total", {}).value_or(-1);
    EXPECT_GE(now, last);
    last = now;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->Value(), 2u * kPerThread);
  EXPECT_EQ(h->Collect().count, 2u * kPerThread);
  EXPECT_EQ(h->Collect().cumulative[0], static_cast<uint64_t>(kPerThread));
}

TEST(HistogramTest, BucketsAreCumulativeWithUpperBoundsInclusive) {
  Histogram h({1, 2});
  for (double v : {0.5, 1.0, 2.0, 3.0}) h.Observe(v);
  const Histogram::Data d = h.Collect();
  EXPECT_THAT(d.cumulative, ::testing::ElementsAre(2u, 3u, 4u));
  EXPECT_EQ(d.count, 4u);
  EXPECT_DOUBLE_EQ(d.sum, 6.5);
}

TEST(FormatValueTest, IntegersInfinitiesAndFractions) {
  EXPECT_EQ(metrics::FormatValue(3), "3");
  EXPECT_EQ(metrics::FormatValue(-2), "-2");
  EXPECT_EQ(metrics::FormatValue(0.5), "0.5");
  EXPECT_EQ(metrics::FormatValue(5e-05), "5e-05");
  EXPECT_EQ(metrics::FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(metrics::FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(metrics::FormatValue(std::nan("")), "NaN");
}

TEST(EscapeTest, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(metrics::EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(metrics::EscapeHelp("line\\one\nline \"two\""), "line\\\\one\\nline \"two\"");
}

TEST(RegistryTest, RendersTheExactTextFormat) {
  Registry r;
  Counter* c = r.AddCounter("t_requests_total", "Requests.\nSecond line.", {{"method", "a\"b"}});
  r.AddCounter("t_requests_total", "ignored", {{"method", "quiet"}}, /*omit_when_zero=*/true);
  c->Increment(2);
  Histogram* h = r.AddHistogram("t_latency_seconds", "Latency.", {{"m", "x"}}, {0.5, 1});
  h->Observe(0.25);
  h->Observe(4);
  r.AddGauge("t_head", "Head.", {}, [] { return 42.0; });
  r.AddCollector("t_ns_keys", "Keys.", [](std::vector<metrics::Sample>* out) {
    out->push_back({{{"namespace", "p\\q"}}, 7});
  });
  EXPECT_EQ(r.Render(),
            "# HELP t_requests_total Requests.\\nSecond line.\n"
            "# TYPE t_requests_total counter\n"
            "t_requests_total{method=\"a\\\"b\"} 2\n"
            "# HELP t_latency_seconds Latency.\n"
            "# TYPE t_latency_seconds histogram\n"
            "t_latency_seconds_bucket{m=\"x\",le=\"0.5\"} 1\n"
            "t_latency_seconds_bucket{m=\"x\",le=\"1\"} 1\n"
            "t_latency_seconds_bucket{m=\"x\",le=\"+Inf\"} 2\n"
            "t_latency_seconds_sum{m=\"x\"} 4.25\n"
            "t_latency_seconds_count{m=\"x\"} 2\n"
            "# HELP t_head Head.\n"
            "# TYPE t_head gauge\n"
            "t_head 42\n"
            "# HELP t_ns_keys Keys.\n"
            "# TYPE t_ns_keys gauge\n"
            "t_ns_keys{namespace=\"p\\\\q\"} 7\n");
}

TEST(RegistryTest, OutputParsesWithTheTestParserAndPromtool) {
  Registry r;
  r.AddCounter("t_calls_total", "Calls.", {{"method", "/a.B/C"}, {"code", "OK"}})->Increment();
  r.AddHistogram("t_wait_seconds", "Wait.", {}, metrics::LatencyBuckets())->Observe(0.001);
  r.AddGauge("t_up", "Up.", {{"v", "line\nbreak \"quoted\" back\\slash"}}, [] { return 1.0; });
  const std::string text = r.Render();

  absl::StatusOr<testing::PromText> parsed = testing::ParsePrometheusText(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  EXPECT_EQ(parsed->Value("t_calls_total", {{"method", "/a.B/C"}, {"code", "OK"}}), 1);
  EXPECT_EQ(parsed->Value("t_up", {{"v", "line\nbreak \"quoted\" back\\slash"}}), 1);
  EXPECT_EQ(parsed->Value("t_wait_seconds_count", {}), 1);
  EXPECT_EQ(parsed->types.at("t_wait_seconds"), "histogram");

  // promtool (Debian's prometheus package) is an independent check of the
  // format and of naming conventions; scripts/deps.sh installs it.
  testing::CommandResult check =
      testing::RunCommand({"/usr/bin/promtool", "check", "metrics"}, {.stdin_text = text});
  EXPECT_EQ(check.exit_code, 0) << check.stdout_text << check.stderr_text << text;
}

TEST(PrometheusParserTest, RejectsMalformedText) {
  for (const char* bad : {
           "x 1\n",                             // no TYPE
           "# TYPE x gauge\nx{a=\"b} 1\n",      // unterminated label value
           "# TYPE x gauge\nx{a=\"\\q\"} 1\n",  // bad escape
           "# TYPE x gauge\nx one\n",           // bad value
           "# TYPE x histogram\nx_bucket{le=\"1\"} 1\nx_sum 1\nx_count 1\n",  // no +Inf
           "# TYPE x gauge\nx 1\nx 2\n",                                      // duplicate series
       }) {
    EXPECT_FALSE(testing::ParsePrometheusText(bad).ok()) << bad;
  }
}

const absl::Time kTime = absl::FromUnixMillis(1767323045678);  // 2026-01-02T03:04:05.678Z

TEST(LogFormatTest, TextQuotesOnlyWhatNeedsIt) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kTime, LogLevel::kInfo, "serving",
                          {{"address", "127.0.0.1:7070"}, {"revision", int64_t{42}}}),
            "ts=2026-01-02T03:04:05.678Z level=info event=serving address=127.0.0.1:7070 "
            "revision=42\n");
  EXPECT_EQ(FormatLogLine(LogFormat::kText, kTime, LogLevel::kWarning, "e",
                          {{"msg", "two words"},
                           {"q", "say \"hi\""},
                           {"eq", "a=b"},
                           {"nl", "a\nb\tc\\"},
                           {"ctl", std::string("\x01", 1)},
                           {"bad", "\xff"},
                           {"utf8", "caf\xc3\xa9"},
                           {"empty", ""}}),
            "ts=2026-01-02T03:04:05.678Z level=warning event=e msg=\"two words\" "
            "q=\"say \\\"hi\\\"\" eq=\"a=b\" nl=\"a\\nb\\tc\\\\\" ctl=\"\\x01\" bad=\"\\xff\" "
            "utf8=\"caf\xc3\xa9\" empty=\"\"\n");
}

TEST(LogFormatTest, JsonIsOneValidObjectPerLine) {
  const std::string line = FormatLogLine(LogFormat::kJson, kTime, LogLevel::kError, "lost \"it\"",
                                         {{"error", "a\nb\t\"c\"\\"},
                                          {"ctl", std::string("\x01\x1f", 2)},
                                          {"bad", "x\xff\xc3"},
                                          {"utf8", "caf\xc3\xa9"},
                                          {"n", -7},
                                          {"ok", true}});
  ASSERT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line";
  EXPECT_EQ(line,
            "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"error\",\"event\":\"lost "
            "\\\"it\\\"\",\"error\":\"a\\nb\\t\\\"c\\\"\\\\\",\"ctl\":\"\\u0001\\u001f\","
            "\"bad\":\"x\\ufffd\\ufffd\",\"utf8\":\"caf\xc3\xa9\",\"n\":-7,\"ok\":true}\n");
  const nlohmann::json parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["event"], "lost \"it\"");
  EXPECT_EQ(parsed["error"], "a\nb\t\"c\"\\");
  EXPECT_EQ(parsed["n"], -7);
  EXPECT_EQ(parsed["ok"], true);
  EXPECT_EQ(parsed["bad"], "x\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(LogFormatTest, ParsesTheFlag) {
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  absl::StatusOr<LogFormat> bad = ParseLogFormat("xml");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("text or json"));
}

}  // namespace
}  // namespace snapconf
