// tests/cli/format_test.cc
//
// Golden tests of snapconfctl's output: the exact text for each command's
// result in table, json and yaml.
#include "client/cli/format.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace snapconf::cli {
namespace {

using client::Change;
using client::Entry;
using ::snapconf::testing::StatusIs;

Entry MakeEntry(std::string ns, std::string key, std::string value, std::string content_type,
                std::int64_t create, std::int64_t mod, std::int64_t version) {
  return Entry{std::move(ns), std::move(key), std::move(value), std::move(content_type), create,
               mod,           version};
}

// An entry as it appears inside a Change (names one level up).
Entry Bare(std::string value, std::int64_t create, std::int64_t mod, std::int64_t version) {
  return MakeEntry("", "", std::move(value), "", create, mod, version);
}

client::GetResult SampleGet() {
  return {MakeEntry("payments/prod", "db.pool.max", "20", "text/plain", 5, 9, 3), 12};
}

client::ListPage SampleList() {
  client::ListPage page;
  page.entries = {
      MakeEntry("payments/prod", "db.pool.max", "20", "text/plain", 5, 9, 3),
      MakeEntry("payments/prod", "db.url", "postgres://db/pay", "", 6, 6, 1),
      MakeEntry("payments/prod", "tls.key", std::string("\x00\xff\x10", 3), "", 7, 7, 1)};
  page.revision = 12;
  return page;
}

client::ChangeList SampleChanges() {
  client::ChangeList list;
  list.revision = 13;
  list.changes = {Change{"payments/prod", "a", std::nullopt, Bare("1", 13, 13, 1)},
                  Change{"payments/prod", "b", Bare("old", 4, 4, 1), Bare("new", 4, 13, 2)},
                  Change{"shared/flags", "c", Bare("x", 2, 2, 1), std::nullopt}};
  return list;
}

TEST(ParseOutputFormatTest, KnowsThreeFormats) {
  EXPECT_EQ(*ParseOutputFormat("table"), OutputFormat::kTable);
  EXPECT_EQ(*ParseOutputFormat("json"), OutputFormat::kJson);
  EXPECT_EQ(*ParseOutputFormat("yaml"), OutputFormat::kYaml);
  EXPECT_THAT(ParseOutputFormat("xml"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(DisplayBytesTest, ShowsPrintableUtf8AsIs) {
  EXPECT_EQ(DisplayBytes("plain text"), "plain text");
  EXPECT_EQ(DisplayBytes("grüße €"), "grüße €");
  EXPECT_EQ(DisplayBytes("C:\\dir"), "C:\\dir");
}

TEST(DisplayBytesTest, EscapesControlCharactersAndInvalidBytes) {
  EXPECT_EQ(DisplayBytes("a\nb\tc"), "a\\nb\\tc");
  EXPECT_EQ(DisplayBytes("a\\b\n"), "a\\\\b\\n");  // backslash doubled once escaping
  EXPECT_EQ(DisplayBytes(std::string("\x00\xff\x10", 3)), "\\x00\\xff\\x10");
  EXPECT_EQ(DisplayBytes("ü\xc3"), "ü\\xc3");                  // truncated sequence
  EXPECT_EQ(DisplayBytes("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(DisplayBytes("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
  EXPECT_EQ(DisplayBytes("\xc2\x85"), "\\xc2\\x85");           // C1 control
}

TEST(DisplayBytesTest, CutsLongValuesByCharacter) {
  EXPECT_EQ(DisplayBytesCut("abcdef", 6), "abcdef");
  EXPECT_EQ(DisplayBytesCut("abcdefg", 6), "abcde…");
  EXPECT_EQ(DisplayBytesCut("ääääääää", 4), "äää…");
}

TEST(IsValidUtf8Test, Basics) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("a\n€😀"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}

TEST(AlignColumnsTest, PadsByCharactersAndTrimsTrailingSpace) {
  EXPECT_EQ(AlignColumns({{"A", "BB", ""}, {"äää", "c", "d"}}),
            "A    BB\n"
            "äää  c   d\n");
}

TEST(FormatGetTest, Table) {
  EXPECT_EQ(FormatGet(SampleGet(), OutputFormat::kTable), R"(namespace         payments/prod
key               db.pool.max
value             20
content_type      text/plain
version           3
create_revision   5
mod_revision      9
read_at_revision  12
)");
}

TEST(FormatGetTest, Json) {
  EXPECT_EQ(FormatGet(SampleGet(), OutputFormat::kJson), R"({
  "revision": 12,
  "entry": {
    "namespace": "payments/prod",
    "key": "db.pool.max",
    "value": "20",
    "content_type": "text/plain",
    "create_revision": 5,
    "mod_revision": 9,
    "version": 3
  }
}
)");
}

TEST(FormatGetTest, Yaml) {
  EXPECT_EQ(FormatGet(SampleGet(), OutputFormat::kYaml), R"(revision: 12
entry:
  namespace: payments/prod
  key: db.pool.max
  value: "20"
  content_type: text/plain
  create_revision: 5
  mod_revision: 9
  version: 3
)");
}

TEST(FormatGetTest, BinaryValueIsBase64InJsonAndYaml) {
  client::GetResult r{MakeEntry("ns", "k", std::string("\x00\xff", 2), "", 1, 1, 1), 1};
  const std::string json = FormatGet(r, OutputFormat::kJson);
  EXPECT_NE(json.find(R"("value": "AP8=",
    "value_encoding": "base64",)"),
            std::string::npos)
      << json;
  const std::string yaml = FormatGet(r, OutputFormat::kYaml);
  EXPECT_NE(yaml.find("  value: \"AP8=\"\n  value_encoding: base64\n"), std::string::npos) << yaml;
  EXPECT_NE(FormatGet(r, OutputFormat::kTable).find("value             \\x00\\xff\n"),
            std::string::npos);
}

TEST(FormatGetTest, TextWithNewlinesStaysTextInJsonAndIsQuotedInYaml) {
  client::GetResult r{MakeEntry("ns", "k", "a: 1\nb: true\n", "text/yaml", 1, 1, 1), 1};
  EXPECT_NE(FormatGet(r, OutputFormat::kJson).find(R"("value": "a: 1\nb: true\n",)"),
            std::string::npos);
  EXPECT_NE(FormatGet(r, OutputFormat::kYaml).find(R"(  value: "a: 1\nb: true\n")"),
            std::string::npos)
      << FormatGet(r, OutputFormat::kYaml);
}

TEST(FormatListTest, Table) {
  EXPECT_EQ(FormatList(SampleList(), false, OutputFormat::kTable),
            R"(KEY          VALUE              CONTENT_TYPE  VERSION  MOD_REVISION
db.pool.max  20                 text/plain    3        9
db.url       postgres://db/pay  -             1        6
tls.key      \x00\xff\x10       -             1        7
3 entries at revision 12
)");
}

TEST(FormatListTest, TableKeysOnlyAndTruncated) {
  client::ListPage page = SampleList();
  page.entries.resize(1);
  page.next_page_token = "tok";
  EXPECT_EQ(FormatList(page, true, OutputFormat::kTable),
            R"(KEY          CONTENT_TYPE  VERSION  MOD_REVISION
db.pool.max  text/plain    3        9
1 entry at revision 12 (limit reached; more entries exist)
)");
}

TEST(FormatListTest, TableEmpty) {
  client::ListPage page;
  page.revision = 4;
  EXPECT_EQ(FormatList(page, false, OutputFormat::kTable), "0 entries at revision 4\n");
}

TEST(FormatListTest, TableCutsLongValues) {
  client::ListPage page;
  page.revision = 1;
  page.entries = {MakeEntry("ns", "k", std::string(100, 'x'), "", 1, 1, 1)};
  EXPECT_EQ(FormatList(page, false, OutputFormat::kTable),
            "KEY  VALUE                                     CONTENT_TYPE  VERSION  MOD_REVISION\n"
            "k    " +
                std::string(39, 'x') +
                "…  -             1        1\n"
                "1 entry at revision 1\n");
}

TEST(FormatListTest, Json) {
  EXPECT_EQ(FormatList(SampleList(), false, OutputFormat::kJson), R"({
  "revision": 12,
  "entries": [
    {
      "namespace": "payments/prod",
      "key": "db.pool.max",
      "value": "20",
      "content_type": "text/plain",
      "create_revision": 5,
      "mod_revision": 9,
      "version": 3
    },
    {
      "namespace": "payments/prod",
      "key": "db.url",
      "value": "postgres://db/pay",
      "content_type": "",
      "create_revision": 6,
      "mod_revision": 6,
      "version": 1
    },
    {
      "namespace": "payments/prod",
      "key": "tls.key",
      "value": "AP8Q",
      "value_encoding": "base64",
      "content_type": "",
      "create_revision": 7,
      "mod_revision": 7,
      "version": 1
    }
  ],
  "truncated": false
}
)");
}

TEST(FormatListTest, YamlKeysOnly) {
  client::ListPage page = SampleList();
  page.entries.resize(2);
  EXPECT_EQ(FormatList(page, true, OutputFormat::kYaml), R"(revision: 12
entries:
  - namespace: payments/prod
    key: db.pool.max
    content_type: text/plain
    create_revision: 5
    mod_revision: 9
    version: 3
  - namespace: payments/prod
    key: db.url
    content_type: ""
    create_revision: 6
    mod_revision: 6
    version: 1
truncated: false
)");
}

TEST(FormatListTest, YamlEmpty) {
  client::ListPage page;
  page.revision = 4;
  EXPECT_EQ(FormatList(page, false, OutputFormat::kYaml), R"(revision: 4
entries: []
truncated: false
)");
}

TEST(FormatNamespacesTest, AllFormats) {
  client::NamespaceList list{{{"payments/prod", 2}, {"shared/flags", 10}}, 7};
  EXPECT_EQ(FormatNamespaces(list, OutputFormat::kTable), R"(NAMESPACE      KEYS
payments/prod  2
shared/flags   10
2 namespaces at revision 7
)");
  EXPECT_EQ(FormatNamespaces(list, OutputFormat::kJson), R"({
  "revision": 7,
  "namespaces": [
    {
      "namespace": "payments/prod",
      "key_count": 2
    },
    {
      "namespace": "shared/flags",
      "key_count": 10
    }
  ]
}
)");
  EXPECT_EQ(FormatNamespaces(list, OutputFormat::kYaml), R"(revision: 7
namespaces:
  - namespace: payments/prod
    key_count: 2
  - namespace: shared/flags
    key_count: 10
)");
}

TEST(FormatWriteTest, PutAndDeleteTables) {
  client::PutResult put{MakeEntry("payments/prod", "db.pool.max", "40", "", 5, 13, 4), 13};
  EXPECT_EQ(FormatPut(put, OutputFormat::kTable),
            "put payments/prod db.pool.max: revision 13, version 4\n");
  client::DeleteResult del{MakeEntry("payments/prod", "db.pool.max", "40", "", 5, 13, 4), 14};
  EXPECT_EQ(FormatDelete(del, OutputFormat::kTable),
            "deleted payments/prod db.pool.max: revision 14 (was version 4)\n");
  EXPECT_EQ(FormatDelete(del, OutputFormat::kYaml), R"(revision: 14
deleted:
  namespace: payments/prod
  key: db.pool.max
  value: "40"
  content_type: ""
  create_revision: 5
  mod_revision: 13
  version: 4
)");
}

TEST(FormatChangesTest, Table) {
  EXPECT_EQ(FormatChanges(SampleChanges(), "committed revision 13", OutputFormat::kTable),
            R"(committed revision 13
OP      NAMESPACE      KEY  BEFORE  AFTER
create  payments/prod  a    -       1
update  payments/prod  b    old     new
delete  shared/flags   c    x       -
)");
  EXPECT_EQ(FormatChanges(client::ChangeList{{}, 9}, "diff", OutputFormat::kTable),
            "diff\nno changes\n");
}

TEST(FormatChangesTest, Json) {
  client::ChangeList list = SampleChanges();
  list.changes.resize(2);
  EXPECT_EQ(FormatChanges(list, "ignored", OutputFormat::kJson), R"({
  "revision": 13,
  "changes": [
    {
      "namespace": "payments/prod",
      "key": "a",
      "before": null,
      "after": {
        "value": "1",
        "content_type": "",
        "create_revision": 13,
        "mod_revision": 13,
        "version": 1
      }
    },
    {
      "namespace": "payments/prod",
      "key": "b",
      "before": {
        "value": "old",
        "content_type": "",
        "create_revision": 4,
        "mod_revision": 4,
        "version": 1
      },
      "after": {
        "value": "new",
        "content_type": "",
        "create_revision": 4,
        "mod_revision": 13,
        "version": 2
      }
    }
  ]
}
)");
}

TEST(FormatChangesTest, Yaml) {
  client::ChangeList list = SampleChanges();
  list.changes.erase(list.changes.begin(), list.changes.begin() + 2);
  EXPECT_EQ(FormatChanges(list, "ignored", OutputFormat::kYaml), R"(revision: 13
changes:
  - namespace: shared/flags
    key: c
    before:
      value: x
      content_type: ""
      create_revision: 2
      mod_revision: 2
      version: 1
    after: ~
)");
}

client::HistoryPage SampleHistory() {
  client::HistoryPage page;
  page.revision = 13;
  client::HistoryRecord r1;
  r1.revision = 13;
  r1.commit_time = absl::FromUnixSeconds(1767225600);  // 2026-01-01T00:00:00Z
  r1.author = "anonymous";
  r1.message = "resize";
  r1.changes = SampleChanges().changes;
  r1.changes.resize(2);
  client::HistoryRecord r2;
  r2.revision = 4;
  r2.commit_time = absl::FromUnixSeconds(1767225600) - absl::Milliseconds(1500);
  r2.author = "token:ops";
  r2.changes = {Change{"payments/prod", "b", std::nullopt, Bare("old", 4, 4, 1)}};
  page.records = {r1, r2};
  return page;
}

TEST(FormatHistoryTest, Table) {
  EXPECT_EQ(FormatHistory(SampleHistory(), OutputFormat::kTable),
            R"(REVISION  TIME                    AUTHOR     OP      NAMESPACE      KEY  MESSAGE
13        2026-01-01T00:00:00Z    anonymous  create  payments/prod  a    resize
13        2026-01-01T00:00:00Z    anonymous  update  payments/prod  b    resize
4         2025-12-31T23:59:58.5Z  token:ops  create  payments/prod  b
2 records at revision 13
)");
}

TEST(FormatHistoryTest, Yaml) {
  client::HistoryPage page = SampleHistory();
  page.records.erase(page.records.begin());
  page.next_page_token = "more";
  EXPECT_EQ(FormatHistory(page, OutputFormat::kYaml), R"(revision: 13
records:
  - revision: 4
    commit_time: "2025-12-31T23:59:58.5Z"
    author: "token:ops"
    message: ""
    changes:
      - namespace: payments/prod
        key: b
        before: ~
        after:
          value: old
          content_type: ""
          create_revision: 4
          mod_revision: 4
          version: 1
truncated: true
)");
}

TEST(FormatStatusTest, TableAndJson) {
  client::ServerStatus s;
  s.node_id = "node-1";
  s.version = "0.1.0";
  s.store = "sqlite";
  s.revision = 13;
  s.oldest_revision = 1;
  s.key_count = 3;
  s.namespace_count = 2;
  s.writable = true;
  s.start_time = absl::FromUnixSeconds(1767225600);
  EXPECT_EQ(FormatStatus(s, OutputFormat::kTable), R"(node_id          node-1
version          0.1.0
store            sqlite
revision         13
oldest_revision  1
key_count        3
namespace_count  2
writable         true
open_watches     0
start_time       2026-01-01T00:00:00Z
)");
  EXPECT_EQ(FormatStatus(s, OutputFormat::kJson), R"({
  "node_id": "node-1",
  "version": "0.1.0",
  "store": "sqlite",
  "revision": 13,
  "oldest_revision": 1,
  "key_count": 3,
  "namespace_count": 2,
  "writable": true,
  "open_watches": 0,
  "start_time": "2026-01-01T00:00:00Z",
  "unavailable_reason": ""
}
)");
}

}  // namespace
}  // namespace snapconf::cli
