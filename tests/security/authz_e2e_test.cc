// Authorization against a real snapconfd over TLS: every method of the
// snapconf.v1 API, found by walking the service descriptors (so a method added
// later without a check fails here), called as each kind of caller; and
// listings, history and transactions that try to reach outside a grant; the
// audit log and policy changes through the API and snapconfctl.
#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/text_format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
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
      {"/snapconf.v1.WatchService/WatchMany",
       R"(watch_id: 1 create { filters { namespace: "payments/prod" } })"},
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

  // Opens one WatchMany stream as `who` with a watch on each of `namespaces`
  // (ids 0, 1, ...) and returns, per watch, OK once it delivered a message,
  // else the status of its WatchEnded; when the stream itself ends first,
  // that status for every watch still waiting.
  std::vector<grpc::Status> WatchManyOnce(const std::string& who,
                                          const std::vector<std::string>& namespaces) {
    auto stub = v1::WatchService::NewStub(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!who.empty()) ctx.AddMetadata("authorization", "Bearer " + Token(who));
    auto stream = stub->WatchMany(&ctx);
    for (size_t i = 0; i < namespaces.size(); ++i) {
      v1::WatchManyRequest request;
      request.set_watch_id(static_cast<int64_t>(i));
      request.mutable_create()->add_filters()->set_namespace_(namespaces[i]);
      stream->Write(request);
    }
    std::vector<std::optional<grpc::Status>> outcome(namespaces.size());
    size_t known = 0;
    v1::WatchManyResponse response;
    while (known < outcome.size() && stream->Read(&response)) {
      for (const v1::WatchManyEvent& e : response.events()) {
        auto& o = outcome.at(static_cast<size_t>(e.watch_id()));
        if (o) continue;
        o = e.has_ended()
                ? grpc::Status(static_cast<grpc::StatusCode>(e.ended().code()), e.ended().message())
                : grpc::Status::OK;
        known++;
      }
    }
    if (known < outcome.size()) {
      const grpc::Status status = stream->Finish();
      for (auto& o : outcome) {
        if (!o) o = status;
      }
    } else {
      ctx.TryCancel();
    }
    std::vector<grpc::Status> statuses;
    for (auto& o : outcome) statuses.push_back(*o);
    return statuses;
  }

  grpc::Status Call(const std::string& who, const std::string& method) {
    if (method == "/snapconf.v1.WatchService/Watch") return WatchOnce(who, "payments/prod");
    if (method == "/snapconf.v1.WatchService/WatchMany") {
      return WatchManyOnce(who, {"payments/prod"})[0];
    }
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
    // The administration methods are served to admins: the policy and the
    // audit log are read, and an update based on version 0 (never in force)
    // is stale.
    static const std::map<std::string, grpc::StatusCode> kAdminAnswers = {
        {"/snapconf.v1.AdminService/GetServerStatus", grpc::StatusCode::OK},
        {"/snapconf.v1.AdminService/GetPolicy", grpc::StatusCode::OK},
        {"/snapconf.v1.AdminService/UpdatePolicy", grpc::StatusCode::ABORTED},
        {"/snapconf.v1.AdminService/ListAuditEvents", grpc::StatusCode::OK},
    };
    if (auto it = kAdminAnswers.find(method); it != kAdminAnswers.end()) {
      EXPECT_EQ(granted.error_code(), it->second) << method << ": " << granted.error_message();
    }
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
  // On a shared stream, the refused watch ends alone.
  const std::vector<grpc::Status> many = WatchManyOnce("alice", {"hr/salaries", "payments/prod"});
  EXPECT_EQ(many[0].error_code(), grpc::StatusCode::PERMISSION_DENIED) << many[0].error_message();
  EXPECT_TRUE(many[1].ok()) << many[1].error_message();
  // ListNamespaces shows only what alice may read.
  std::string bytes;
  ASSERT_TRUE(Unary("alice", "/snapconf.v1.ConfigService/ListNamespaces", "", &bytes).ok());
  v1::ListNamespacesResponse listed;
  ASSERT_TRUE(listed.ParseFromString(bytes));
  ASSERT_EQ(listed.namespaces_size(), 1);
  EXPECT_EQ(listed.namespaces(0).namespace_(), "payments/prod");
}

// ---- Audit log and policy administration through the API ----

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

class AuditTest : public AuthzTest {
 protected:
  // Every event in the log, newest first (one page of up to 1000).
  std::vector<v1::AuditEvent> AuditEvents(const std::string& filter = "") {
    std::string bytes;
    const grpc::Status s = Unary("root", "/snapconf.v1.AdminService/ListAuditEvents",
                                 "page_size: 1000 " + filter, &bytes);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::ListAuditEventsResponse page;
    EXPECT_TRUE(page.ParseFromString(bytes));
    EXPECT_TRUE(page.next_page_token().empty());
    return {page.events().begin(), page.events().end()};
  }

  v1::Policy GetPolicy(const std::string& who = "root") {
    std::string bytes;
    const grpc::Status s = Unary(who, "/snapconf.v1.AdminService/GetPolicy", "", &bytes);
    EXPECT_TRUE(s.ok()) << s.error_message();
    v1::GetPolicyResponse response;
    EXPECT_TRUE(response.ParseFromString(bytes));
    return response.policy();
  }

  grpc::Status UpdatePolicy(const std::string& who, const v1::Policy& policy, bool force = false,
                            v1::Policy* now = nullptr) {
    v1::UpdatePolicyRequest request;
    *request.mutable_policy() = policy;
    request.set_force(force);
    std::string text;
    google::protobuf::TextFormat::PrintToString(request, &text);
    std::string bytes;
    grpc::Status s = Unary(who, "/snapconf.v1.AdminService/UpdatePolicy", text, &bytes);
    if (s.ok() && now != nullptr) {
      v1::UpdatePolicyResponse response;
      EXPECT_TRUE(response.ParseFromString(bytes));
      *now = response.policy();
    }
    return s;
  }

  std::string Ctl(const std::string& who, std::vector<std::string> args, int* exit_code) {
    const std::string token_file = Path(who + ".token");
    WriteFile(token_file, Token(who) + "\n");
    std::vector<std::string> argv = {SNAPCONFCTL_PATH, "--endpoints",  server_->address(),
                                     "--ca-file",      Path("ca.pem"), "--token-file",
                                     token_file};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv);
    *exit_code = r.exit_code;
    return r.stdout_text + r.stderr_text;
  }
};

TEST_F(AuditTest, RecordsEveryWriteAndEveryRefusal) {
  const size_t before = AuditEvents().size();
  EXPECT_EQ(before, 2u);  // the fixture's two puts
  struct Expected {
    std::string identity;
    std::string method;
    std::vector<std::string> keys;
    std::string outcome;
    int64_t new_revision;
  };
  std::vector<Expected> expected;
  const auto write = [&](const std::string& who, const std::string& identity,
                         const std::string& method, const std::string& text,
                         std::vector<std::string> keys) {
    std::string bytes;
    const grpc::Status s = Unary(who, "/snapconf.v1.ConfigService/" + method, text, &bytes);
    int64_t revision = 0;
    if (s.ok()) {
      v1::PutResponse any;  // every write response has the header as field 1
      EXPECT_TRUE(any.ParseFromString(bytes));
      revision = any.header().revision();
    }
    expected.push_back({identity, "/snapconf.v1.ConfigService/" + method, std::move(keys),
                        CodeName(s.error_code()), revision});
    return s.error_code();
  };
  EXPECT_EQ(write("root", "ops/root", "Put", R"(namespace: "payments/prod" key: "a" value: "1")",
                  {"payments/prod/a"}),
            grpc::StatusCode::OK);
  EXPECT_EQ(write("alice", "team/alice", "Put", R"(namespace: "payments/prod" key: "a" value: "2")",
                  {"payments/prod/a"}),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(write("root", "ops/root", "Put", R"(namespace: "payments/prod" key: "" value: "2")",
                  {"payments/prod/"}),
            grpc::StatusCode::INVALID_ARGUMENT);
  const grpc::StatusCode stale =
      write("root", "ops/root", "Put",
            R"(namespace: "payments/prod" key: "a" value: "3" expected_mod_revision: 1)",
            {"payments/prod/a"});
  EXPECT_TRUE(stale == grpc::StatusCode::ABORTED || stale == grpc::StatusCode::FAILED_PRECONDITION)
      << CodeName(stale);
  EXPECT_EQ(write("root", "ops/root", "Delete", R"(namespace: "payments/prod" key: "missing")",
                  {"payments/prod/missing"}),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(write("root", "ops/root", "Txn",
                  R"(operations { put { namespace: "payments/prod" key: "b" value: "1" } }
                     operations { delete { namespace: "payments/prod" key: "a" } })",
                  {"payments/prod/b", "payments/prod/a"}),
            grpc::StatusCode::OK);
  // Back to revision 2 (after the fixture's puts): b goes away.
  EXPECT_EQ(write("root", "ops/root", "Rollback", R"(namespace: "payments/prod" to_revision: 2)",
                  {"payments/prod/b"}),
            grpc::StatusCode::OK);
  EXPECT_EQ(write("nobody", "team/nobody", "Rollback",
                  R"(namespace: "payments/prod" to_revision: 1)", {}),
            grpc::StatusCode::PERMISSION_DENIED);
  // Refused by the credentials gate, before any handler: no identity.
  EXPECT_EQ(write("", "unauthenticated", "Put", R"(namespace: "payments/prod" key: "a")", {}),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      write("root-typo", "unauthenticated", "Delete", R"(namespace: "payments/prod" key: "a")", {}),
      grpc::StatusCode::UNAUTHENTICATED);
  // Reads are not audited.
  EXPECT_TRUE(
      Unary("root", "/snapconf.v1.ConfigService/Get", R"(namespace: "payments/prod" key: "k")")
          .ok());

  const std::vector<v1::AuditEvent> events = AuditEvents();
  ASSERT_EQ(events.size(), before + expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const Expected& want = expected[expected.size() - 1 - i];  // newest first
    const v1::AuditEvent& got = events[i];
    SCOPED_TRACE(got.DebugString());
    EXPECT_EQ(got.identity(), want.identity);
    EXPECT_EQ(got.method(), want.method);
    EXPECT_EQ(std::vector<std::string>(got.keys().begin(), got.keys().end()), want.keys);
    EXPECT_EQ(got.outcome(), want.outcome);
    EXPECT_EQ(got.new_revision(), want.new_revision);
    if (want.outcome == "OK") {
      EXPECT_GT(got.old_revision(), 0);
      EXPECT_LT(got.old_revision(), got.new_revision());
      EXPECT_TRUE(got.detail().empty());
    } else {
      EXPECT_FALSE(got.detail().empty());
    }
    if (!want.keys.empty()) {
      ASSERT_EQ(got.namespaces_size(), 1);
      EXPECT_EQ(got.namespaces(0), "payments/prod");
    }
    EXPECT_GT(got.time().seconds(), 1700000000);
  }
  // The same events are lines of the file in the data directory, and no
  // secret is among them.
  const std::string log = ReadFile(server_->data_dir() + "/audit.log");
  EXPECT_EQ(static_cast<size_t>(std::count(log.begin(), log.end(), '\n')), events.size());
  EXPECT_EQ(log.find(kSecret), std::string::npos);
}

TEST_F(AuditTest, ListingIsForAdminsPagedAndChecksItsToken) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(Unary("alice", "/snapconf.v1.ConfigService/Put",
                    R"(namespace: "payments/prod" key: "x" value: "1")")
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(Unary("alice", "/snapconf.v1.AdminService/ListAuditEvents", "").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const std::vector<v1::AuditEvent> all = AuditEvents();
  ASSERT_EQ(all.size(), 7u);
  // Page by page, the same events in the same order.
  std::vector<v1::AuditEvent> paged;
  std::string token;
  for (int pages = 0; pages < 20; ++pages) {
    std::string bytes;
    ASSERT_TRUE(Unary("root", "/snapconf.v1.AdminService/ListAuditEvents",
                      absl::StrCat("page_size: 2 page_token: \"", token, "\""), &bytes)
                    .ok());
    v1::ListAuditEventsResponse page;
    ASSERT_TRUE(page.ParseFromString(bytes));
    EXPECT_LE(page.events_size(), 2);
    paged.insert(paged.end(), page.events().begin(), page.events().end());
    token = page.next_page_token();
    if (token.empty()) break;
  }
  ASSERT_EQ(paged.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(paged[i].DebugString(), all[i].DebugString());
  EXPECT_EQ(
      Unary("root", "/snapconf.v1.AdminService/ListAuditEvents", R"(page_token: "not-a-token")")
          .error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(
      Unary("root", "/snapconf.v1.AdminService/ListAuditEvents", "page_size: -1").error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  // Filters.
  const std::vector<v1::AuditEvent> alices = AuditEvents(R"(identity: "team/alice")");
  ASSERT_EQ(alices.size(), 5u);
  for (const auto& e : alices) EXPECT_EQ(e.outcome(), "PERMISSION_DENIED");
  EXPECT_EQ(AuditEvents(R"(namespace: "hr/salaries")").size(), 1u);
}

TEST_F(AuditTest, PolicyChangesThroughTheApiApplyAtOnceAndAreAudited) {
  const std::string file_before = ReadFile(Path("policy.yaml"));
  v1::Policy policy = GetPolicy();
  const int64_t v = policy.version();
  EXPECT_GE(v, 1);
  EXPECT_EQ(policy.roles_size(), 2);
  EXPECT_EQ(policy.bindings_size(), 3);
  const std::string put = R"(namespace: "payments/prod" key: "by-alice" value: "1")";
  EXPECT_EQ(Unary("alice", "/snapconf.v1.ConfigService/Put", put).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);

  // Refused, and nothing changes: not an admin, invalid, stale, self-lockout.
  EXPECT_EQ(UpdatePolicy("alice", policy).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::Policy invalid = policy;
  v1::Role* bad = invalid.add_roles();
  bad->set_name("broken");
  bad->add_namespace_patterns("pay*ments");
  bad->set_permission(v1::PERMISSION_READ);
  const grpc::Status invalid_status = UpdatePolicy("root", invalid);
  EXPECT_EQ(invalid_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(invalid_status.error_message(), ::testing::HasSubstr("role broken"));
  v1::Policy lockout = policy;
  lockout.clear_bindings();
  const grpc::Status lockout_status = UpdatePolicy("root", lockout);
  EXPECT_EQ(lockout_status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(lockout_status.error_message(), ::testing::HasSubstr("force"));
  EXPECT_EQ(GetPolicy().version(), v);
  EXPECT_EQ(ReadFile(Path("policy.yaml")), file_before);

  // Granted: alice may write payments/* at once.
  v1::Policy grant = policy;
  v1::Role* writer = grant.add_roles();
  writer->set_name("payments-writer");
  writer->add_namespace_patterns("payments/*");
  writer->set_permission(v1::PERMISSION_WRITE);
  for (v1::RoleBinding& b : *grant.mutable_bindings()) {
    if (b.identity() == "team/alice") b.add_roles("payments-writer");
  }
  v1::Policy now;
  ASSERT_TRUE(UpdatePolicy("root", grant, false, &now).ok());
  EXPECT_EQ(now.version(), v + 1);
  EXPECT_EQ(GetPolicy().version(), v + 1);
  EXPECT_EQ(Unary("alice", "/snapconf.v1.ConfigService/Put", put).error_code(),
            grpc::StatusCode::OK);
  // The file holds the new policy (with its version), private to the server.
  EXPECT_THAT(ReadFile(Path("policy.yaml")), ::testing::HasSubstr("payments-writer"));
  struct stat st {};
  ASSERT_EQ(::stat(Path("policy.yaml").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // An update based on the old version is stale.
  EXPECT_EQ(UpdatePolicy("root", grant).error_code(), grpc::StatusCode::ABORTED);

  // Every attempt is in the audit log with its outcome and versions.
  std::vector<v1::AuditEvent> updates;
  for (const v1::AuditEvent& e : AuditEvents()) {
    if (e.method() == "/snapconf.v1.AdminService/UpdatePolicy") updates.push_back(e);
  }
  ASSERT_EQ(updates.size(), 5u);
  EXPECT_EQ(updates[0].outcome(), "ABORTED");
  EXPECT_EQ(updates[1].outcome(), "OK");
  EXPECT_EQ(updates[1].identity(), "ops/root");
  EXPECT_EQ(updates[1].old_revision(), v);
  EXPECT_EQ(updates[1].new_revision(), v + 1);
  EXPECT_EQ(updates[2].outcome(), "FAILED_PRECONDITION");
  EXPECT_EQ(updates[3].outcome(), "INVALID_ARGUMENT");
  EXPECT_EQ(updates[4].outcome(), "PERMISSION_DENIED");
  EXPECT_EQ(updates[4].identity(), "team/alice");

  // With force, an admin may give up admin: the change applies at once.
  lockout.set_version(v + 1);
  ASSERT_TRUE(UpdatePolicy("root", lockout, /*force=*/true).ok());
  EXPECT_EQ(Unary("root", "/snapconf.v1.AdminService/GetPolicy", "").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuditTest, SnapconfctlReadsAndSetsThePolicyAndReadsTheAuditLog) {
  int code = -1;
  const std::string got = Ctl("root", {"policy", "get"}, &code);
  ASSERT_EQ(code, 0) << got;
  EXPECT_THAT(got, ::testing::HasSubstr("ops/root"));
  const size_t at = got.find("version: ");
  ASSERT_NE(at, std::string::npos) << got;
  const int64_t version = std::stoll(got.substr(at + 9));
  // JSON too, with the same version.
  const std::string json = Ctl("root", {"policy", "get", "-o", "json"}, &code);
  ASSERT_EQ(code, 0) << json;
  EXPECT_THAT(json, ::testing::HasSubstr(absl::StrCat("\"version\": ", version)));

  // Make alice an admin with a file in the shape `policy get` prints.
  WriteFile(Path("new-policy.yaml"), absl::StrCat("version: ", version, R"(
roles:
  - {name: operator, namespaces: ["*"], permission: admin}
bindings:
  - {identity: ops/root, roles: [operator]}
  - {identity: team/alice, roles: [operator]}
)"));
  const std::string set = Ctl("root", {"policy", "set", Path("new-policy.yaml")}, &code);
  ASSERT_EQ(code, 0) << set;
  EXPECT_THAT(set, ::testing::HasSubstr(absl::StrCat("policy version ", version + 1)));
  // The same file again is stale: exit code 4 (compare failed, nothing changed).
  const std::string again = Ctl("root", {"policy", "set", Path("new-policy.yaml")}, &code);
  EXPECT_EQ(code, 4) << again;
  // A file without a version is refused before anything is sent.
  WriteFile(Path("no-version.yaml"), "roles: []\nbindings: []\n");
  const std::string unversioned = Ctl("root", {"policy", "set", Path("no-version.yaml")}, &code);
  EXPECT_EQ(code, 2) << unversioned;

  // alice is an admin now and reads the audit log.
  const std::string audit = Ctl("alice", {"audit", "--limit", "3", "-o", "json"}, &code);
  ASSERT_EQ(code, 0) << audit;
  EXPECT_THAT(audit, ::testing::HasSubstr("/snapconf.v1.AdminService/UpdatePolicy"));
  EXPECT_THAT(audit, ::testing::HasSubstr("\"ABORTED\""));
  const std::string table = Ctl("alice", {"audit"}, &code);
  ASSERT_EQ(code, 0) << table;
  EXPECT_THAT(table, ::testing::HasSubstr("IDENTITY"));
  EXPECT_THAT(table, ::testing::HasSubstr("UpdatePolicy"));
  EXPECT_THAT(table, ::testing::HasSubstr("payments/prod/k"));
  // Not an admin: exit code 6.
  const std::string refused = Ctl("nobody", {"audit"}, &code);
  EXPECT_EQ(code, 6) << refused;
}

}  // namespace
}  // namespace snapconf
