// service/security/tokens.h
//
// Bearer tokens, the second source of identities next to client
// certificates. A token has a public id, which logs and audit records may
// show, and a secret, which nothing ever logs or stores: the tokens file
// holds only the SHA-256 of each secret.
//
// Tokens file, one token per line (blank lines and lines starting with # are
// ignored):
//
//   <token-id> <identity> sha256:<64 hex digits of SHA-256(secret)> [expires=<RFC 3339>]
//
// A client presents "authorization: Bearer <token-id>.<secret>". Token ids
// are [A-Za-z0-9_-]{1,64}; identities are [A-Za-z0-9_.@:/-]{1,128}; a secret
// is at least 32 characters. `snapconfctl token new` makes a secret and the
// matching line.
//
// Thread safety: Verify may be called from any thread concurrently with
// Reload. Verify takes no lock: each loaded table is immutable and published
// through an atomic pointer; replaced tables are kept until the verifier is
// destroyed (one small table per change of the file, so a bounded cost).
//
//   ASSIGN_OR_RETURN(auto verifier, TokenVerifier::Open("/etc/snapconf/tokens"));
//   absl::StatusOr<TokenIdentity> who = verifier->Verify(presented);
//   verifier->ReloadIfChanged();   // e.g. once a second
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "service/security/file_stamp.h"

namespace snapconf {

struct TokenIdentity {
  std::string token_id;
  std::string identity;
};

class TokenVerifier {
 public:
  // Reads and checks the file; a malformed line fails the whole load with
  // its line number (the secret hash is never part of a message).
  static absl::StatusOr<std::unique_ptr<TokenVerifier>> Open(std::string path);

  // Parses file contents; exposed for tests and for `Open`.
  struct Record {
    std::string identity;
    std::string sha256;                           // 32 raw bytes
    absl::Time expires = absl::InfiniteFuture();  // refused from then on
  };
  using Table = absl::flat_hash_map<std::string, Record>;
  static absl::StatusOr<Table> Parse(absl::string_view contents);

  ~TokenVerifier();
  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // "<token-id>.<secret>" → who it is. UNAUTHENTICATED for anything else,
  // with a message that names the token id at most, never the secret.
  absl::StatusOr<TokenIdentity> Verify(absl::string_view presented) const;

  // Re-reads the file when its modification time or size changed. A file
  // that no longer parses keeps the previous table and returns the error
  // (once: the same broken file is not re-read).
  absl::Status ReloadIfChanged() ABSL_LOCKS_EXCLUDED(reload_mu_);

  // Number of tokens in the current table.
  size_t size() const;
  // Counts the tables loaded so far: a change means tokens may be revoked.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // The earliest expiry of a token in the current table that is later than
  // `after` (InfiniteFuture when none): streams authenticated by it must be
  // re-checked then.
  absl::Time NextExpiryAfter(absl::Time after) const;

 private:
  explicit TokenVerifier(std::string path) : path_(std::move(path)) {}

  const std::string path_;
  std::atomic<const Table*> current_{nullptr};
  std::atomic<uint64_t> generation_{0};
  Mutex reload_mu_;  // serializes reloads; Verify never takes it
  std::vector<std::unique_ptr<const Table>> tables_ ABSL_GUARDED_BY(reload_mu_);
  FileStamp loaded_ ABSL_GUARDED_BY(reload_mu_);
  FileStamp refused_ ABSL_GUARDED_BY(reload_mu_);
};

// A fresh secret (43 characters of base64url from 32 random bytes) and the
// tokens-file hash of it ("sha256:<hex>").
struct NewToken {
  std::string secret;
  std::string hash;
};
absl::StatusOr<NewToken> MakeToken();
// The syntax rules of the tokens file.
bool ValidTokenId(absl::string_view id);
bool ValidIdentity(absl::string_view identity);
std::string HashSecret(absl::string_view secret);

}  // namespace snapconf
