// tests/cli/txn_file_test.cc
#include "client/cli/txn_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace snapconf::cli {
namespace {

using client::Compare;
using client::TxnOperation;
using client::TxnSpec;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;

TxnSpec Expected() {
  TxnSpec spec;
  spec.compares = {
      Compare{"payments/prod", "db.pool.max", Compare::Target::kModRevision, Compare::Op::kEqual,
              57, ""},
      Compare{"payments/prod", "", Compare::Target::kNamespaceRevision, Compare::Op::kLess, 100,
              ""},
      Compare{"payments/prod", "mode", Compare::Target::kValue, Compare::Op::kNotEqual, 0, "ro"},
      Compare{"shared/flags", "x", Compare::Target::kExists, Compare::Op::kEqual, 0, ""},
  };
  spec.operations = {
      TxnOperation{TxnOperation::Kind::kPut, "payments/prod", "db.pool.max", "40", "text/plain"},
      TxnOperation{TxnOperation::Kind::kDelete, "payments/prod", "db.pool.min", "", ""},
      TxnOperation{TxnOperation::Kind::kPut, "payments/prod", "blob", std::string("\x00\xff", 2),
                   ""},
  };
  spec.message = "resize the pool";
  return spec;
}

TEST(ParseTxnFileTest, Json) {
  constexpr char kJson[] = R"({
    "compares": [
      {"namespace": "payments/prod", "key": "db.pool.max", "target": "mod_revision",
       "op": "==", "number": 57},
      {"namespace": "payments/prod", "target": "namespace_revision", "op": "<", "number": 100},
      {"namespace": "payments/prod", "key": "mode", "target": "value", "op": "!=", "value": "ro"},
      {"namespace": "shared/flags", "key": "x", "target": "exists", "op": "==", "number": false}
    ],
    "operations": [
      {"put": {"namespace": "payments/prod", "key": "db.pool.max", "value": "40",
               "content_type": "text/plain"}},
      {"delete": {"namespace": "payments/prod", "key": "db.pool.min"}},
      {"put": {"namespace": "payments/prod", "key": "blob", "value": "AP8=",
               "value_encoding": "base64"}}
    ],
    "message": "resize the pool"
  })";
  ASSERT_OK_AND_ASSIGN(TxnSpec spec, ParseTxnFile(kJson, "t.json"));
  EXPECT_EQ(spec, Expected());
}

TEST(ParseTxnFileTest, YamlDescribesTheSameTransaction) {
  constexpr char kYaml[] = R"(# resize
compares:
  - {namespace: payments/prod, key: db.pool.max, target: mod_revision, op: "==", number: 57}
  - namespace: payments/prod
    target: namespace_revision
    op: "<"
    number: 100
  - {namespace: payments/prod, key: mode, target: value, op: "!=", value: ro}
  - {namespace: shared/flags, key: x, target: exists, op: "==", number: 0}
operations:
  - put:
      namespace: payments/prod
      key: db.pool.max
      value: 40
      content_type: text/plain
  - delete: {namespace: payments/prod, key: db.pool.min}
  - put: {namespace: payments/prod, key: blob, value: AP8=, value_encoding: base64}
message: resize the pool
)";
  ASSERT_OK_AND_ASSIGN(TxnSpec spec, ParseTxnFile(kYaml, "t.yaml"));
  EXPECT_EQ(spec, Expected());
}

TEST(ParseTxnFileTest, CompareListIsOptional) {
  ASSERT_OK_AND_ASSIGN(
      TxnSpec spec,
      ParseTxnFile(R"({"operations":[{"delete":{"namespace":"n","key":"k"}}]})", "t.json"));
  EXPECT_TRUE(spec.compares.empty());
  EXPECT_EQ(spec.operations.size(), 1u);
}

TEST(ParseTxnFileTest, JsonSyntaxErrorsNameLineAndColumn) {
  EXPECT_THAT(ParseTxnFile("{\n  \"operations\": [\n    {\"put\": }\n]}", "t.json"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t.json:3:13: invalid JSON")));
}

TEST(ParseTxnFileTest, YamlSyntaxErrorsNameLineAndColumn) {
  EXPECT_THAT(ParseTxnFile("operations:\n  - put: {namespace: n\n", "t.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t.yaml:3:")));
}

TEST(ParseTxnFileTest, ContentErrorsNameTheField) {
  struct Case {
    const char* text;
    const char* message;
  } cases[] = {
      {R"({"operations": []})", "t: operations: want a non-empty list"},
      {R"({"operation": []})", "t: document: unknown field \"operation\""},
      {R"({"operations": [{"put": {"namespace": "n", "value": "v"}}]})",
       "t: operations[0].put.key: missing"},
      {R"({"operations": [{"put": {"namespace": "n", "key": "k"}}]})",
       "t: operations[0].put.value: missing"},
      {R"({"operations": [{"put": {"namespace": "n", "key": "k", "value": 5}}]})",
       "t: operations[0].put.value: want a string"},
      {R"({"operations": [{"put": {"namespace": "n", "key": "k", "value": "@@",
                                   "value_encoding": "base64"}}]})",
       "t: operations[0].put.value: not valid base64"},
      {R"({"operations": [{"put": {}, "delete": {}}]})",
       "t: operations[0]: want exactly one of \"put\" or \"delete\""},
      {R"({"operations": [{"patch": {}}]})", "t: operations[0]: unknown field \"patch\""},
      {R"({"compares": [{"namespace": "n", "key": "k", "target": "age", "op": "=="}],
           "operations": [{"delete": {"namespace": "n", "key": "k"}}]})",
       "t: compares[0].target: unknown target \"age\""},
      {R"({"compares": [{"namespace": "n", "key": "k", "target": "version", "op": "="}],
           "operations": [{"delete": {"namespace": "n", "key": "k"}}]})",
       "t: compares[0].op: unknown op \"=\""},
      {R"({"compares": [{"namespace": "n", "key": "k", "target": "version", "op": "=="}],
           "operations": [{"delete": {"namespace": "n", "key": "k"}}]})",
       "t: compares[0].number: missing"},
      {R"({"compares": [{"namespace": "n", "key": "k", "target": "version", "op": "==",
                         "number": "x"}],
           "operations": [{"delete": {"namespace": "n", "key": "k"}}]})",
       "t: compares[0].number: want an integer"},
      {R"({"compares": [{"namespace": "n", "key": "k", "target": "value", "op": "==",
                         "number": 1}],
           "operations": [{"delete": {"namespace": "n", "key": "k"}}]})",
       "t: compares[0].number: not used with target value"},
      {R"({"compares": [{"namespace": "n", "target": "version", "op": "==", "number": 1}],
           "operations": [{"delete": {"namespace": "n", "key": "k"}}]})",
       "t: compares[0].key: missing"},
      {R"({"compares": [{"namespace": "n", "key": "k", "target": "namespace_revision",
                         "op": "==", "number": 1}],
           "operations": [{"delete": {"namespace": "n", "key": "k"}}]})",
       "t: compares[0].key: must be empty for target namespace_revision"},
      {R"([1, 2])", "t: want an object"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseTxnFile(c.text, "t"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.text;
  }
}

}  // namespace
}  // namespace snapconf::cli
