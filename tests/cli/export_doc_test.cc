// tests/cli/export_doc_test.cc
#include "client/cli/export_doc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace snapconf::cli {
namespace {

using client::Change;
using client::Entry;
using client::TxnOperation;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;

Entry ServerEntry(std::string key, std::string value, std::string content_type = "",
                  std::int64_t mod_revision = 3) {
  Entry e;
  e.ns = "payments/prod";
  e.key = std::move(key);
  e.value = std::move(value);
  e.content_type = std::move(content_type);
  e.create_revision = 1;
  e.mod_revision = mod_revision;
  e.version = 2;
  return e;
}

ExportDocument Sample() {
  client::ListPage page;
  page.revision = 42;
  page.entries = {ServerEntry("db.pool.min", "5"), ServerEntry("db.pool.max", "20", "text/plain"),
                  ServerEntry("db.blob", std::string("\x00\xff", 2), "application/octet-stream")};
  return MakeExportDocument("payments/prod", "db.", page);
}

constexpr char kSampleJson[] = R"({
  "namespace": "payments/prod",
  "prefix": "db.",
  "revision": 42,
  "entries": [
    {
      "key": "db.blob",
      "value": "AP8=",
      "value_encoding": "base64",
      "content_type": "application/octet-stream"
    },
    {
      "key": "db.pool.max",
      "value": "20",
      "content_type": "text/plain"
    },
    {
      "key": "db.pool.min",
      "value": "5",
      "content_type": ""
    }
  ]
}
)";

constexpr char kSampleYaml[] = R"(namespace: "payments/prod"
prefix: "db."
revision: 42
entries:
  - key: "db.blob"
    value: "AP8="
    value_encoding: "base64"
    content_type: "application/octet-stream"
  - key: "db.pool.max"
    value: "20"
    content_type: "text/plain"
  - key: "db.pool.min"
    value: "5"
    content_type: ""
)";

TEST(ExportDocumentTest, JsonGoldenAndRoundTrip) {
  const std::string text = FormatExportDocument(Sample(), OutputFormat::kJson);
  EXPECT_EQ(text, kSampleJson);
  ASSERT_OK_AND_ASSIGN(ExportDocument back, ParseExportDocument(text, "prod.json"));
  EXPECT_EQ(back, Sample());
}

TEST(ExportDocumentTest, YamlGoldenAndRoundTrip) {
  const std::string text = FormatExportDocument(Sample(), OutputFormat::kYaml);
  EXPECT_EQ(text, kSampleYaml);
  ASSERT_OK_AND_ASSIGN(ExportDocument back, ParseExportDocument(text, "prod.yaml"));
  EXPECT_EQ(back, Sample());
}

TEST(ExportDocumentTest, TableIsYaml) {
  EXPECT_EQ(FormatExportDocument(Sample(), OutputFormat::kTable), kSampleYaml);
}

TEST(ExportDocumentTest, BytesThatLookLikeOtherTypesRoundTripInYaml) {
  client::ListPage page;
  page.revision = 7;
  page.entries = {ServerEntry("a", "true"),
                  ServerEntry("b", "007"),
                  ServerEntry("c", "null"),
                  ServerEntry("d", " two\nlines\t"),
                  ServerEntry("e", ""),
                  ServerEntry("f", "caf\xc3\xa9"),
                  ServerEntry(std::string("k\xff"), "x")};
  const ExportDocument doc = MakeExportDocument("ns", "", page);
  for (OutputFormat format : {OutputFormat::kJson, OutputFormat::kYaml}) {
    ASSERT_OK_AND_ASSIGN(ExportDocument back,
                         ParseExportDocument(FormatExportDocument(doc, format), "doc"));
    EXPECT_EQ(back, doc);
  }
}

TEST(ExportDocumentTest, EmptyNamespaceExportsAnEmptyList) {
  client::ListPage page;
  page.revision = 9;
  const ExportDocument doc = MakeExportDocument("empty", "", page);
  EXPECT_EQ(FormatExportDocument(doc, OutputFormat::kYaml),
            "namespace: \"empty\"\nprefix: \"\"\nrevision: 9\nentries: []\n");
  ASSERT_OK_AND_ASSIGN(ExportDocument back,
                       ParseExportDocument(FormatExportDocument(doc, OutputFormat::kYaml), "e"));
  EXPECT_EQ(back, doc);
}

TEST(ParseExportDocumentTest, ReportsSyntaxErrorsWithLineAndColumn) {
  EXPECT_THAT(ParseExportDocument("{\n  \"namespace\": ,\n}", "x.json"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.json:2:")));
  EXPECT_THAT(ParseExportDocument("namespace: [\n", "x.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("x.yaml:")));
}

TEST(ParseExportDocumentTest, RejectsBadContent) {
  EXPECT_THAT(ParseExportDocument(R"({"entries": []})", "d"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("d: document.namespace")));
  EXPECT_THAT(ParseExportDocument(R"({"namespace": "n", "entries": [], "extra": 1})", "d"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown field \"extra\"")));
  EXPECT_THAT(ParseExportDocument(R"({"namespace": "n", "entries": [{"key": "a", "value": "1"},
                                      {"key": "a", "value": "2"}]})",
                                  "d"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entries[1].key: duplicate")));
  EXPECT_THAT(
      ParseExportDocument(
          R"({"namespace": "n", "prefix": "db.", "entries": [{"key": "x", "value": "1"}]})", "d"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside the")));
  EXPECT_THAT(ParseExportDocument(R"({"namespace": "n", "entries": [{"key": "a", "value": "!",
                                      "value_encoding": "base64"}]})",
                                  "d"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid base64")));
  EXPECT_THAT(ParseExportDocument(R"({"namespace": "n", "revision": "x", "entries": []})", "d"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revision")));
}

TEST(PlanImportTest, CreatesUpdatesAndSkipsUnchanged) {
  const ExportDocument doc = Sample();
  const std::vector<Entry> current = {
      ServerEntry("db.pool.max", "20", "text/plain"),  // unchanged
      ServerEntry("db.pool.min", "5", "text/plain"),   // content type differs
      ServerEntry("db.extra", "x"),                    // absent from the file
  };
  const ImportPlan plan = PlanImport(doc, current, /*prune=*/false);
  EXPECT_EQ(plan.unchanged, 1u);
  ASSERT_EQ(plan.changes.size(), 2u);
  EXPECT_EQ(plan.changes[0].key, "db.blob");
  EXPECT_FALSE(plan.changes[0].before.has_value());
  ASSERT_TRUE(plan.changes[0].after.has_value());
  EXPECT_EQ(plan.changes[0].after->value, std::string("\x00\xff", 2));
  EXPECT_EQ(plan.changes[1].key, "db.pool.min");
  ASSERT_TRUE(plan.changes[1].before.has_value());
  EXPECT_EQ(plan.changes[1].before->content_type, "text/plain");
  EXPECT_EQ(plan.changes[1].after->content_type, "");
}

TEST(PlanImportTest, PruneDeletesKeysAbsentFromTheDocument) {
  const std::vector<Entry> current = {ServerEntry("db.extra", "x"),
                                      ServerEntry("db.pool.max", "20", "text/plain")};
  const ImportPlan plan = PlanImport(Sample(), current, /*prune=*/true);
  ASSERT_EQ(plan.changes.size(), 3u);
  EXPECT_EQ(plan.changes[0].key, "db.blob");
  EXPECT_EQ(plan.changes[1].key, "db.extra");
  EXPECT_TRUE(plan.changes[1].before.has_value());
  EXPECT_FALSE(plan.changes[1].after.has_value());
  EXPECT_EQ(plan.changes[2].key, "db.pool.min");
}

TEST(PlanImportTest, NothingToDoWhenEqual) {
  const ExportDocument doc = Sample();
  std::vector<Entry> current;
  for (const ExportEntry& e : doc.entries)
    current.push_back(ServerEntry(e.key, e.value, e.content_type));
  const ImportPlan plan = PlanImport(doc, current, /*prune=*/true);
  EXPECT_TRUE(plan.changes.empty());
  EXPECT_EQ(plan.unchanged, 3u);
}

TEST(ImportTxnTest, OneGuardedTxn) {
  const std::vector<Entry> current = {ServerEntry("db.extra", "x")};
  const ImportPlan plan = PlanImport(Sample(), current, /*prune=*/true);
  const client::TxnSpec spec = ImportTxn("payments/prod", plan, 17, "import");
  ASSERT_EQ(spec.compares.size(), 1u);
  EXPECT_EQ(spec.compares[0].target, client::Compare::Target::kNamespaceRevision);
  EXPECT_EQ(spec.compares[0].op, client::Compare::Op::kEqual);
  EXPECT_EQ(spec.compares[0].number, 17);
  EXPECT_EQ(spec.compares[0].key, "");
  ASSERT_EQ(spec.operations.size(), 4u);
  EXPECT_EQ(spec.operations[1],
            (TxnOperation{TxnOperation::Kind::kDelete, "payments/prod", "db.extra", "", ""}));
  EXPECT_EQ(spec.operations[2], (TxnOperation{TxnOperation::Kind::kPut, "payments/prod",
                                              "db.pool.max", "20", "text/plain"}));
  EXPECT_EQ(spec.message, "import");
}

}  // namespace
}  // namespace snapconf::cli
