// Authorization against a real snapconfd over TLS: every method of the
// snapconf.v1 API, found by walking the service descriptors (so a method added
// later without a check fails here), called as each kind of caller; and
// listings, history and transactions that try to reach outside a grant.
#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/text_format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <condition_variable>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service/security/tokens.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/server_process.h"

namespace snapconf {
namespace {

using ::snapconf::testing::CommandResult;
using ::snapconf::testing::RunCommand;
using ::snapconf::testing::ServerOptions;
using ::snapconf::testing::ServerProcess;

constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-authz";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << contents;
  ::chmod(path.c_str(), 0600);
}

// A request for every method of the API, in text format, touching the
// namespace "payments/prod" (or nothing, for server-wide methods).
const std::map<std::string, std::string>& Requests() {
  static const auto* requests = new std::map<std::string, std::string>{
      {"/snapconf.v1.ConfigService/Get", R"(namespace: "payments/prod" key: "k")"},
      {"/snapconf.v1.ConfigService/List", R"(namespace: "payments/prod")"},
      {"/snapconf.v1.ConfigService/ListNamespaces", ""},
      {"/snapconf.v1.ConfigService/Put", R"(namespace: "payments/prod" key: "k" value: "v")"},
      {"/snapconf.v1.ConfigService/Delete", R"(namespace: "payments/prod" key: "k")"},
      {"/snapconf.v1.ConfigService/Txn",
       R"(operations { put { namespace: "payments/prod" key: "k" value: "v" } })"},
      {"/snapconf.v1.ConfigService/History", R"(namespace: "payments/prod")"},
      {"/snapconf.v1.ConfigService/Diff", R"(namespace: "payments/prod" from_revision: 1)"},
      {"/snapconf.v1.ConfigService/Rollback", R"(namespace: "payments/prod" to_revision: 1)"},
      {"/snapconf.v1.AdminService/GetServerStatus", ""},
      {"/snapconf.v1.AdminService/GetPolicy", ""},
      {"/snapconf.v1.AdminService/UpdatePolicy", ""},
      {"/snapconf.v1.AdminService/ListAuditEvents", ""},
      {"/snapconf.v1.WatchService/Watch", R"(create { filters { namespace: "payments/prod" } })"},
  };
  return *requests;
}

class AuthzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/authzXXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    Openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", Path("ca.key"), "-out", Path("ca.pem"), "-days", "2", "-subj", "/CN=ca"});
    Openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", Path("server.key"), "-out", Path("server.csr"), "-subj", "/CN=snapconfd"});
    WriteFile(Path("san.ext"), "subjectAltName=IP:127.0.0.1\n");
    Openssl({"x509", "-req", "-in", Path("server.csr"), "-CA", Path("ca.pem"), "-CAkey",
             Path("ca.key"), "-CAcreateserial", "-out", Path("server.pem"), "-days", "2",
             "-extfile", Path("san.ext")});
    const std::string hash = HashSecret(kSecret);
    WriteFile(Path("tokens"), absl::StrCat("root ops/root ", hash, "\n", "alice team/alice ", hash,
                                           "\n", "nobody team/nobody ", hash, "\n", "old ops/old ",
                                           hash, " expires=2001-01-01T00:00:00Z\n"));
    WriteFile(Path("policy.yaml"), R"(
roles:
  - {name: operator, namespaces: "*", permission: admin}
  - {name: payments-reader, namespaces: ["payments/*"], permission: read}
bindings:
  - {identity: ops/root, roles: [operator]}
  - {identity: ops/old, roles: [operator]}
  - {identity: team/alice, roles: [payments-reader]}
)");
    ServerOptions options;
    options.extra_flags = {
        "--tls-cert-file=" + Path("server.pem"), "--tls-key-file=" + Path("server.key"),
        "--tokens-file=" + Path("tokens"), "--policy-file=" + Path("policy.yaml")};
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(Path("ca.pem"));
    channel_ = grpc::CreateChannel(server_->address(), grpc::SslCredentials(ssl));
    // Some data outside alice's grant, and in it.
    ASSERT_EQ(Unary("root", "/snapconf.v1.ConfigService/Put",
                    R"(namespace: "hr/salaries" key: "ceo" value: "1")")
                  .error_code(),
              grpc::StatusCode::OK);
    ASSERT_EQ(Unary("root", "/snapconf.v1.ConfigService/Put",
                    R"(namespace: "payments/prod" key: "k" value: "v")")
                  .error_code(),
              grpc::StatusCode::OK);
  }
  void TearDown() override { RunCommand({"/bin/rm", "-rf", dir_}); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  void Openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    CommandResult r = RunCommand(args);
    ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  }

  static std::string Token(const std::string& who) {
    return who.empty() ? "" : absl::StrCat(who, ".", kSecret);
  }

  // Calls a unary method with a request given in text format, as `who`
  // ("" sends no token; anything else sends "<who>.<secret>").
  grpc::Status Unary(const std::string& who, const std::string& method, const std::string& text,
                     std::string* response_bytes = nullptr) {
    const auto* pool = google::protobuf::DescriptorPool::generated_pool();
    const std::string service_name = method.substr(1, method.rfind('/') - 1);
    const auto* service = pool->FindServiceByName(service_name);
    if (service == nullptr) return {grpc::StatusCode::INTERNAL, "no service " + service_name};
    const auto* m = service->FindMethodByName(method.substr(method.rfind('/') + 1));
    if (m == nullptr) return {grpc::StatusCode::INTERNAL, "no method " + method};
    std::unique_ptr<google::protobuf::Message> request(
        google::protobuf::MessageFactory::generated_factory()
            ->GetPrototype(m->input_type())
            ->New());
    if (!google::protobuf::TextFormat::ParseFromString(text, request.get())) {
      return {grpc::StatusCode::INTERNAL, "bad request text for " + method};
    }
    const std::string bytes = request->SerializeAsString();
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request_buffer(&slice, 1);
    grpc::ByteBuffer response_buffer;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!who.empty()) ctx.AddMetadata("authorization", "Bearer " + Token(who));
    grpc::GenericStub stub(channel_);
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grpc::Status status;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request_buffer, &response_buffer,
                   [&](grpc::Status s) {
                     std::lock_guard<std::mutex> lock(mu);
                     status = std::move(s);
                     done = true;
                     cv.notify_one();
                   });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(15), [&] { return done; });
    if (!done) return {grpc::StatusCode::DEADLINE_EXCEEDED, "no answer"};
    if (status.ok() && response_bytes != nullptr) {
      std::vector<grpc::Slice> slices;
      (void)response_buffer.Dump(&slices);
      response_bytes->clear();
      for (const grpc::Slice& s : slices) {
        response_bytes->append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    return status;
  }

  // Opens a watch as `who` on `ns` and returns how the stream ends or, if it
  // delivers a message first, OK.
  grpc::Status WatchOnce(const std::string& who, const std::string& ns) {
    auto stub = v1::WatchService::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!who.empty()) ctx.AddMetadata("authorization", "Bearer " + Token(who));
    auto stream = stub->Watch(&ctx);
    v1::WatchRequest request;
    request.mutable_create()->add_filters()->set_namespace_(ns);
    stream->Write(request);
    v1::WatchResponse response;
    if (stream->Read(&response)) {
      ctx.TryCancel();
      return grpc::Status::OK;
    }
    return stream->Finish();
  }

  grpc::Status Call(const std::string& who, const std::string& method) {
    if (method == "/snapconf.v1.WatchService/Watch") return WatchOnce(who, "payments/prod");
    return Unary(who, method, Requests().at(method));
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

std::vector<std::string> EveryApiMethod() {
  // Touch each service's messages so that their descriptors are linked in
  // and registered in the generated pool.
  (void)v1::GetRequest::descriptor();
  (void)v1::WatchRequest::descriptor();
  (void)v1::GetServerStatusRequest::descriptor();
  std::vector<std::string> methods;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const char* name :
       {"snapconf.v1.ConfigService", "snapconf.v1.WatchService", "snapconf.v1.AdminService"}) {
    const auto* service = pool->FindServiceByName(name);
    EXPECT_NE(service, nullptr) << name;
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      methods.push_back(absl::StrCat("/", name, "/", service->method(i)->name()));
    }
  }
  return methods;
}

TEST_F(AuthzTest, EveryMethodRefusesCallersWithoutCredentialsOrGrant) {
  const std::vector<std::string> methods = EveryApiMethod();
  ASSERT_GE(methods.size(), 14u);
  for (const std::string& method : methods) {
    ASSERT_TRUE(Requests().count(method)) << method << " has no entry in this test: add one";
    // No token, a wrong secret, an expired token: not authenticated.
    EXPECT_EQ(Call("", method).error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
    EXPECT_EQ(Call("root-typo", method).error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
    EXPECT_EQ(Call("old", method).error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
    // Authenticated, but granted nothing: refused, except the namespace
    // listing, which lists what the caller may read (nothing).
    if (method == "/snapconf.v1.ConfigService/ListNamespaces") {
      std::string bytes;
      ASSERT_TRUE(Unary("nobody", method, "", &bytes).ok());
      v1::ListNamespacesResponse listed;
      ASSERT_TRUE(listed.ParseFromString(bytes));
      EXPECT_EQ(listed.namespaces_size(), 0);
    } else {
      EXPECT_EQ(Call("nobody", method).error_code(), grpc::StatusCode::PERMISSION_DENIED) << method;
    }
    // Granted: whatever the method answers, it is not a refusal.
    const grpc::Status granted = Call("root", method);
    EXPECT_NE(granted.error_code(), grpc::StatusCode::PERMISSION_DENIED) << method;
    EXPECT_NE(granted.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
  }
}

// Callers share one connection here: each call must be judged as its own
// caller, whatever earlier calls on the connection were.
TEST_F(AuthzTest, EachCallOnASharedConnectionIsItsOwnCaller) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(Unary("root", "/snapconf.v1.ConfigService/Put",
                      R"(namespace: "payments/prod" key: "k" value: "root")")
                    .ok());
    EXPECT_EQ(Unary("alice", "/snapconf.v1.ConfigService/Put",
                    R"(namespace: "payments/prod" key: "k" value: "alice")")
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  std::string bytes;
  ASSERT_TRUE(Unary("root", "/snapconf.v1.ConfigService/History",
                    R"(namespace: "payments/prod" page_size: 1)", &bytes)
                  .ok());
  v1::HistoryResponse history;
  ASSERT_TRUE(history.ParseFromString(bytes));
  ASSERT_EQ(history.records_size(), 1);
  EXPECT_EQ(history.records(0).author(), "ops/root");
}

TEST_F(AuthzTest, ReadersCannotWriteNorReachOutsideTheirGrant) {
  // Inside the grant: reads work, writes do not.
  EXPECT_TRUE(
      Unary("alice", "/snapconf.v1.ConfigService/Get", R"(namespace: "payments/prod" key: "k")")
          .ok());
  EXPECT_EQ(Unary("alice", "/snapconf.v1.ConfigService/Put",
                  R"(namespace: "payments/prod" key: "k" value: "x")")
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Outside: an existing and a missing namespace are refused alike.
  const grpc::Status existing =
      Unary("alice", "/snapconf.v1.ConfigService/Get", R"(namespace: "hr/salaries" key: "ceo")");
  const grpc::Status missing =
      Unary("alice", "/snapconf.v1.ConfigService/Get", R"(namespace: "hr/nothing" key: "ceo")");
  EXPECT_EQ(existing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // Old revisions, history, diff and a compare inside a transaction are reads too.
  for (const auto& [method, text] : std::vector<std::pair<std::string, std::string>>{
           {"/snapconf.v1.ConfigService/List", R"(namespace: "hr/salaries" revision: 1)"},
           {"/snapconf.v1.ConfigService/History", R"(namespace: "hr/salaries")"},
           {"/snapconf.v1.ConfigService/History", ""},  // every namespace
           {"/snapconf.v1.ConfigService/Diff", R"(namespace: "hr/salaries" from_revision: 1)"},
           {"/snapconf.v1.ConfigService/Txn",
            R"(compares { namespace: "hr/salaries" key: "ceo" target: TARGET_VALUE
                          op: OPERATOR_EQUAL value: "1" })"},
       }) {
    EXPECT_EQ(Unary("alice", method, text).error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << method << " " << text;
  }
  EXPECT_EQ(WatchOnce("alice", "hr/salaries").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(WatchOnce("alice", "payments/prod").ok());
  // ListNamespaces shows only what alice may read.
  std::string bytes;
  ASSERT_TRUE(Unary("alice", "/snapconf.v1.ConfigService/ListNamespaces", "", &bytes).ok());
  v1::ListNamespacesResponse listed;
  ASSERT_TRUE(listed.ParseFromString(bytes));
  ASSERT_EQ(listed.namespaces_size(), 1);
  EXPECT_EQ(listed.namespaces(0).namespace_(), "payments/prod");
}

}  // namespace
}  // namespace snapconf
