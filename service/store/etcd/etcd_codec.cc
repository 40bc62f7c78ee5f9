// Key layout and value encodings of the etcd store; see etcd_codec.h.
#include "service/store/etcd/etcd_codec.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace snapconf::etcd {
namespace {

constexpr char kSeparator = '!';

// Appends "<size>:<bytes>".
void AppendField(std::string* out, absl::string_view field) {
  absl::StrAppend(out, field.size(), ":", field);
}

// Reads one "<size>:<bytes>" field from the front of *in.
bool ReadField(absl::string_view* in, std::string* field) {
  const size_t colon = in->find(':');
  if (colon == absl::string_view::npos || colon == 0 || colon > 20) return false;
  uint64_t size = 0;
  if (!absl::SimpleAtoi(absl::string_view(in->data(), colon), &size)) return false;
  if (in->size() - colon - 1 < size) return false;
  field->assign(in->data() + colon + 1, size);
  in->remove_prefix(colon + 1 + size);
  return true;
}

}  // namespace

std::string KeyLayout::DataKey(absl::string_view ns, absl::string_view key) const {
  return absl::StrCat(prefix_, "d/", ns, absl::string_view(&kSeparator, 1), key);
}

std::string KeyLayout::MarkerKey(absl::string_view ns) const {
  return absl::StrCat(prefix_, "n/", ns);
}

KeyLayout::Parsed KeyLayout::Parse(absl::string_view etcd_key) const {
  Parsed parsed;
  if (!absl::StartsWith(etcd_key, prefix_)) return parsed;
  absl::string_view rest = etcd_key.substr(prefix_.size());
  if (rest == "m") {
    parsed.kind = Kind::kMeta;
  } else if (absl::StartsWith(rest, "d/")) {
    rest.remove_prefix(2);
    const size_t sep = rest.find(kSeparator);
    if (sep == absl::string_view::npos || sep == 0 || sep + 1 == rest.size()) return parsed;
    parsed.kind = Kind::kData;
    parsed.ns = std::string(rest.substr(0, sep));
    parsed.key = std::string(rest.substr(sep + 1));
  } else if (absl::StartsWith(rest, "n/") && rest.size() > 2) {
    parsed.kind = Kind::kMarker;
    parsed.ns = std::string(rest.substr(2));
  }
  return parsed;
}

std::string PrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key (etcd's convention)
}

bool StorableName(absl::string_view name) {
  return name.find(kSeparator) == absl::string_view::npos;
}

std::string EncodeValue(absl::string_view content_type, absl::string_view value) {
  std::string out;
  out.reserve(content_type.size() + value.size() + 8);
  AppendField(&out, content_type);
  out.append(value.data(), value.size());
  return out;
}

absl::StatusOr<DecodedValue> DecodeValue(absl::string_view encoded) {
  DecodedValue decoded;
  if (!ReadField(&encoded, &decoded.content_type)) {
    return absl::DataLossError("etcd value is not in snapconf's encoding");
  }
  decoded.value = std::string(encoded);
  return decoded;
}

std::string EncodeMeta(const Meta& meta) {
  std::string out = "1;";  // format version
  AppendField(&out, meta.txn_id);
  AppendField(&out, absl::StrCat(absl::ToUnixMicros(meta.commit_time)));
  AppendField(&out, meta.author);
  AppendField(&out, meta.message);
  return out;
}

absl::StatusOr<Meta> DecodeMeta(absl::string_view encoded) {
  Meta meta;
  std::string micros;
  int64_t us = 0;
  if (!absl::StartsWith(encoded, "1;")) return absl::DataLossError("unknown metadata format");
  encoded.remove_prefix(2);
  if (!ReadField(&encoded, &meta.txn_id) || !ReadField(&encoded, &micros) ||
      !absl::SimpleAtoi(micros, &us) || !ReadField(&encoded, &meta.author) ||
      !ReadField(&encoded, &meta.message)) {
    return absl::DataLossError("damaged change-set metadata");
  }
  meta.commit_time = absl::FromUnixMicros(us);
  return meta;
}

}  // namespace snapconf::etcd
