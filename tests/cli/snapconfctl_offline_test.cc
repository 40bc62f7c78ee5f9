// tests/cli/snapconfctl_offline_test.cc
//
// The snapconfctl binary where no server is needed: help, usage errors and
// the exit code for an unreachable server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "tests/testing/server_process.h"

namespace snapconf::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

CommandResult Ctl(std::vector<std::string> args, CommandOptions options = {}) {
  args.insert(args.begin(), SNAPCONFCTL_PATH);
  options.env.push_back("-SNAPCONF_ENDPOINTS");
  options.env.push_back("-SNAPCONF_TOKEN_FILE");
  return RunCommand(args, options);
}

TEST(SnapconfctlOfflineTest, ToolHelpListsCommandsAndExitCodes) {
  CommandResult r = Ctl({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* word : {"get NS KEY", "put NS KEY", "del NS KEY", "list NS", "namespaces",
                           "txn -f FILE", "history NS", "diff NS", "rollback NS", "status",
                           "Exit codes:", "7  outcome unknown", "Examples:"}) {
    EXPECT_THAT(r.stdout_text, HasSubstr(word));
  }
  EXPECT_EQ(Ctl({"help"}).stdout_text, r.stdout_text);
}

TEST(SnapconfctlOfflineTest, EveryCommandHasHelpWithExamples) {
  for (const char* command : {"get", "put", "del", "list", "namespaces", "txn", "history", "diff",
                              "rollback", "status"}) {
    CommandResult r = Ctl({command, "--help"});
    EXPECT_EQ(r.exit_code, 0) << command;
    EXPECT_THAT(r.stdout_text, HasSubstr(std::string("Usage: snapconfctl ") + command));
    EXPECT_THAT(r.stdout_text, HasSubstr("Examples:")) << command;
    EXPECT_EQ(Ctl({"help", command}).stdout_text, r.stdout_text);
  }
}

TEST(SnapconfctlOfflineTest, UsageErrorsExitTwoWithOneLine) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"get", "ns"},
      {"get", "ns", "k", "extra"},
      {"get", "ns", "k", "--bogus"},
      {"get", "ns", "k", "--revision", "x"},
      {"-o", "xml", "status"},
      {"--timeout", "5", "status"},
      {"--endpoints", "nohost", "status"},
      {"diff", "ns"},
      {"rollback", "ns"},
      {"txn"},
      {"put", "ns", "k", "v", "--from-file", "/dev/null"},
      {"list", "ns", "--limit", "-1"},
  };
  for (const auto& args : cases) {
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << ::testing::PrintToString(args) << r.stderr_text;
    EXPECT_THAT(r.stderr_text, HasSubstr("snapconfctl: invalid argument: "));
    EXPECT_THAT(r.stdout_text, IsEmpty());
  }
}

TEST(SnapconfctlOfflineTest, TxnFileErrorsExitTwoBeforeConnecting) {
  CommandOptions options;
  options.stdin_text = "{\"operations\": [{\"put\": {\"namespace\": \"n\"}}]}";
  CommandResult r = Ctl({"--endpoints", "127.0.0.1:1", "txn", "-f", "-"}, options);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.stderr_text,
            "snapconfctl: invalid argument: stdin: operations[0].put.key: missing\n");
}

TEST(SnapconfctlOfflineTest, TokenWithoutTlsIsRefused) {
  const std::string token_file = ::testing::TempDir() + "/snapconfctl-token";
  {
    std::ofstream out(token_file);
    out << "secret\n";
  }
  CommandResult r = Ctl({"--token-file", token_file, "status"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.stderr_text,
            "snapconfctl: invalid argument: a token file requires TLS (--tls or --ca-file)\n");
  // The secret never shows up in output.
  EXPECT_THAT(r.stderr_text + r.stdout_text, ::testing::Not(HasSubstr("secret")));
  std::remove(token_file.c_str());
}

TEST(SnapconfctlOfflineTest, UnreachableServerExitsFive) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"get", "ns", "k"}, {"put", "ns", "k", "v"}, {"status"}}) {
    std::vector<std::string> full = {"--endpoints", "127.0.0.1:1,127.0.0.1:2", "--timeout", "2s"};
    full.insert(full.end(), args.begin(), args.end());
    CommandResult r = Ctl(full);
    EXPECT_EQ(r.exit_code, 5) << r.stderr_text;
    EXPECT_THAT(r.stderr_text, HasSubstr("snapconfctl: unavailable: no endpoint reachable"));
  }
}

TEST(SnapconfctlOfflineTest, EndpointsComeFromTheEnvironment) {
  CommandOptions options;
  options.env = {"SNAPCONF_ENDPOINTS=127.0.0.1:3"};
  std::vector<std::string> args = {SNAPCONFCTL_PATH, "status"};
  CommandResult r = RunCommand(args, options);
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_THAT(r.stderr_text, HasSubstr("127.0.0.1:3"));
}

}  // namespace
}  // namespace snapconf::testing
