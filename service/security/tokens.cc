// service/security/tokens.cc
#include "service/security/tokens.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace snapconf {
namespace {

constexpr size_t kMinSecretChars = 32;
constexpr absl::string_view kHashPrefix = "sha256:";

bool AllOf(absl::string_view s, size_t max_len, absl::string_view extra) {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        extra.find(c) == absl::string_view::npos) {
      return false;
    }
  }
  return true;
}

std::string Sha256(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(absl::StrCat("invalid bearer token: ", why));
}

}  // namespace

bool ValidTokenId(absl::string_view id) { return AllOf(id, 64, "_-"); }
bool ValidIdentity(absl::string_view identity) { return AllOf(identity, 128, "_.@:/-"); }

std::string HashSecret(absl::string_view secret) {
  return absl::StrCat(kHashPrefix, absl::BytesToHexString(Sha256(secret)));
}

absl::StatusOr<NewToken> MakeToken() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    return absl::InternalError("the system random generator failed");
  }
  NewToken token;
  absl::WebSafeBase64Escape(absl::string_view(reinterpret_cast<const char*>(raw), sizeof(raw)),
                            &token.secret);
  OPENSSL_cleanse(raw, sizeof(raw));
  token.hash = HashSecret(token.secret);
  return token;
}

absl::StatusOr<TokenVerifier::Table> TokenVerifier::Parse(absl::string_view contents) {
  Table table;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    const std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("tokens file line ", line_number, ": ", why));
    };
    if (fields.size() != 3 && fields.size() != 4) {
      return bad("expected: <token-id> <identity> sha256:<hex> [expires=<RFC 3339 time>]");
    }
    if (!ValidTokenId(fields[0])) return bad("token id must be [A-Za-z0-9_-]{1,64}");
    if (!ValidIdentity(fields[1])) return bad("identity must be [A-Za-z0-9_.@:/-]{1,128}");
    absl::string_view hex = fields[2];
    if (!absl::ConsumePrefix(&hex, kHashPrefix) || hex.size() != 2 * SHA256_DIGEST_LENGTH ||
        !AllOf(hex, 2 * SHA256_DIGEST_LENGTH, "")) {
      return bad("the secret must be given as sha256:<64 hex digits>");
    }
    for (char c : hex) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
        return bad("the secret must be given as sha256:<64 hex digits>");
      }
    }
    Record record{std::string(fields[1]), absl::HexStringToBytes(absl::AsciiStrToLower(hex))};
    if (fields.size() == 4) {
      absl::string_view expires = fields[3];
      std::string error;
      if (!absl::ConsumePrefix(&expires, "expires=") ||
          !absl::ParseTime(absl::RFC3339_full, std::string(expires), &record.expires, &error)) {
        return bad(
            "the optional fourth field is expires=<RFC 3339 time>, e.g. 2027-01-31T00:00:00Z");
      }
    }
    if (!table.emplace(std::string(fields[0]), std::move(record)).second) {
      return bad(absl::StrCat("token id ", fields[0], " appears twice"));
    }
  }
  return table;
}

absl::StatusOr<std::unique_ptr<TokenVerifier>> TokenVerifier::Open(std::string path) {
  std::unique_ptr<TokenVerifier> verifier(new TokenVerifier(std::move(path)));
  RETURN_IF_ERROR(verifier->ReloadIfChanged());
  return verifier;
}

TokenVerifier::~TokenVerifier() = default;

absl::Status TokenVerifier::ReloadIfChanged() {
  MutexLock lock(&reload_mu_);
  ASSIGN_OR_RETURN(const FileStamp stamp, StampOf(path_));
  // A file already loaded, or already refused (and reported), is not re-read.
  if (stamp == loaded_ || stamp == refused_) return absl::OkStatus();
  refused_ = stamp;
  if ((stamp.mode & 0077) != 0) {
    // Hashes are not secrets, but who may read them decides who can brute
    // force a weak secret offline; the server refuses to trust such a file.
    return absl::FailedPreconditionError(absl::StrCat(
        "tokens file ", path_, " must not be accessible to group or others (chmod 600)"));
  }
  std::ifstream in(path_, std::ios::binary);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read tokens file ", path_));
  std::stringstream contents;
  contents << in.rdbuf();
  absl::StatusOr<Table> table = Parse(contents.str());
  if (!table.ok())
    return absl::Status(table.status().code(), absl::StrCat(path_, ": ", table.status().message()));
  tables_.push_back(std::make_unique<const Table>(*std::move(table)));
  current_.store(tables_.back().get(), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  loaded_ = stamp;
  return absl::OkStatus();
}

absl::StatusOr<TokenIdentity> TokenVerifier::Verify(absl::string_view presented) const {
  const Table* table = current_.load(std::memory_order_acquire);
  const size_t dot = presented.find('.');
  if (dot == absl::string_view::npos) return Unauthenticated("expected <token-id>.<secret>");
  const absl::string_view id = presented.substr(0, dot);
  const absl::string_view secret = presented.substr(dot + 1);
  if (!ValidTokenId(id)) return Unauthenticated("malformed token id");
  if (secret.size() < kMinSecretChars) return Unauthenticated("secret too short");
  if (table == nullptr) return Unauthenticated("no tokens are configured");
  auto it = table->find(id);
  // Hash even for an unknown id, so that timing does not tell which ids exist.
  const std::string digest = Sha256(secret);
  if (it == table->end() ||
      CRYPTO_memcmp(digest.data(), it->second.sha256.data(), digest.size()) != 0) {
    return Unauthenticated(absl::StrCat("unknown token or wrong secret (token id ", id, ")"));
  }
  if (absl::Now() >= it->second.expires) {
    return Unauthenticated(
        absl::StrCat("token ", id, " expired at ",
                     absl::FormatTime(absl::RFC3339_sec, it->second.expires, absl::UTCTimeZone())));
  }
  return TokenIdentity{std::string(id), it->second.identity};
}

absl::Time TokenVerifier::NextExpiryAfter(absl::Time after) const {
  const Table* table = current_.load(std::memory_order_acquire);
  absl::Time next = absl::InfiniteFuture();
  if (table == nullptr) return next;
  for (const auto& [id, record] : *table) {
    if (record.expires > after && record.expires < next) next = record.expires;
  }
  return next;
}

size_t TokenVerifier::size() const {
  const Table* table = current_.load(std::memory_order_acquire);
  return table == nullptr ? 0 : table->size();
}

}  // namespace snapconf
