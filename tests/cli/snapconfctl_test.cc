// tests/cli/snapconfctl_test.cc
//
// snapconfctl end to end: every command and every exit code the CLI can meet
// against a real snapconfd (6, permission, needs an authenticating server and
// is covered by the exit-code unit test). One server per test; each test
// works in its own namespaces.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"

namespace snapconf::testing {
namespace {

using ::testing::AnyOf;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

class SnapconfctlTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK_AND_ASSIGN(server_, ServerProcess::Start()); }

  // Runs snapconfctl against the server.
  CommandResult Ctl(std::vector<std::string> args, std::string stdin_text = "") {
    args.insert(args.begin(), {SNAPCONFCTL_PATH, "--endpoints", server_->address()});
    CommandOptions options;
    options.stdin_text = std::move(stdin_text);
    options.env = {"-SNAPCONF_ENDPOINTS", "-SNAPCONF_TOKEN_FILE"};
    return RunCommand(args, options);
  }

  // Runs a command that must succeed and returns its stdout.
  std::string Ok(std::vector<std::string> args, std::string stdin_text = "") {
    CommandResult r = Ctl(args, std::move(stdin_text));
    EXPECT_EQ(r.exit_code, 0) << ::testing::PrintToString(args) << "\n" << r.stderr_text;
    return r.stdout_text;
  }

  nlohmann::json Json(std::vector<std::string> args) {
    args.insert(args.end(), {"-o", "json"});
    const std::string out = Ok(args);
    nlohmann::json doc = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(doc.is_discarded()) << out;
    return doc;
  }

  std::string WriteFile(const std::string& name, const std::string& content) {
    const std::string path = ::testing::TempDir() + "/" + name;
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_F(SnapconfctlTest, PutAndGetInEveryFormat) {
  EXPECT_THAT(Ok({"put", "payments/prod", "db.pool.max", "20", "--content-type", "text/plain", "-m",
                  "initial"}),
              ContainsRegex("^put payments/prod db.pool.max: revision [0-9]+, version 1\n$"));
  const std::string table = Ok({"get", "payments/prod", "db.pool.max"});
  EXPECT_THAT(table, HasSubstr("value             20\n"));
  EXPECT_THAT(table, HasSubstr("content_type      text/plain\n"));
  EXPECT_THAT(table, HasSubstr("version           1\n"));

  nlohmann::json doc = Json({"get", "payments/prod", "db.pool.max"});
  EXPECT_EQ(doc["entry"]["value"], "20");
  EXPECT_EQ(doc["entry"]["namespace"], "payments/prod");
  EXPECT_EQ(doc["entry"]["version"], 1);
  EXPECT_GE(doc["revision"].get<int>(), 1);

  const std::string yaml = Ok({"get", "payments/prod", "db.pool.max", "-o", "yaml"});
  EXPECT_THAT(yaml, HasSubstr("entry:\n  namespace: payments/prod\n  key: db.pool.max\n"
                              "  value: \"20\"\n"));
}

TEST_F(SnapconfctlTest, PutReadsValuesFromStdinAndFiles) {
  Ok({"put", "ns", "from-stdin"}, "line one\nline two\n");
  EXPECT_EQ(Json({"get", "ns", "from-stdin"})["entry"]["value"], "line one\nline two\n");
  EXPECT_THAT(Ok({"get", "ns", "from-stdin"}),
              HasSubstr("value             line one\\nline two\\n\n"));

  const std::string binary("\x00\x01\xfe\xff", 4);
  Ok({"put", "ns", "blob", "--from-file", WriteFile("blob.bin", binary)});
  nlohmann::json doc = Json({"get", "ns", "blob"});
  EXPECT_EQ(doc["entry"]["value"], "AAH+/w==");
  EXPECT_EQ(doc["entry"]["value_encoding"], "base64");
  EXPECT_THAT(Ok({"get", "ns", "blob"}), HasSubstr("value             \\x00\\x01\\xfe\\xff\n"));

  Ok({"put", "ns", "dash", "--", "-5"});
  EXPECT_EQ(Json({"get", "ns", "dash"})["entry"]["value"], "-5");
}

TEST_F(SnapconfctlTest, NotFoundExitsThree) {
  CommandResult r = Ctl({"get", "payments/prod", "db.pool.max"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.stderr_text, "snapconfctl: not found: payments/prod db.pool.max\n");
  EXPECT_THAT(r.stdout_text, IsEmpty());
  EXPECT_EQ(Ctl({"del", "payments/prod", "db.pool.max"}).exit_code, 3);
}

TEST_F(SnapconfctlTest, FailedComparesExitFour) {
  Ok({"put", "ns", "k", "1"});
  const std::string old_rev =
      std::to_string(Json({"get", "ns", "k"})["entry"]["mod_revision"].get<int>());
  Ok({"put", "ns", "k", "2"});
  const int rev = Json({"get", "ns", "k"})["entry"]["mod_revision"].get<int>();
  CommandResult stale = Ctl({"put", "ns", "k", "3", "--expect-revision", old_rev});
  EXPECT_EQ(stale.exit_code, 4) << stale.stderr_text;
  EXPECT_THAT(stale.stderr_text, StartsWith("snapconfctl: aborted: "));
  EXPECT_EQ(Ctl({"put", "ns", "k", "3", "--expect-revision", "0"}).exit_code, 4);
  EXPECT_EQ(Ctl({"del", "ns", "k", "--expect-revision", old_rev}).exit_code, 4);
  EXPECT_EQ(Json({"get", "ns", "k"})["entry"]["value"], "2");
  Ok({"put", "ns", "k", "2", "--expect-revision", std::to_string(rev)});
  Ok({"put", "ns", "new", "x", "--expect-revision", "0"});
  EXPECT_THAT(Ok({"del", "ns", "new"}),
              ContainsRegex("^deleted ns new: revision [0-9]+ \\(was version 1\\)\n$"));
}

TEST_F(SnapconfctlTest, InvalidInputFromTheServerExitsTwo) {
  CommandResult empty_key = Ctl({"put", "ns", "", "v"});
  EXPECT_EQ(empty_key.exit_code, 2);
  EXPECT_THAT(empty_key.stderr_text, StartsWith("snapconfctl: invalid argument: "));
  CommandResult future = Ctl({"get", "ns", "k", "--revision", "1000000"});
  EXPECT_EQ(future.exit_code, 2) << future.stderr_text;
}

TEST_F(SnapconfctlTest, ListFollowsPagesAndHonoursOptions) {
  // More keys than the server's default page (500), written in Txn batches.
  for (int batch = 0; batch < 5; ++batch) {
    std::string ops;
    for (int i = 0; i < 110; ++i) {
      absl::StrAppend(&ops, ops.empty() ? "" : ",", R"({"put":{"namespace":"big","key":"k)",
                      batch * 1000 + i, R"(","value":"v"}})");
    }
    Ok({"txn", "-f", "-"}, absl::StrCat(R"({"operations":[)", ops, "]}"));
  }
  nlohmann::json all = Json({"list", "big"});
  EXPECT_EQ(all["entries"].size(), 550u);
  EXPECT_EQ(all["truncated"], false);

  nlohmann::json limited = Json({"list", "big", "--limit", "3", "--keys-only"});
  ASSERT_EQ(limited["entries"].size(), 3u);
  EXPECT_EQ(limited["entries"][0]["key"], "k0");
  EXPECT_FALSE(limited["entries"][0].contains("value"));
  EXPECT_EQ(limited["truncated"], true);

  EXPECT_EQ(Json({"list", "big", "k5"})["entries"].size(), 11u);  // k5, k50..k59
  const std::string table = Ok({"list", "big", "k400", "--limit", "2"});
  EXPECT_THAT(table, HasSubstr("KEY    VALUE  CONTENT_TYPE  VERSION  MOD_REVISION\n"));
  EXPECT_THAT(table, HasSubstr("2 entries at revision"));
  EXPECT_THAT(table, HasSubstr("(limit reached; more entries exist)"));

  const int rev = all["revision"].get<int>();
  Ok({"del", "big", "k0"});
  EXPECT_EQ(Json({"list", "big", "--revision", std::to_string(rev)})["entries"].size(), 550u);
}

TEST_F(SnapconfctlTest, NamespacesListsSizes) {
  Ok({"put", "a/one", "k", "v"});
  Ok({"put", "a/one", "k2", "v"});
  Ok({"put", "b/two", "k", "v"});
  const std::string table = Ok({"namespaces"});
  EXPECT_THAT(table,
              HasSubstr("NAMESPACE  KEYS\na/one      2\nb/two      1\n2 namespaces at revision"));
  EXPECT_EQ(Json({"namespaces"})["namespaces"][1]["namespace"], "b/two");
}

TEST_F(SnapconfctlTest, TxnFromYamlFileAndStdin) {
  Ok({"put", "ns", "a", "1"});
  const int rev = Json({"get", "ns", "a"})["entry"]["mod_revision"].get<int>();
  const std::string yaml = absl::StrCat(R"(compares:
  - {namespace: ns, key: a, target: mod_revision, op: "==", number: )",
                                        rev, R"(}
operations:
  - put: {namespace: ns, key: a, value: "2"}
  - put: {namespace: other, key: b, value: "3", content_type: text/plain}
message: together
)");
  const std::string path = WriteFile("txn.yaml", yaml);
  const std::string out = Ok({"txn", "-f", path});
  EXPECT_THAT(out, ContainsRegex("^committed revision [0-9]+\n"));
  EXPECT_THAT(out, HasSubstr("update  ns         a    1       2\n"));
  EXPECT_THAT(out, HasSubstr("create  other      b    -       3\n"));

  // Same file again: the compare is stale now.
  CommandResult again = Ctl({"txn", "-f", path});
  EXPECT_EQ(again.exit_code, 4) << again.stderr_text;
  EXPECT_EQ(Json({"get", "other", "b"})["entry"]["version"], 1);

  CommandResult bad = Ctl({"txn", "-f", "-"}, "operations:\n  - put: {namespace: ns\n");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.stderr_text, StartsWith("snapconfctl: invalid argument: stdin:"));

  CommandResult missing = Ctl({"txn", "-f", "/nonexistent/txn.json"});
  EXPECT_EQ(missing.exit_code, 2);
}

TEST_F(SnapconfctlTest, HistoryAndDiff) {
  Ok({"put", "ns", "k", "1", "-m", "first"});
  const int r1 = Json({"get", "ns", "k"})["revision"].get<int>();
  Ok({"put", "ns", "k", "2", "-m", "second"});
  Ok({"put", "ns", "other", "x"});

  nlohmann::json history = Json({"history", "ns", "k"});
  ASSERT_EQ(history["records"].size(), 2u);
  EXPECT_EQ(history["records"][0]["message"], "second");
  EXPECT_EQ(history["records"][1]["changes"][0]["after"]["value"], "1");
  EXPECT_EQ(Json({"history", "ns", "--limit", "1"})["records"].size(), 1u);
  EXPECT_EQ(Json({"history", "ns", "--limit", "1"})["truncated"], true);
  const std::string table = Ok({"history", "ns"});
  EXPECT_THAT(table, HasSubstr("REVISION  TIME"));
  EXPECT_THAT(table, HasSubstr("3 records at revision"));

  nlohmann::json diff = Json({"diff", "ns", "--from", std::to_string(r1)});
  ASSERT_EQ(diff["changes"].size(), 2u);
  EXPECT_EQ(diff["changes"][0]["key"], "k");
  EXPECT_EQ(diff["changes"][0]["before"]["value"], "1");
  EXPECT_EQ(diff["changes"][0]["after"]["value"], "2");
  EXPECT_TRUE(diff["changes"][1]["before"].is_null());
  EXPECT_EQ(Json({"diff", "ns", "--from", std::to_string(r1), "--prefix", "o"})["changes"].size(),
            1u);
  EXPECT_THAT(Ok({"diff", "ns", "--from", std::to_string(r1), "--to", std::to_string(r1)}),
              HasSubstr("no changes\n"));
}

TEST_F(SnapconfctlTest, RollbackAsksFirst) {
  Ok({"put", "ns", "k", "1"});
  const std::string r1 = std::to_string(Json({"get", "ns", "k"})["revision"].get<int>());
  Ok({"put", "ns", "k", "2"});
  Ok({"put", "ns", "added", "x"});

  // No answer on stdin: refused, nothing written.
  CommandResult refused = Ctl({"rollback", "ns", "--to", r1});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.stderr_text, HasSubstr("update  ns         k      2       1\n"));
  EXPECT_THAT(refused.stderr_text, HasSubstr("delete  ns         added  x       -\n"));
  EXPECT_THAT(refused.stderr_text, HasSubstr("refusing to roll back without confirmation"));
  EXPECT_EQ(Json({"get", "ns", "k"})["entry"]["value"], "2");

  // Declined.
  CommandResult declined = Ctl({"rollback", "ns", "--to", r1}, "n\n");
  EXPECT_EQ(declined.exit_code, 1);
  EXPECT_THAT(declined.stderr_text, HasSubstr("snapconfctl: cancelled: rollback not confirmed"));
  EXPECT_EQ(Json({"get", "ns", "k"})["entry"]["value"], "2");

  // Confirmed.
  CommandResult confirmed = Ctl({"rollback", "ns", "--to", r1, "-m", "undo"}, "y\n");
  EXPECT_EQ(confirmed.exit_code, 0) << confirmed.stderr_text;
  EXPECT_THAT(confirmed.stdout_text,
              ContainsRegex("^rolled back ns to revision " + r1 + " as revision [0-9]+\n"));
  EXPECT_EQ(Json({"get", "ns", "k"})["entry"]["value"], "1");
  EXPECT_EQ(Ctl({"get", "ns", "added"}).exit_code, 3);

  // Nothing left to do.
  EXPECT_THAT(Ok({"rollback", "ns", "--to", r1, "--yes"}), HasSubstr("nothing to roll back"));

  // --yes skips the question.
  Ok({"put", "ns", "k", "3"});
  nlohmann::json yes = Json({"rollback", "ns", "--to", r1, "--yes"});
  EXPECT_EQ(yes["changes"].size(), 1u);
  EXPECT_EQ(Json({"get", "ns", "k"})["entry"]["value"], "1");
}

TEST_F(SnapconfctlTest, StatusDescribesTheServer) {
  Ok({"put", "ns", "k", "v"});
  const std::string table = Ok({"status"});
  EXPECT_THAT(table, HasSubstr("key_count        1\n"));
  EXPECT_THAT(table, HasSubstr("writable         true\n"));
  EXPECT_EQ(Json({"status"})["namespace_count"], 1);
  EXPECT_THAT(Ok({"status", "-o", "yaml"}), HasSubstr("writable: true\n"));
}

TEST_F(SnapconfctlTest, EndpointsFailOverAndComeFromTheEnvironment) {
  const std::string endpoints = "127.0.0.1:1," + server_->address();
  CommandOptions options;
  options.env = {"SNAPCONF_ENDPOINTS=" + endpoints};
  CommandResult put = RunCommand({SNAPCONFCTL_PATH, "put", "ns", "k", "v"}, options);
  EXPECT_EQ(put.exit_code, 0) << put.stderr_text;
  CommandResult get = RunCommand({SNAPCONFCTL_PATH, "get", "ns", "k"}, options);
  EXPECT_EQ(get.exit_code, 0) << get.stderr_text;
}

TEST_F(SnapconfctlTest, StoppedServerExitsFiveForReadsAndFiveOrSevenForWrites) {
  ASSERT_THAT(server_->Stop(), IsOk());
  CommandResult get = Ctl({"--timeout", "500ms", "get", "ns", "k"});
  EXPECT_EQ(get.exit_code, 5) << get.stderr_text;
  // Whether the write left this process depends on how far the connection
  // got before the server stopped answering: 5 when provably not, 7 when it
  // may have been sent. Either way the message is explicit.
  CommandResult put = Ctl({"--timeout", "500ms", "put", "ns", "k", "v"});
  EXPECT_THAT(put.exit_code, AnyOf(5, 7)) << put.stderr_text;
  if (put.exit_code == 7) {
    EXPECT_THAT(put.stderr_text, HasSubstr("outcome unknown: "));
  }
  ASSERT_THAT(server_->Cont(), IsOk());
  EXPECT_EQ(Ctl({"get", "ns", "absent"}).exit_code, 3);
}

TEST_F(SnapconfctlTest, GracefulStopExitsZero) {
  Ok({"put", "ns", "k", "v"});
  ASSERT_OK_AND_ASSIGN(int code, server_->Terminate());
  EXPECT_EQ(code, 0);
  EXPECT_EQ(Ctl({"--timeout", "1s", "get", "ns", "k"}).exit_code, 5);
}

TEST_F(SnapconfctlTest, WatchPrintsOneLinePerChange) {
  Ok({"put", "payments/prod", "db.pool.max", "32"});
  Ok({"put", "payments/prod", "db.pool.max", "64"});
  Ok({"put", "other", "ignored", "x"});
  Ok({"del", "payments/prod", "db.pool.max"});
  // Replaying from revision 1 is deterministic: no race with the writes.
  CommandResult replay = Ctl({"watch", "payments/prod", "--from", "1", "--max-events", "3"});
  ASSERT_EQ(replay.exit_code, 0) << replay.stderr_text;
  EXPECT_EQ(replay.stdout_text,
            "1 put payments/prod db.pool.max = 32\n"
            "2 put payments/prod db.pool.max = 64\n"
            "4 delete payments/prod db.pool.max\n");
}

TEST_F(SnapconfctlTest, WatchJsonStartsWithAResetThenFollowsChanges) {
  Ok({"put", "payments/prod", "db.pool.max", "32"});
  Ok({"put", "payments/prod", "http/timeout", "5s"});
  // --duration bounds the run; the reset arrives at once and the stream then
  // stays idle, so the output is exactly the reset.
  CommandResult r =
      Ctl({"watch", "payments/prod", "--prefix", "db.", "--duration", "1s", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  std::vector<nlohmann::json> lines;
  for (absl::string_view line : absl::StrSplit(r.stdout_text, '\n', absl::SkipEmpty())) {
    lines.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(lines.size(), 1u) << r.stdout_text;
  EXPECT_EQ(lines[0]["kind"], "reset");
  EXPECT_EQ(lines[0]["revision"], 2);
  EXPECT_EQ(lines[0]["key"], "db.pool.max");
  EXPECT_EQ(lines[0]["value"], "32");
}

TEST_F(SnapconfctlTest, WatchOfAnInvalidNamespaceExitsTwo) {
  CommandResult r = Ctl({"watch", "Bad//Namespace", "--duration", "2s"});
  EXPECT_EQ(r.exit_code, 2) << r.stderr_text;
}

// ---- export / import ----

// An export without its revision line (the revision moves with every write).
std::string WithoutRevision(const std::string& yaml) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(yaml, '\n')) {
    if (absl::StartsWith(line, "revision:")) continue;
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

TEST_F(SnapconfctlTest, ImportReproducesAnExportedNamespace) {
  Ok({"put", "exp", "a", "1", "--content-type", "text/plain"});
  Ok({"put", "exp", "blob", "--from-file", WriteFile("blob.bin", std::string("\x00\xff\n", 3)),
      "--content-type", "application/octet-stream"});
  Ok({"put", "exp", "c", "{\"x\": true}", "--content-type", "application/json"});
  Ok({"put", "other", "untouched", "1"});

  const std::string exported = Ok({"export", "exp"});
  EXPECT_THAT(exported, HasSubstr("namespace: \"exp\"\n"));
  EXPECT_THAT(exported, HasSubstr("value_encoding: \"base64\"\n"));
  EXPECT_EQ(Ok({"export", "exp", "-o", "yaml"}), exported);
  const std::string yaml_file = WriteFile("exp.yaml", exported);
  const std::string json_export = Ok({"export", "exp", "-o", "json"});
  nlohmann::json doc = nlohmann::json::parse(json_export);
  EXPECT_EQ(doc["namespace"], "exp");
  EXPECT_EQ(doc["entries"].size(), 3u);

  // Change, delete and add keys.
  Ok({"put", "exp", "a", "2", "--content-type", "text/plain"});
  Ok({"put", "exp", "c", "{\"x\": true}", "--content-type", "text/plain"});
  Ok({"del", "exp", "blob"});
  Ok({"put", "exp", "extra", "x"});

  // Without --prune the extra key stays.
  CommandResult kept = Ctl({"import", yaml_file, "--yes"});
  EXPECT_EQ(kept.exit_code, 0) << kept.stderr_text;
  EXPECT_THAT(kept.stdout_text, StartsWith("imported into exp as revision "));
  EXPECT_EQ(Json({"get", "exp", "extra"})["entry"]["value"], "x");

  // With --prune, from JSON on stdin: the namespace is the export again.
  Ok({"put", "exp", "a", "3"});
  const std::string pruned = Ok({"import", "-", "--yes", "--prune"}, json_export);
  EXPECT_THAT(pruned, HasSubstr("delete  exp        extra"));
  EXPECT_THAT(pruned, HasSubstr("update  exp        a"));
  EXPECT_EQ(WithoutRevision(Ok({"export", "exp"})), WithoutRevision(exported));
  EXPECT_EQ(Json({"get", "exp", "c"})["entry"]["content_type"], "application/json");
  EXPECT_EQ(Json({"get", "other", "untouched"})["entry"]["value"], "1");

  // Applied as one revision; a second import has nothing to do.
  nlohmann::json history = Json({"history", "exp", "--limit", "1"});
  EXPECT_EQ(history["records"][0]["changes"].size(), 2u);
  EXPECT_EQ(Ok({"import", yaml_file, "--yes", "--prune"}), "nothing to import\n");
}

TEST_F(SnapconfctlTest, ImportHonoursTheExportPrefix) {
  Ok({"put", "pfx", "db.max", "20"});
  Ok({"put", "pfx", "web.port", "80"});
  const std::string file = WriteFile("pfx.yaml", Ok({"export", "pfx", "db."}));
  Ok({"put", "pfx", "db.max", "30"});
  Ok({"put", "pfx", "db.min", "1"});
  Ok({"import", file, "--yes", "--prune"});
  EXPECT_EQ(Json({"get", "pfx", "db.max"})["entry"]["value"], "20");
  EXPECT_EQ(Ctl({"get", "pfx", "db.min"}).exit_code, 3);
  EXPECT_EQ(Json({"get", "pfx", "web.port"})["entry"]["value"], "80");  // outside the prefix
}

TEST_F(SnapconfctlTest, ImportDryRunWritesNothing) {
  Ok({"put", "dry", "k", "1"});
  const std::string file = WriteFile("dry.yaml", Ok({"export", "dry"}));
  Ok({"put", "dry", "k", "2"});
  Ok({"put", "dry", "extra", "x"});
  const int revision = Json({"get", "dry", "k"})["revision"].get<int>();

  const std::string plan = Ok({"import", file, "--dry-run", "--prune"});
  EXPECT_THAT(plan, StartsWith("dry run: importing into dry will write (2 changes, 0 unchanged):"));
  EXPECT_THAT(plan, HasSubstr("update  dry        k      2       1\n"));
  EXPECT_THAT(plan, HasSubstr("delete  dry        extra  x       -\n"));
  nlohmann::json after = Json({"get", "dry", "k"});
  EXPECT_EQ(after["revision"].get<int>(), revision);
  EXPECT_EQ(after["entry"]["value"], "2");
}

TEST_F(SnapconfctlTest, ImportAsksFirst) {
  Ok({"put", "ask", "k", "1"});
  const std::string file = WriteFile("ask.yaml", Ok({"export", "ask"}));
  Ok({"put", "ask", "k", "2"});

  CommandResult refused = Ctl({"import", file});
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.stderr_text, HasSubstr("update  ask        k    2       1\n"));
  EXPECT_THAT(refused.stderr_text, HasSubstr("refusing to import without confirmation"));
  EXPECT_EQ(Json({"get", "ask", "k"})["entry"]["value"], "2");

  CommandResult declined = Ctl({"import", file}, "n\n");
  EXPECT_EQ(declined.exit_code, 1);
  EXPECT_EQ(Json({"get", "ask", "k"})["entry"]["value"], "2");

  CommandResult confirmed = Ctl({"import", file}, "y\n");
  EXPECT_EQ(confirmed.exit_code, 0) << confirmed.stderr_text;
  EXPECT_EQ(Json({"get", "ask", "k"})["entry"]["value"], "1");
}

TEST_F(SnapconfctlTest, ImportOverTheTxnLimitIsRefusedWhole) {
  nlohmann::json doc = {{"namespace", "big"}, {"entries", nlohmann::json::array()}};
  for (int i = 0; i < 129; ++i) {
    doc["entries"].push_back({{"key", absl::StrCat("k", i)}, {"value", "v"}});
  }
  CommandResult r = Ctl({"import", WriteFile("big.json", doc.dump()), "--yes"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.stderr_text, HasSubstr("over the Txn limit of 128"));
  EXPECT_EQ(Ctl({"get", "big", "k0"}).exit_code, 3);

  // A namespace that never existed has no history: the guard still holds.
  doc["entries"] = {{{"key", "k0"}, {"value", "v"}}, {{"key", "k1"}, {"value", "w"}}};
  Ok({"import", WriteFile("small.json", doc.dump()), "--yes"});
  EXPECT_EQ(Json({"get", "big", "k1"})["entry"]["value"], "w");
}

TEST_F(SnapconfctlTest, ImportOfAnInvalidDocumentExitsTwo) {
  CommandResult r = Ctl({"import", WriteFile("bad.yaml", "entries: []\n")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.stderr_text, HasSubstr("document.namespace: missing"));
}

}  // namespace
}  // namespace snapconf::testing
