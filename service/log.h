// service/log.h
//
// One event per line on stderr, prefixed with a UTC timestamp. Thread-safe
// (each line is a single write).
#pragma once

#include "absl/strings/string_view.h"

namespace snapconf {

void LogLine(absl::string_view message);

}  // namespace snapconf
