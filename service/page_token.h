// service/page_token.h
//
// Opaque continuation tokens for List and History. A token pins the revision
// of the first page (so every page of a listing comes from one snapshot), the
// last key returned, and a binding to the request that produced it. It is
// authenticated with HMAC-SHA256 under a server key: a token that was altered,
// truncated or made for another request is rejected with INVALID_ARGUMENT.
//
// Thread-safe after construction.
//
//   PageTokenCodec codec(key);
//   std::string t = codec.Encode({.revision = 42, .binding = "list:ns:prefix", .position = "k17"});
//   ASSIGN_OR_RETURN(PageToken p, codec.Decode(t, "list:ns:prefix"));
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace snapconf {

struct PageToken {
  int64_t revision = 0;
  // What the token continues: callers build it from the request fields that
  // must not change between pages.
  std::string binding;
  // Where to continue (the last key returned, or an encoded history position).
  std::string position;
};

class PageTokenCodec {
 public:
  // `key` must hold at least 16 random bytes.
  explicit PageTokenCodec(std::string key);

  std::string Encode(const PageToken& token) const;
  absl::StatusOr<PageToken> Decode(absl::string_view token, absl::string_view binding) const;

  // 32 random bytes from the system's CSPRNG.
  static absl::StatusOr<std::string> NewKey();

 private:
  std::string Mac(absl::string_view payload) const;

  std::string key_;
};

}  // namespace snapconf
