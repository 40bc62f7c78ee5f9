// service/security/transport.cc
#include "service/security/transport.h"

#include <arpa/inet.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"

namespace snapconf {
namespace {

constexpr absl::string_view kBearer = "Bearer ";

// Reads one PEM file with OpenSSL so that a wrong path or a wrong kind of
// file is reported at start, naming the file.
struct PemFile {
  explicit PemFile(const std::string& path) : bio(BIO_new_file(path.c_str(), "r")) {}
  ~PemFile() { BIO_free(bio); }
  PemFile(const PemFile&) = delete;
  PemFile& operator=(const PemFile&) = delete;
  BIO* bio;
};

absl::Status CheckCertificateAndKey(const std::string& cert_path, const std::string& key_path) {
  PemFile cert_file(cert_path);
  if (cert_file.bio == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read TLS certificate ", cert_path));
  }
  X509* cert = PEM_read_bio_X509(cert_file.bio, nullptr, nullptr, nullptr);
  if (cert == nullptr) {
    ERR_clear_error();
    return absl::FailedPreconditionError(
        absl::StrCat("TLS certificate ", cert_path, " holds no PEM certificate"));
  }
  PemFile key_file(key_path);
  EVP_PKEY* key = key_file.bio == nullptr
                      ? nullptr
                      : PEM_read_bio_PrivateKey(key_file.bio, nullptr, nullptr, nullptr);
  absl::Status status;
  if (key == nullptr) {
    status = absl::FailedPreconditionError(absl::StrCat(
        "TLS key ", key_path, " is unreadable or holds no unencrypted PEM private key"));
  } else if (X509_check_private_key(cert, key) != 1) {
    status = absl::FailedPreconditionError(
        absl::StrCat("TLS key ", key_path, " does not belong to the certificate ", cert_path));
  }
  ERR_clear_error();
  EVP_PKEY_free(key);
  X509_free(cert);
  return status;
}

absl::Status CheckCaBundle(const std::string& path) {
  PemFile file(path);
  X509* cert =
      file.bio == nullptr ? nullptr : PEM_read_bio_X509(file.bio, nullptr, nullptr, nullptr);
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("client CA file ", path, " is unreadable or holds no PEM certificate"));
  }
  X509_free(cert);
  return absl::OkStatus();
}

// The subject (or common name) of the verified client certificate, if any.
std::string CertificateSubject(const grpc::AuthContext& context) {
  for (const char* property : {GRPC_X509_SUBJECT_PROPERTY_NAME, GRPC_X509_CN_PROPERTY_NAME}) {
    std::vector<grpc::string_ref> values = context.FindPropertyValues(property);
    if (!values.empty() && values.front().size() > 0) {
      return std::string(values.front().data(), values.front().size());
    }
  }
  return "";
}

// Refuses calls whose credentials are wrong or missing, before any handler
// runs. It only decides; CallerIdentities names the caller later.
class CredentialsGate final : public grpc::AuthMetadataProcessor {
 public:
  CredentialsGate(std::shared_ptr<TokenVerifier> tokens, bool require_identity,
                  RefusedCallSink on_refused)
      : tokens_(std::move(tokens)),
        require_identity_(require_identity),
        on_refused_(std::move(on_refused)) {}

  // Verification is a hash and a table lookup: cheap enough to run inline.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override {
    grpc::Status status = Decide(auth_metadata, *context);
    (void)consumed_auth_metadata;
    (void)response_metadata;
    if (!status.ok() && on_refused_ != nullptr) {
      // gRPC hands the processor the request's headers, ":path" among them.
      auto path = auth_metadata.find(":path");
      on_refused_(path == auth_metadata.end()
                      ? absl::string_view()
                      : absl::string_view(path->second.data(), path->second.size()),
                  status);
    }
    return status;
  }

 private:
  grpc::Status Decide(const InputMetadata& auth_metadata, const grpc::AuthContext& context) {
    auto it = auth_metadata.find("authorization");
    if (it != auth_metadata.end()) {
      absl::string_view value(it->second.data(), it->second.size());
      if (!absl::ConsumePrefix(&value, kBearer)) {
        return {grpc::StatusCode::UNAUTHENTICATED, "authorization must be \"Bearer <token>\""};
      }
      if (tokens_ == nullptr) {
        return {grpc::StatusCode::UNAUTHENTICATED, "this server accepts no bearer tokens"};
      }
      absl::StatusOr<TokenIdentity> who = tokens_->Verify(value);
      if (!who.ok()) {
        return {grpc::StatusCode::UNAUTHENTICATED, std::string(who.status().message())};
      }
      return grpc::Status::OK;
    }
    if (require_identity_ && CertificateSubject(context).empty()) {
      return {grpc::StatusCode::UNAUTHENTICATED,
              "credentials required: a bearer token or a client certificate"};
    }
    return grpc::Status::OK;
  }

  const std::shared_ptr<TokenVerifier> tokens_;
  const bool require_identity_;
  const RefusedCallSink on_refused_;
};

}  // namespace

bool IsLoopbackListenAddress(absl::string_view listen) {
  const size_t colon = listen.rfind(':');
  std::string host(listen.substr(0, colon == absl::string_view::npos ? listen.size() : colon));
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]"))
    host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

absl::StatusOr<ServerSecurity> MakeServerSecurity(absl::string_view listen,
                                                  const TransportSecurityOptions& options,
                                                  RefusedCallSink on_refused) {
  ServerSecurity security;
  const bool tls = options.tls();
  if (tls && (options.tls_cert_file.empty() || options.tls_key_file.empty())) {
    return absl::InvalidArgumentError("TLS needs both --tls-cert-file and --tls-key-file");
  }
  if (!tls && !options.tls_client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-client-ca-file needs --tls-cert-file and --tls-key-file");
  }
  if (!tls && !options.tokens_file.empty()) {
    return absl::InvalidArgumentError(
        "--tokens-file needs TLS (--tls-cert-file, --tls-key-file): tokens must not travel in "
        "clear text");
  }
  if (options.tls_client_auth != "require" && options.tls_client_auth != "request") {
    return absl::InvalidArgumentError("--tls-client-auth must be require or request");
  }
  if (options.tls_reload_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--tls-reload-interval must be at least 1s");
  }
  const bool authenticated = tls && options.authenticates();
  if (!IsLoopbackListenAddress(listen) && !authenticated) {
    if (!options.allow_insecure_non_loopback) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to serve ", listen, " without TLS and authentication (",
          "set --tls-cert-file/--tls-key-file with --tokens-file or --tls-client-ca-file, listen "
          "on a loopback address, or pass --allow-insecure-non-loopback)"));
    }
    security.warning = absl::StrCat("WARNING insecure listener: ", listen, " is served without ",
                                    tls ? "authentication" : "TLS or authentication",
                                    " (--allow-insecure-non-loopback); anyone who can reach it "
                                    "can read and change every setting");
  }
  if (!tls) {
    security.credentials = grpc::InsecureServerCredentials();
    security.identities = std::make_shared<const CallerIdentities>(nullptr);
    return security;
  }

  RETURN_IF_ERROR(CheckCertificateAndKey(options.tls_cert_file, options.tls_key_file));
  if (!options.tls_client_ca_file.empty())
    RETURN_IF_ERROR(CheckCaBundle(options.tls_client_ca_file));
  if (!options.tokens_file.empty()) {
    ASSIGN_OR_RETURN(std::unique_ptr<TokenVerifier> tokens,
                     TokenVerifier::Open(options.tokens_file));
    security.tokens = std::move(tokens);
  }

  const auto refresh = static_cast<unsigned int>(absl::ToInt64Seconds(options.tls_reload_interval));
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options.tls_key_file, options.tls_cert_file, options.tls_client_ca_file, refresh);
  grpc::experimental::TlsServerCredentialsOptions tls_options(provider);
  tls_options.watch_identity_key_cert_pairs();
  if (options.tls_client_ca_file.empty()) {
    tls_options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    tls_options.watch_root_certs();
    tls_options.set_cert_request_type(
        options.client_certs_required() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                        : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  security.credentials = grpc::experimental::TlsServerCredentials(tls_options);
  security.credentials->SetAuthMetadataProcessor(std::make_shared<CredentialsGate>(
      security.tokens, options.authenticates(), std::move(on_refused)));
  security.identities = std::make_shared<const CallerIdentities>(security.tokens);
  return security;
}

std::string CallerIdentities::Of(const grpc::ServerContextBase& context) const {
  if (tokens_ != nullptr) {
    const auto& metadata = context.client_metadata();
    auto it = metadata.find("authorization");
    if (it != metadata.end()) {
      absl::string_view value(it->second.data(), it->second.size());
      // The gate let this call in, so the token verified moments ago; if it
      // was revoked since, the call is nobody's and every check denies it.
      if (!absl::ConsumePrefix(&value, kBearer)) return "";
      absl::StatusOr<TokenIdentity> who = tokens_->Verify(value);
      return who.ok() ? who->identity : "";
    }
  }
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (auth != nullptr) {
    std::string subject = CertificateSubject(*auth);
    if (!subject.empty()) return subject;
  }
  return "anonymous";
}

}  // namespace snapconf
