#include "service/convert.h"

namespace snapconf {

void EntryToProto(std::string_view ns, std::string_view key, const Entry& entry, bool with_value,
                  v1::Entry* out) {
  if (!ns.empty()) out->set_namespace_(std::string(ns));
  if (!key.empty()) out->set_key(std::string(key));
  if (with_value) out->set_value(entry.value);
  if (!entry.content_type.empty()) out->set_content_type(entry.content_type);
  out->set_create_revision(entry.create_revision);
  out->set_mod_revision(entry.mod_revision);
  out->set_version(entry.version);
}

void ChangeToProto(const EntryChange& change, bool with_before, v1::Change* out) {
  out->set_namespace_(change.ns);
  out->set_key(change.key);
  if (with_before && change.before) {
    EntryToProto({}, {}, *change.before, /*with_value=*/true, out->mutable_before());
  }
  if (change.after) EntryToProto({}, {}, *change.after, /*with_value=*/true, out->mutable_after());
}

void RecordToProto(const CommitRecord& record, v1::ChangeRecord* out) {
  out->set_revision(record.revision);
  const int64_t micros = absl::ToUnixMicros(record.commit_time);
  out->mutable_commit_time()->set_seconds(micros / 1000000);
  out->mutable_commit_time()->set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
  out->set_author(record.author);
  out->set_message(record.message);
  for (const EntryChange& c : record.changes) ChangeToProto(c, true, out->add_changes());
}

}  // namespace snapconf
