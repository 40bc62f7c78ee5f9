// service/security/transport.h
//
// How snapconfd's listener is secured and who a caller is.
//
//   * TLS from a certificate and key file, optionally verifying client
//     certificates against a CA file (mutual TLS). The files are re-read every
//     reload interval, so rotated certificates take effect without a restart.
//   * Identities: a verified bearer token (TokenVerifier) names its identity; a
//     verified client certificate names its subject; with neither the caller
//     is "anonymous", which is only possible where no authentication is
//     configured.
//   * Secure by default: a listener that is not loopback needs TLS and an
//     authentication source (tokens or required client certificates), or the
//     explicit --allow-insecure-non-loopback, which is logged loudly.
//
// gRPC's AuthMetadataProcessor refuses calls with bad or missing credentials
// before any handler runs; CallerIdentities then names the caller of each call
// from the verified token or the handshake's certificate. Identities are
// derived per call, never stored on the connection: properties added to a
// call's AuthContext were seen to outlive the call and name later callers on
// the same connection.
//
// Thread safety: the credentials and processor are used by gRPC from any
// thread; the functions here are pure.
#pragma once

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "service/security/tokens.h"

namespace snapconf {

struct TransportSecurityOptions {
  // TLS is on when both are set (PEM files).
  std::string tls_cert_file;
  std::string tls_key_file;
  // PEM CA bundle for client certificates; empty: no client certificates.
  std::string tls_client_ca_file;
  // With a client CA: "require" (default) refuses a handshake without a valid
  // certificate; "request" verifies one when offered.
  std::string tls_client_auth = "require";
  // How often certificate files are checked for changes.
  absl::Duration tls_reload_interval = absl::Seconds(10);
  // Bearer tokens file (see tokens.h); needs TLS.
  std::string tokens_file;
  // Serve a non-loopback address without TLS or authentication.
  bool allow_insecure_non_loopback = false;

  bool tls() const { return !tls_cert_file.empty() || !tls_key_file.empty(); }
  bool client_certs_required() const {
    return !tls_client_ca_file.empty() && tls_client_auth == "require";
  }
  bool authenticates() const { return !tokens_file.empty() || !tls_client_ca_file.empty(); }
};

// True for 127.0.0.0/8, ::1 and "localhost" (host part of host:port).
bool IsLoopbackListenAddress(absl::string_view listen);

// The listener's credentials, after checking that the options make sense and
// that the files are readable PEM with a key matching the certificate (so a
// mistake fails the start with one sentence instead of failing every
// handshake later). `warning` receives a line to log loudly when the options
// deliberately expose an insecure listener.
// Names the caller of a call: the identity of its bearer token, else the
// subject of its verified client certificate, else "anonymous".
class CallerIdentities {
 public:
  explicit CallerIdentities(std::shared_ptr<TokenVerifier> tokens) : tokens_(std::move(tokens)) {}
  std::string Of(const grpc::ServerContextBase& context) const;

 private:
  const std::shared_ptr<TokenVerifier> tokens_;  // null: tokens are not accepted
};

// Told about each call the credentials gate refuses (UNAUTHENTICATED), with
// the method the call named (its ":path", empty if unknown) and the message
// the caller gets (which names a token id at most, never a secret). Called on
// a gRPC thread; must not block.
using RefusedCallSink = std::function<void(absl::string_view method, const grpc::Status& status)>;

struct ServerSecurity {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  std::shared_ptr<TokenVerifier> tokens;  // null without a tokens file
  std::shared_ptr<const CallerIdentities> identities;
  std::string warning;
};
absl::StatusOr<ServerSecurity> MakeServerSecurity(absl::string_view listen,
                                                  const TransportSecurityOptions& options,
                                                  RefusedCallSink on_refused = nullptr);

}  // namespace snapconf
