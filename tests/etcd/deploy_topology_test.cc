// docker-compose.yml, run on loopback: the etcd members' settings and
// the snapconfd replicas' flags are taken from the compose file, with only the
// addresses mapped to the test's free loopback ports (no Docker engine here).
// The replicas must start on the cluster and serve each other's writes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tests/etcd/etcd_test_util.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using etcd_testing::Get;
using etcd_testing::Node;
using etcd_testing::Put;
using testing::EtcdCluster;
using testing::ServerProcess;

std::vector<std::string> Command(const YAML::Node& service) {
  std::vector<std::string> out;
  for (const YAML::Node& arg : service["command"]) out.push_back(arg.as<std::string>());
  return out;
}

// Flags that place a member in the compose network; the harness sets its own.
bool IsTopologyFlag(const std::string& flag) {
  for (const char* name :
       {"--name=", "--data-dir=", "--listen-client-urls=", "--advertise-client-urls=",
        "--listen-peer-urls=", "--initial-advertise-peer-urls=", "--initial-cluster=",
        "--initial-cluster-state=", "--initial-cluster-token="}) {
    if (absl::StartsWith(flag, name)) return true;
  }
  return false;
}

TEST(DeployTopologyTest, ComposeFlagsStartTheSameTopologyOnLoopback) {
  const YAML::Node compose = YAML::LoadFile(SNAPCONF_SOURCE_DIR "/docker-compose.yml");
  const YAML::Node services = compose["services"];
  ASSERT_TRUE(services.IsMap());
  std::vector<std::string> etcd_names, replica_names;
  for (const auto& kv : services) {
    const std::string name = kv.first.as<std::string>();
    (absl::StartsWith(name, "etcd") ? etcd_names : replica_names).push_back(name);
  }
  ASSERT_EQ(etcd_names.size(), 3u);
  ASSERT_EQ(replica_names.size(), 2u);

  // The members' own settings (the same for all three), on the harness's ports.
  std::vector<std::string> member_flags;
  for (const std::string& flag : Command(services[etcd_names[0]])) {
    if (!IsTopologyFlag(flag)) member_flags.push_back(flag);
  }
  EXPECT_THAT(member_flags, ::testing::Contains("--max-txn-ops=1024"));
  for (const std::string& name : etcd_names) {
    std::vector<std::string> flags;
    for (const std::string& flag : Command(services[name])) {
      if (!IsTopologyFlag(flag)) flags.push_back(flag);
    }
    EXPECT_EQ(flags, member_flags) << name;
    EXPECT_THAT(Command(services[name]), ::testing::Contains("--name=" + name));
  }
  testing::EtcdClusterOptions options;
  options.extra_flags = member_flags;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EtcdCluster> etcd, EtcdCluster::Start(options));
  std::map<std::string, std::string> member_address;  // "etcd1:2379" -> loopback
  for (size_t i = 0; i < etcd_names.size(); ++i) {
    member_address[etcd_names[i] + ":2379"] = etcd->endpoint(static_cast<int>(i));
  }

  // The replicas with the compose file's flags; only addresses are mapped.
  std::vector<std::unique_ptr<ServerProcess>> replicas;
  for (const std::string& name : replica_names) {
    testing::ServerOptions server;
    bool has_endpoints = false;
    for (const std::string& flag : Command(services[name])) {
      if (absl::StartsWith(flag, "--listen=")) continue;  // the harness picks a port
      if (absl::StartsWith(flag, "--etcd-endpoints=")) {
        std::vector<std::string> mapped;
        for (absl::string_view ep :
             absl::StrSplit(flag.substr(std::string("--etcd-endpoints=").size()), ',')) {
          ASSERT_TRUE(member_address.contains(std::string(ep))) << ep;
          mapped.push_back(member_address[std::string(ep)]);
        }
        EXPECT_EQ(mapped.size(), 3u) << name << " must know every member";
        server.extra_flags.push_back("--etcd-endpoints=" + absl::StrJoin(mapped, ","));
        has_endpoints = true;
        continue;
      }
      server.extra_flags.push_back(flag);
    }
    EXPECT_TRUE(has_endpoints) << name;
    EXPECT_THAT(server.extra_flags, ::testing::Contains("--store=etcd")) << name;
    ASSERT_OK_AND_ASSIGN(auto process, ServerProcess::Start(server));
    replicas.push_back(std::move(process));
  }
  Node a(replicas[0]->address()), b(replicas[1]->address());
  ASSERT_OK_AND_ASSIGN(int64_t r, Put(a, "deploy/ns", "k", "v"));
  ASSERT_OK_AND_ASSIGN(v1::GetResponse got, Get(b, "deploy/ns", "k", r));
  EXPECT_EQ(got.entry().value(), "v");
  EXPECT_EQ(got.header().node_id(), replica_names[1]);
}

}  // namespace
}  // namespace snapconf
