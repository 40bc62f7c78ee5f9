#include "snapshot/change_set.h"

#include <utility>

namespace snapconf {

void ChangeSet::Put(std::string ns, std::string key, std::string value, std::string content_type) {
  byte_size_ += ns.size() + key.size() + value.size() + content_type.size();
  mutations_.push_back(Mutation{Mutation::Kind::kPut, std::move(ns), std::move(key),
                                std::move(value), std::move(content_type)});
}

void ChangeSet::Delete(std::string ns, std::string key) {
  byte_size_ += ns.size() + key.size();
  mutations_.push_back(Mutation{Mutation::Kind::kDelete, std::move(ns), std::move(key), {}, {}});
}

}  // namespace snapconf
