// tests/fuzz/page_token_fuzz.cc
//
// Fuzzes service/page_token.h. Arbitrary strings given as tokens are rejected
// with INVALID_ARGUMENT (never a crash or another code). A token the codec made
// decodes to exactly what was encoded, is refused for any other binding or
// under another key, and an altered token is refused unless it still decodes
// to the very same token.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "service/page_token.h"
#include "tests/fuzz/fuzz_input.h"

namespace {

void ExpectRejected(const absl::StatusOr<snapconf::PageToken>& decoded, const char* what) {
  FUZZ_CHECK(!decoded.ok(), "%s was accepted", what);
  FUZZ_CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument, "%s: code %d", what,
             static_cast<int>(decoded.status().code()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace snapconf;
  using namespace snapconf::fuzz;
  static const PageTokenCodec codec(std::string(32, 'k'));
  static const PageTokenCodec other(std::string(32, 'o'));
  FuzzInput input(data, size);

  if (input.Bool()) {
    // Garbage as a token.
    const std::string binding = input.Bytes(32);
    const std::string token = input.Rest();
    absl::StatusOr<PageToken> decoded = codec.Decode(token, binding);
    if (!decoded.ok()) {
      FUZZ_CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument, "code %d",
                 static_cast<int>(decoded.status().code()));
    }
    return 0;
  }

  PageToken token;
  token.revision = static_cast<int64_t>(uint64_t{input.U32()} << 32 | input.U32());
  token.binding = input.Bytes(64);
  token.position = input.Bytes(300);
  const size_t flip_at = input.U32();
  const uint8_t flip_to = input.Byte();
  const std::string other_binding = input.Rest();

  const std::string encoded = codec.Encode(token);
  absl::StatusOr<PageToken> decoded = codec.Decode(encoded, token.binding);
  FUZZ_CHECK(decoded.ok(), "own token refused: %s",
             std::string(decoded.status().message()).c_str());
  FUZZ_CHECK(decoded->revision == token.revision && decoded->position == token.position &&
                 decoded->binding == token.binding,
             "round trip changed the token");
  if (other_binding != token.binding) {
    ExpectRejected(codec.Decode(encoded, other_binding), "a token for another binding");
  }
  ExpectRejected(other.Decode(encoded, token.binding), "a token under another key");

  std::string altered = encoded;
  altered[flip_at % altered.size()] = static_cast<char>(flip_to);
  if (altered != encoded) {
    absl::StatusOr<PageToken> result = codec.Decode(altered, token.binding);
    if (result.ok()) {
      FUZZ_CHECK(result->revision == token.revision && result->position == token.position,
                 "an altered token decoded to a different token");
    } else {
      FUZZ_CHECK(result.status().code() == absl::StatusCode::kInvalidArgument, "code %d",
                 static_cast<int>(result.status().code()));
    }
  }
  // Truncation is an alteration too.
  ExpectRejected(codec.Decode(encoded.substr(0, flip_at % encoded.size()), token.binding),
                 "a truncated token");
  return 0;
}
