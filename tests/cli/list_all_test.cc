// tests/cli/list_all_test.cc
//
// AdminClient::ListAll over a fake AdminConnection: page following, limits
// and error propagation, without a server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "client/admin_client.h"
#include "tests/testing/status_matchers.h"

namespace snapconf::client {
namespace {

using ::snapconf::testing::StatusIs;

// Serves `keys` in pages of at most `page_size` (or the request's smaller
// page size); the token is the index of the next entry.
class FakeListConnection : public AdminConnection {
 public:
  FakeListConnection(int keys, int page_size) : keys_(keys), page_size_(page_size) {}

  std::vector<ListOptions> requests;
  absl::Status fail_on_page_token = absl::OkStatus();

  absl::StatusOr<ListPage> List(const std::string& ns, const ListOptions& options) override {
    requests.push_back(options);
    if (!fail_on_page_token.ok() && !options.page_token.empty()) return fail_on_page_token;
    int start = options.page_token.empty() ? 0 : std::stoi(options.page_token);
    int size = page_size_;
    if (options.page_size > 0) size = std::min(size, options.page_size);
    ListPage page;
    page.revision = 42;
    for (int i = start; i < keys_ && i < start + size; ++i) {
      page.entries.push_back(Entry{ns, "k" + std::to_string(i), "v", "", 1, 1, 1});
    }
    if (start + size < keys_) page.next_page_token = std::to_string(start + size);
    return page;
  }

  absl::StatusOr<GetResult> Get(const std::string&, const std::string&,
                                const ReadOptions&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<NamespaceList> ListNamespaces(std::int64_t) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<PutResult> Put(const std::string&, const std::string&, const std::string&,
                                const PutOptions&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<DeleteResult> Delete(const std::string&, const std::string&,
                                      const DeleteOptions&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<ChangeList> Txn(const TxnSpec&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<HistoryPage> History(const HistoryOptions&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<ChangeList> Diff(const std::string&, std::int64_t, const DiffOptions&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<ChangeList> Rollback(const std::string&, std::int64_t,
                                      const RollbackOptions&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<ServerStatus> GetServerStatus() override {
    return absl::UnimplementedError("fake");
  }
  absl::Status Watch(const WatchSpec&, absl::Duration,
                     const std::function<bool(const WatchEvent&)>&) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<AccessPolicy> GetPolicy() override { return absl::UnimplementedError("fake"); }
  absl::StatusOr<AccessPolicy> UpdatePolicy(const AccessPolicy&, bool) override {
    return absl::UnimplementedError("fake");
  }
  absl::StatusOr<AuditPage> ListAuditEvents(const AuditOptions&) override {
    return absl::UnimplementedError("fake");
  }

 private:
  int keys_;
  int page_size_;
};

TEST(ListAllTest, FollowsEveryPage) {
  auto fake = std::make_shared<FakeListConnection>(7, 3);
  AdminClient client(fake);
  ASSERT_OK_AND_ASSIGN(ListPage all, client.ListAll("ns"));
  ASSERT_EQ(all.entries.size(), 7u);
  EXPECT_EQ(all.entries.front().key, "k0");
  EXPECT_EQ(all.entries.back().key, "k6");
  EXPECT_EQ(all.revision, 42);
  EXPECT_TRUE(all.next_page_token.empty());
  ASSERT_EQ(fake->requests.size(), 3u);
  EXPECT_EQ(fake->requests[1].page_token, "3");
}

TEST(ListAllTest, StopsAtTheLimitAndKeepsTheToken) {
  auto fake = std::make_shared<FakeListConnection>(10, 3);
  AdminClient client(fake);
  ASSERT_OK_AND_ASSIGN(ListPage some, client.ListAll("ns", {}, 4));
  ASSERT_EQ(some.entries.size(), 4u);
  EXPECT_EQ(some.entries.back().key, "k3");
  EXPECT_EQ(some.next_page_token, "4");
  // The second request asked only for what was missing.
  ASSERT_EQ(fake->requests.size(), 2u);
  EXPECT_EQ(fake->requests[1].page_size, 1);
}

TEST(ListAllTest, LimitOnTheLastEntryIsNotTruncation) {
  auto fake = std::make_shared<FakeListConnection>(4, 10);
  AdminClient client(fake);
  ASSERT_OK_AND_ASSIGN(ListPage all, client.ListAll("ns", {}, 4));
  EXPECT_EQ(all.entries.size(), 4u);
  EXPECT_TRUE(all.next_page_token.empty());
}

TEST(ListAllTest, ReturnsTheErrorOfAnyPage) {
  auto fake = std::make_shared<FakeListConnection>(10, 3);
  fake->fail_on_page_token = absl::InvalidArgumentError("tampered page token");
  AdminClient client(fake);
  EXPECT_THAT(client.ListAll("ns"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace snapconf::client
