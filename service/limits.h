// service/limits.h
//
// Limits on what a request may contain. One value per server, fixed at start;
// validation reads it from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace snapconf {

struct Limits {
  size_t max_key_bytes = 256;
  size_t max_namespace_bytes = 128;
  size_t max_value_bytes = 1 << 20;  // 1 MiB
  size_t max_content_type_bytes = 128;
  size_t max_message_bytes = 1024;
  size_t max_txn_operations = 128;
  size_t max_txn_compares = 128;
  size_t max_txn_bytes = 4 << 20;  // 4 MiB of keys and values
  int32_t default_page_size = 500;
  int32_t max_page_size = 5000;
  size_t max_page_bytes = 4 << 20;
  int32_t max_history_page_size = 1000;
  // gRPC rejects larger requests with RESOURCE_EXHAUSTED before any handler
  // runs; it leaves room for a full Txn plus framing.
  int max_receive_message_bytes = 5 << 20;
};

}  // namespace snapconf
