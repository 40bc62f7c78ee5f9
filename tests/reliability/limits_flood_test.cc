// Limits under a flood, against a real snapconfd: many clients open watch
// streams far past --watch-max-streams while others send requests the server
// must refuse (oversized, invalid). The limits hold exactly, every refusal has
// the right status, nothing refused changes anything, and the streams that
// were open before the flood keep receiving every change.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/mutex.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"

namespace snapconf::testing {
namespace {

constexpr char kNs[] = "flood/ns";
constexpr int kMaxStreams = 40;
constexpr int kExisting = 10;

std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

std::shared_ptr<grpc::Channel> Channel(const std::string& address) {
  grpc::ChannelArguments args;
  // One connection per channel, so the flood really is many clients.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxSendMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// One watch stream from start_revision 0. Open() tells whether the server
// admitted it (its first message arrived) or how it refused it.
class Stream {
 public:
  explicit Stream(std::shared_ptr<grpc::Channel> channel)
      : channel_(std::move(channel)), stub_(v1::WatchService::NewStub(channel_)) {}
  ~Stream() {
    ctx_.TryCancel();
    if (reader_.joinable()) reader_.join();
    if (rw_ != nullptr) (void)rw_->Finish();
  }

  grpc::Status Open() {
    ctx_.set_deadline(In(absl::Seconds(120)));
    rw_ = stub_->Watch(&ctx_);
    v1::WatchRequest request;
    request.mutable_create()->add_filters()->set_namespace_(kNs);
    rw_->Write(request);
    v1::WatchResponse first;
    if (rw_->Read(&first)) return grpc::Status::OK;
    grpc::Status status = rw_->Finish();
    rw_ = nullptr;
    return status;
  }

  // Reads on a thread of its own, remembering the newest revision delivered.
  void Follow() {
    reader_ = std::thread([this] {
      v1::WatchResponse response;
      while (rw_->Read(&response)) {
        if (response.has_changes()) revision_ = response.changes().revision();
      }
    });
  }
  int64_t revision() const { return revision_.load(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WatchService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WatchRequest, v1::WatchResponse>> rw_;
  std::thread reader_;
  std::atomic<int64_t> revision_{0};
};

grpc::Status Put(v1::ConfigService::Stub& stub, const std::string& key, const std::string& value,
                 int64_t* revision = nullptr) {
  v1::PutRequest request;
  request.set_namespace_(kNs);
  request.set_key(key);
  request.set_value(value);
  v1::PutResponse response;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(20)));
  grpc::Status status = stub.Put(&ctx, request, &response);
  if (status.ok() && revision != nullptr) *revision = response.header().revision();
  return status;
}

TEST(LimitsFloodTest, LimitsHoldAndExistingStreamsAreUntouched) {
  ServerOptions options;
  options.extra_flags = {absl::StrCat("--watch-max-streams=", kMaxStreams),
                         absl::StrCat("--watch-max-streams-per-peer=", kMaxStreams)};
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start(options));
  auto config = v1::ConfigService::NewStub(Channel(server->address()));
  int64_t head = 0;
  ASSERT_TRUE(Put(*config, "k", "0", &head).ok());

  std::vector<std::unique_ptr<Stream>> existing;
  for (int i = 0; i < kExisting; ++i) {
    existing.push_back(std::make_unique<Stream>(Channel(server->address())));
    ASSERT_TRUE(existing.back()->Open().ok());
    existing.back()->Follow();
  }

  // The flood: 8 clients open 60 streams each and keep every one admitted;
  // 2 clients send requests that must be refused, without pause.
  constexpr int kClients = 8;
  constexpr int kAttempts = 60;
  Mutex mu;
  std::vector<std::unique_ptr<Stream>> admitted;
  std::atomic<int> exhausted{0}, other{0}, refused_ok{0}, refused_wrong{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&] {
      auto channel = Channel(server->address());
      for (int i = 0; i < kAttempts; ++i) {
        auto stream = std::make_unique<Stream>(channel);
        grpc::Status status = stream->Open();
        if (status.ok()) {
          MutexLock lock(&mu);
          admitted.push_back(std::move(stream));
        } else if (status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          ++exhausted;
        } else {
          ++other;
          ADD_FAILURE() << "stream refused with " << status.error_code() << ": "
                        << status.error_message();
        }
      }
    });
  }
  const std::string oversized(6 << 20, 'x');  // above the 5 MiB message limit
  for (int c = 0; c < 2; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::ConfigService::NewStub(Channel(server->address()));
      for (int i = 0; i < 2000 && !stop.load(); ++i) {
        const bool big = (i + c) % 2 == 0;
        grpc::Status status = big ? Put(*stub, "big", oversized) : Put(*stub, "", "no key");
        const grpc::StatusCode expected =
            big ? grpc::StatusCode::RESOURCE_EXHAUSTED : grpc::StatusCode::INVALID_ARGUMENT;
        (status.error_code() == expected ? refused_ok : refused_wrong)++;
      }
    });
  }
  for (int c = 0; c < kClients; ++c) threads[static_cast<size_t>(c)].join();
  stop = true;
  for (size_t t = kClients; t < threads.size(); ++t) threads[t].join();

  // The stream limit held exactly: the flood got the free places, no more.
  EXPECT_EQ(static_cast<int>(admitted.size()), kMaxStreams - kExisting);
  EXPECT_EQ(exhausted.load(), kClients * kAttempts - (kMaxStreams - kExisting));
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(refused_ok.load(), 0);
  EXPECT_EQ(refused_wrong.load(), 0);
  {
    auto admin = v1::AdminService::NewStub(Channel(server->address()));
    v1::GetServerStatusResponse status;
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    ASSERT_TRUE(admin->GetServerStatus(&ctx, {}, &status).ok());
    EXPECT_EQ(status.open_watches(), kMaxStreams);
    EXPECT_EQ(status.revision(), head);  // nothing refused was written
  }

  // The streams from before the flood still get every change.
  int64_t last = 0;
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(Put(*config, "k", absl::StrCat(i), &last).ok());
  EXPECT_EQ(last, head + 3);
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  for (const auto& stream : existing) {
    while (stream->revision() < last && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(stream->revision(), last);
  }
}

}  // namespace
}  // namespace snapconf::testing
