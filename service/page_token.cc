#include "service/page_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace snapconf {
namespace {

constexpr char kVersion = 1;
constexpr size_t kMacBytes = 16;

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

bool GetVarint(absl::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const auto byte = static_cast<unsigned char>(in->front());
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

void PutBytes(std::string* out, absl::string_view s) {
  PutVarint(out, s.size());
  out->append(s.data(), s.size());
}

bool GetBytes(absl::string_view* in, std::string* s) {
  uint64_t n;
  if (!GetVarint(in, &n) || n > in->size()) return false;
  s->assign(in->data(), n);
  in->remove_prefix(n);
  return true;
}

absl::Status BadToken() {
  return absl::InvalidArgumentError(
      "page_token is invalid: it was altered or belongs to a different request");
}

}  // namespace

PageTokenCodec::PageTokenCodec(std::string key) : key_(std::move(key)) {}

absl::StatusOr<std::string> PageTokenCodec::NewKey() {
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    return absl::InternalError("cannot draw random bytes for the page token key");
  }
  return key;
}

std::string PageTokenCodec::Mac(absl::string_view payload) const {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &len);
  return std::string(reinterpret_cast<const char*>(mac), kMacBytes);
}

std::string PageTokenCodec::Encode(const PageToken& token) const {
  std::string payload(1, kVersion);
  PutVarint(&payload, static_cast<uint64_t>(token.revision));
  PutBytes(&payload, token.position);
  // The binding is authenticated but not stored: the caller supplies it again
  // on Decode, so a token cannot be replayed against another request.
  std::string signed_part = payload;
  PutBytes(&signed_part, token.binding);
  payload += Mac(signed_part);
  std::string out;
  absl::WebSafeBase64Escape(payload, &out);
  return out;
}

absl::StatusOr<PageToken> PageTokenCodec::Decode(absl::string_view token,
                                                 absl::string_view binding) const {
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw) || raw.size() < 1 + kMacBytes) return BadToken();
  absl::string_view payload(raw.data(), raw.size() - kMacBytes);
  absl::string_view mac(raw.data() + payload.size(), kMacBytes);
  std::string signed_part(payload);
  PutBytes(&signed_part, binding);
  const std::string expected = Mac(signed_part);
  if (CRYPTO_memcmp(expected.data(), mac.data(), kMacBytes) != 0) return BadToken();

  PageToken out;
  out.binding = std::string(binding);
  absl::string_view in = payload;
  if (in.front() != kVersion) return BadToken();
  in.remove_prefix(1);
  uint64_t revision;
  if (!GetVarint(&in, &revision) || !GetBytes(&in, &out.position) || !in.empty()) {
    return BadToken();
  }
  out.revision = static_cast<int64_t>(revision);
  return out;
}

}  // namespace snapconf
