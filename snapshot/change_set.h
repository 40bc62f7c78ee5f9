// snapshot/change_set.h
//
// A ChangeSet is an ordered list of writes (puts and deletes) across namespaces that is
// committed as one revision. It is a plain value: build it on one thread, then hand it around;
// const methods may be called from several threads at once.
//
// Invariants: mutations() keeps the order of the calls; a kDelete mutation has empty value
// and content_type. Duplicate keys are allowed here (the later mutation wins when applied);
// the server rejects them before they get this far.
//
//   ChangeSet changes;
//   changes.Put("payments/prod", "db.pool.max", "32", "text/plain");
//   changes.Delete("payments/prod", "db.pool.min");
//   ASSIGN_OR_RETURN(Snapshot::Applied applied, current->Apply(changes, current->revision() + 1));
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace snapconf {

// One write of a change set.
struct Mutation {
  enum class Kind { kPut, kDelete };
  Kind kind = Kind::kPut;
  std::string ns;
  std::string key;
  std::string value;         // kPut only
  std::string content_type;  // kPut only
};

class ChangeSet {
 public:
  ChangeSet() = default;

  void Put(std::string ns, std::string key, std::string value, std::string content_type = "");
  void Delete(std::string ns, std::string key);

  const std::vector<Mutation>& mutations() const { return mutations_; }
  bool empty() const { return mutations_.empty(); }
  size_t size() const { return mutations_.size(); }

  // Bytes of names, keys, values and content types: what a batch limit should count.
  size_t ByteSize() const { return byte_size_; }

  void Clear() {
    mutations_.clear();
    byte_size_ = 0;
  }

 private:
  std::vector<Mutation> mutations_;
  size_t byte_size_ = 0;
};

}  // namespace snapconf
