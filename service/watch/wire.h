// service/watch/wire.h
//
// Protobuf varints for the watch messages built by hand around shared bytes
// (the hub's revision encodings, WatchMany's framing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace snapconf::watch_wire {

inline void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

inline size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

}  // namespace snapconf::watch_wire
