// service/security/file_stamp.h
//
// Cheap change detection for files snapconfd re-reads while running (tokens,
// policy): modification time and size, compared with the last load.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace snapconf {

struct FileStamp {
  int64_t mtime_ns = -1;
  int64_t size = -1;
  uint32_t mode = 0;
  bool operator==(const FileStamp& o) const { return mtime_ns == o.mtime_ns && size == o.size; }
};

inline absl::StatusOr<FileStamp> StampOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot read ", path));
  }
  return FileStamp{static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                   static_cast<int64_t>(st.st_size), static_cast<uint32_t>(st.st_mode)};
}

}  // namespace snapconf
