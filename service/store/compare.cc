// CheckCompare: the one definition of compare semantics for the stores that
// evaluate compares themselves (SQLite, memory). Numbers of an absent key are
// 0 (exists is 1/0); an absent key's value equals nothing.
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "service/store/store.h"

namespace snapconf {
namespace {

// Values and keys are bytes; messages show them escaped and bounded so a
// large or binary value cannot flood a log line or break an RPC message.
constexpr size_t kMaxShownBytes = 64;

std::string Show(std::string_view view) {
  const absl::string_view bytes(view.data(), view.size());
  if (bytes.size() <= kMaxShownBytes) return absl::CHexEscape(bytes);
  return absl::StrCat(absl::CHexEscape(bytes.substr(0, kMaxShownBytes)), "...(", bytes.size(),
                      " bytes)");
}

const char* OpName(Compare::Op op) {
  switch (op) {
    case Compare::Op::kEqual:
      return "==";
    case Compare::Op::kNotEqual:
      return "!=";
    case Compare::Op::kLess:
      return "<";
    case Compare::Op::kGreater:
      return ">";
  }
  return "?";
}

const char* TargetName(Compare::Target target) {
  switch (target) {
    case Compare::Target::kModRevision:
      return "mod_revision";
    case Compare::Target::kCreateRevision:
      return "create_revision";
    case Compare::Target::kVersion:
      return "version";
    case Compare::Target::kExists:
      return "exists";
    case Compare::Target::kValue:
      return "value";
    case Compare::Target::kNamespaceRevision:
      return "revision";
  }
  return "?";
}

bool Holds(Compare::Op op, int64_t actual, int64_t expected) {
  switch (op) {
    case Compare::Op::kEqual:
      return actual == expected;
    case Compare::Op::kNotEqual:
      return actual != expected;
    case Compare::Op::kLess:
      return actual < expected;
    case Compare::Op::kGreater:
      return actual > expected;
  }
  return false;
}

}  // namespace

absl::Status CheckCompare(const Snapshot& snapshot, Revision namespace_revision,
                          const Compare& compare, size_t index) {
  const bool ns_target = compare.target == Compare::Target::kNamespaceRevision;
  if (ns_target && !compare.key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("compare ", index, ": a namespace revision compare takes no key"));
  }
  if (!ns_target && compare.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("compare ", index, ": key is empty"));
  }
  const std::string subject = ns_target ? absl::StrCat("namespace ", Show(compare.ns))
                                        : absl::StrCat(Show(compare.ns), " ", Show(compare.key));
  const Entry* entry = ns_target ? nullptr : snapshot.Find(compare.ns, compare.key);

  if (compare.target == Compare::Target::kValue) {
    if (compare.op != Compare::Op::kEqual && compare.op != Compare::Op::kNotEqual) {
      return absl::InvalidArgumentError(
          absl::StrCat("compare ", index, ": values can only be compared with == or !="));
    }
    const bool equal = entry != nullptr && entry->value == compare.value;
    if (equal == (compare.op == Compare::Op::kEqual)) return absl::OkStatus();
    const std::string actual =
        entry == nullptr ? std::string("absent") : absl::StrCat("\"", Show(entry->value), "\"");
    return absl::AbortedError(absl::StrCat("compare ", index, " failed: ", subject, " value is ",
                                           actual, ", expected ", OpName(compare.op), " \"",
                                           Show(compare.value), "\""));
  }

  const bool revision_target = compare.target == Compare::Target::kModRevision ||
                               compare.target == Compare::Target::kCreateRevision || ns_target;
  if (revision_target && compare.number > snapshot.revision()) {
    // Comparing with a revision nobody can have seen yet is a caller bug,
    // not a lost race: say so rather than answering ABORTED.
    return absl::InvalidArgumentError(absl::StrCat("compare ", index, ": revision ", compare.number,
                                                   " is in the future (head is ",
                                                   snapshot.revision(), ")"));
  }

  int64_t actual = 0;
  switch (compare.target) {
    case Compare::Target::kModRevision:
      actual = entry != nullptr ? entry->mod_revision : 0;
      break;
    case Compare::Target::kCreateRevision:
      actual = entry != nullptr ? entry->create_revision : 0;
      break;
    case Compare::Target::kVersion:
      actual = entry != nullptr ? entry->version : 0;
      break;
    case Compare::Target::kExists:
      actual = entry != nullptr ? 1 : 0;
      break;
    case Compare::Target::kNamespaceRevision:
      actual = namespace_revision;
      break;
    case Compare::Target::kValue:
      break;  // handled above
  }
  if (Holds(compare.op, actual, compare.number)) return absl::OkStatus();
  return absl::AbortedError(absl::StrCat("compare ", index, " failed: ", subject, " ",
                                         TargetName(compare.target), " is ", actual, ", expected ",
                                         OpName(compare.op), " ", compare.number));
}

}  // namespace snapconf
