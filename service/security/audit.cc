// service/security/audit.cc
#include "service/security/audit.h"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace snapconf {

// An open descriptor, closed when the last user (appender or flusher) lets go.
struct AuditLog::File {
  explicit File(int fd_in) : fd(fd_in) {}
  ~File() {
    if (fd >= 0) ::close(fd);
  }
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  const int fd;
};

namespace {

constexpr int32_t kDefaultPageSize = 100;
constexpr int32_t kMaxPageSize = 1000;
constexpr size_t kReadChunk = 64 << 10;
constexpr absl::string_view kTokenMagic = "a1";

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::StatusOr<int> OpenForAppend(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("cannot open audit log", path);
  return fd;
}

void SyncDirectoryOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Where the next (older) page starts: the end of the region still unread in
// the file with that inode and first line. Inode numbers are reused as soon
// as a rotated file is deleted; the first line (an event with its
// microsecond time) tells the files apart.
struct Position {
  uint64_t inode = 0;
  uint64_t first_line = 0;
  int64_t end = 0;
};

std::string EncodeToken(const Position& p) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(kTokenMagic, ".", p.inode, ".", p.first_line, ".", p.end));
}

absl::StatusOr<Position> DecodeToken(absl::string_view token) {
  const absl::Status bad = absl::InvalidArgumentError(
      "page_token is not a token from ListAuditEvents (start again without one)");
  std::string raw;
  if (!absl::WebSafeBase64Unescape(token, &raw)) return bad;
  std::vector<absl::string_view> parts = absl::StrSplit(raw, '.');
  Position p;
  if (parts.size() != 4 || parts[0] != kTokenMagic || !absl::SimpleAtoi(parts[1], &p.inode) ||
      !absl::SimpleAtoi(parts[2], &p.first_line) || !absl::SimpleAtoi(parts[3], &p.end) ||
      p.end <= 0) {
    return bad;
  }
  return p;
}

// A file opened for reading, with what identifies it.
struct ReadFile {
  int fd = -1;
  uint64_t inode = 0;
  int64_t size = 0;
  ReadFile() = default;
  ReadFile(const ReadFile&) = delete;
  ReadFile& operator=(const ReadFile&) = delete;
  ReadFile(ReadFile&& other) noexcept : fd(other.fd), inode(other.inode), size(other.size) {
    other.fd = -1;
  }
  ~ReadFile() {
    if (fd >= 0) ::close(fd);
  }
};

// Opens `path` for reading; a missing file is an empty result, not an error.
absl::StatusOr<std::optional<ReadFile>> OpenForRead(const std::string& path) {
  ReadFile f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) {
    if (errno == ENOENT) return std::optional<ReadFile>();
    return ErrnoError("cannot read audit log", path);
  }
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return ErrnoError("cannot stat audit log", path);
  f.inode = static_cast<uint64_t>(st.st_ino);
  f.size = static_cast<int64_t>(st.st_size);
  return std::optional<ReadFile>(std::move(f));
}

bool ReadAt(int fd, char* buf, size_t n, int64_t offset) {
  while (n > 0) {
    const ssize_t got = ::pread(fd, buf, n, offset);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    buf += got;
    n -= static_cast<size_t>(got);
    offset += got;
  }
  return true;
}

// FNV-1a of the file's first line (at most 4 KiB of it).
uint64_t FirstLineHash(const ReadFile& f) {
  std::string buf(static_cast<size_t>(std::min<int64_t>(f.size, 4096)), '\0');
  if (!ReadAt(f.fd, buf.data(), buf.size(), 0)) return 0;
  const size_t nl = buf.find('\n');
  if (nl != std::string::npos) buf.resize(nl);
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : buf) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

// The end of the last whole line at or before `end` (0 when there is none).
absl::StatusOr<int64_t> LastLineEnd(const ReadFile& f, int64_t end) {
  std::string buf;
  while (end > 0) {
    const int64_t n = std::min<int64_t>(end, static_cast<int64_t>(kReadChunk));
    buf.resize(static_cast<size_t>(n));
    if (!ReadAt(f.fd, buf.data(), buf.size(), end - n)) {
      return absl::UnavailableError("cannot read the audit log");
    }
    const size_t nl = buf.rfind('\n');
    if (nl != std::string::npos) return end - n + static_cast<int64_t>(nl) + 1;
    end -= n;
  }
  return 0;
}

bool Matches(const v1::AuditEvent& e, const AuditQuery& q) {
  if (!q.identity.empty() && e.identity() != q.identity) return false;
  if (!q.ns.empty() &&
      std::find(e.namespaces().begin(), e.namespaces().end(), q.ns) == e.namespaces().end()) {
    return false;
  }
  return true;
}

// Scans `f` backwards from `end` (a line boundary), adding matching events
// to `out` until it holds `want`. Returns the start of the last line taken
// when the page filled up, or 0 when the scan reached the file's start.
absl::StatusOr<int64_t> ScanBackwards(const ReadFile& f, int64_t end, const AuditQuery& q,
                                      size_t want, v1::ListAuditEventsResponse* out) {
  google::protobuf::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;
  // `data` covers [pos, pos + data.size()) and ends at a line boundary.
  int64_t pos = end;
  std::string data;
  std::string chunk;
  while (pos > 0 || !data.empty()) {
    if (pos > 0) {
      const int64_t n = std::min<int64_t>(pos, static_cast<int64_t>(kReadChunk));
      chunk.resize(static_cast<size_t>(n));
      if (!ReadAt(f.fd, chunk.data(), chunk.size(), pos - n)) {
        return absl::UnavailableError("cannot read the audit log");
      }
      pos -= n;
      data.insert(0, chunk);
    }
    // Take whole lines from the right; a line whose start is not in `data`
    // yet waits for the next chunk (unless the file starts there).
    size_t line_end = data.size();
    while (line_end > 0) {
      const size_t prev_nl = line_end >= 2 ? data.rfind('\n', line_end - 2) : std::string::npos;
      if (prev_nl == std::string::npos && pos > 0) break;
      const size_t start = prev_nl == std::string::npos ? 0 : prev_nl + 1;
      absl::string_view line(data.data() + start, line_end - start);
      if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
      v1::AuditEvent event;
      // Torn lines, and JSON that is not an event (no method), are skipped.
      if (!line.empty() &&
          google::protobuf::util::JsonStringToMessage(std::string(line), &event, parse).ok() &&
          !event.method().empty() && Matches(event, q)) {
        *out->add_events() = std::move(event);
        if (static_cast<size_t>(out->events_size()) >= want) {
          return pos + static_cast<int64_t>(start);
        }
      }
      line_end = start;
    }
    data.resize(line_end);
  }
  return 0;
}

}  // namespace

namespace {

// A JSON string: quotes, backslashes and control characters escaped, bytes
// that are not UTF-8 replaced by U+FFFD, so every line parses.
void AppendJsonString(absl::string_view text, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out->push_back('\\');
        out->push_back(static_cast<char>(c));
      } else if (c < 0x20 || c == 0x7F) {
        absl::StrAppend(out, absl::StrFormat("\\u%04x", c));
      } else {
        out->push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    const size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && c >= 0xC2 && i + len <= text.size();
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    }
    if (ok) {
      out->append(text.data() + i, len);
      i += len;
    } else {
      out->append("\xEF\xBF\xBD");
      ++i;
    }
  }
  out->push_back('"');
}

void AppendJsonStrings(const google::protobuf::RepeatedPtrField<std::string>& items,
                       std::string* out) {
  out->push_back('[');
  for (int i = 0; i < items.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendJsonString(items[i], out);
  }
  out->push_back(']');
}

}  // namespace

std::string AuditLine(const v1::AuditEvent& event) {
  // Written by hand for speed (it runs on every write); protobuf's JSON
  // parser reads it back (field names as in the .proto, which it accepts).
  std::string out;
  out.reserve(256);
  const absl::Time t =
      absl::FromUnixSeconds(event.time().seconds()) + absl::Nanoseconds(event.time().nanos());
  absl::StrAppend(&out, "{\"time\":\"",
                  absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone()),
                  "\",\"identity\":");
  AppendJsonString(event.identity(), &out);
  out.append(",\"method\":");
  AppendJsonString(event.method(), &out);
  out.append(",\"namespaces\":");
  AppendJsonStrings(event.namespaces(), &out);
  out.append(",\"keys\":");
  AppendJsonStrings(event.keys(), &out);
  absl::StrAppend(&out, ",\"old_revision\":", event.old_revision(),
                  ",\"new_revision\":", event.new_revision(), ",\"outcome\":");
  AppendJsonString(event.outcome(), &out);
  if (!event.detail().empty()) {
    out.append(",\"detail\":");
    AppendJsonString(event.detail(), &out);
  }
  out.append("}\n");
  return out;
}

std::string StatusCodeName(int code) {
  // gRPC's codes and absl's are the same numbers with the same names.
  std::string name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "UNKNOWN" : name;
}

void SetAuditTime(absl::Time t, v1::AuditEvent* event) {
  const int64_t micros = absl::ToUnixMicros(t);
  event->mutable_time()->set_seconds(micros / 1000000);
  event->mutable_time()->set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(AuditLogOptions options) {
  if (options.path.empty()) return absl::InvalidArgumentError("the audit log needs a path");
  if (options.max_bytes < 0) {
    return absl::InvalidArgumentError("--audit-log-max-bytes must not be negative");
  }
  std::unique_ptr<AuditLog> log(new AuditLog(std::move(options)));
  const std::string& path = log->options_.path;
  ASSIGN_OR_RETURN(const int fd, OpenForAppend(path));
  auto file = std::make_shared<File>(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("cannot stat audit log", path);
  // A pipe or a device (e.g. /dev/null) is written to but never rotated.
  if (!S_ISREG(st.st_mode)) log->rotate_ = false;
  int64_t size = static_cast<int64_t>(st.st_size);
  if (log->rotate_ && size > 0) {
    // A line torn by a power loss is ended here, so the next one starts clean.
    char last = '\n';
    if (::pread(fd, &last, 1, size - 1) != 1) return ErrnoError("cannot read audit log", path);
    if (last != '\n') {
      if (!WriteAll(fd, "\n")) return ErrnoError("cannot write audit log", path);
      ++size;
    }
  }
  SyncDirectoryOf(path);
  {
    MutexLock lock(&log->mu_);
    log->file_ = std::move(file);
    log->size_ = size;
  }
  log->flusher_ = std::thread([raw = log.get()] { raw->FlushLoop(); });
  return log;
}

AuditLog::~AuditLog() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  wake_.SignalAll();
  if (flusher_.joinable()) flusher_.join();
  (void)Flush();
}

absl::Status AuditLog::Append(const v1::AuditEvent& event) {
  const std::string line = AuditLine(event);
  MutexLock lock(&mu_);
  if (rotate_ && options_.max_bytes > 0 && size_ > 0 &&
      size_ + static_cast<int64_t>(line.size()) > options_.max_bytes) {
    RETURN_IF_ERROR(RotateLocked());
  }
  if (!WriteAll(file_->fd, line)) return ErrnoError("cannot append to audit log", options_.path);
  size_ += static_cast<int64_t>(line.size());
  if (!dirty_) {
    dirty_ = true;
    wake_.Signal();
  }
  return absl::OkStatus();
}

absl::Status AuditLog::RotateLocked() {
  // The full file reaches the disk before it takes its rotated name.
  if (::fdatasync(file_->fd) != 0) return ErrnoError("cannot sync audit log", options_.path);
  const std::string rotated = options_.path + ".1";
  if (::rename(options_.path.c_str(), rotated.c_str()) != 0) {
    return ErrnoError("cannot rotate audit log", options_.path);
  }
  ASSIGN_OR_RETURN(const int fd, OpenForAppend(options_.path));
  SyncDirectoryOf(options_.path);
  file_ = std::make_shared<File>(fd);
  size_ = 0;
  dirty_ = false;
  return absl::OkStatus();
}

absl::Status AuditLog::Flush() {
  std::shared_ptr<File> file;
  {
    MutexLock lock(&mu_);
    if (!dirty_ || file_ == nullptr) return absl::OkStatus();
    dirty_ = false;
    file = file_;
  }
  // Outside the lock: appenders never wait for the disk.
  if (::fdatasync(file->fd) != 0) return ErrnoError("cannot sync audit log", options_.path);
  return absl::OkStatus();
}

void AuditLog::FlushLoop() {
  for (;;) {
    {
      MutexLock lock(&mu_);
      while (!dirty_ && !stopping_) wake_.Wait(&mu_);
      if (stopping_) return;
      // Let the interval's appends gather into one sync.
      const auto deadline =
          std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(options_.flush_interval);
      while (!stopping_ && std::chrono::steady_clock::now() < deadline) {
        wake_.WaitUntil(&mu_, deadline);
      }
    }
    (void)Flush();
  }
}

absl::StatusOr<v1::ListAuditEventsResponse> AuditLog::List(const AuditQuery& query) const {
  if (query.page_size < 0) return absl::InvalidArgumentError("page_size is negative");
  const size_t want = static_cast<size_t>(
      query.page_size == 0 ? kDefaultPageSize : std::min(query.page_size, kMaxPageSize));
  // Newest first: the current file, then the rotated one.
  std::vector<ReadFile> files;
  for (const std::string& path : {options_.path, options_.path + ".1"}) {
    ASSIGN_OR_RETURN(std::optional<ReadFile> f, OpenForRead(path));
    // A rotation between the two opens shows one file under both names.
    if (f.has_value() && (files.empty() || files.front().inode != f->inode)) {
      files.push_back(*std::move(f));
    }
  }
  size_t index = 0;
  int64_t end = -1;  // -1: from the end of the file
  if (!query.page_token.empty()) {
    ASSIGN_OR_RETURN(const Position p, DecodeToken(query.page_token));
    while (index < files.size() &&
           (files[index].inode != p.inode || FirstLineHash(files[index]) != p.first_line)) {
      ++index;
    }
    if (index == files.size()) {
      return absl::OutOfRangeError(
          "the audit events this page_token points at were rotated away; start again without one");
    }
    if (p.end > files[index].size) {
      return absl::InvalidArgumentError(
          "page_token is not a token from ListAuditEvents (start again without one)");
    }
    ASSIGN_OR_RETURN(const int64_t boundary, LastLineEnd(files[index], p.end));
    if (boundary != p.end) {
      return absl::InvalidArgumentError(
          "page_token is not a token from ListAuditEvents (start again without one)");
    }
    end = p.end;
  }
  v1::ListAuditEventsResponse out;
  for (; index < files.size(); ++index, end = -1) {
    const ReadFile& f = files[index];
    if (end < 0) {
      // A line being appended right now, or torn, is not read.
      ASSIGN_OR_RETURN(end, LastLineEnd(f, f.size));
    }
    ASSIGN_OR_RETURN(const int64_t stop, ScanBackwards(f, end, query, want, &out));
    if (static_cast<size_t>(out.events_size()) >= want) {
      if (stop > 0) {
        out.set_next_page_token(
            EncodeToken({.inode = f.inode, .first_line = FirstLineHash(f), .end = stop}));
      } else if (index + 1 < files.size()) {
        ASSIGN_OR_RETURN(const int64_t older_end,
                         LastLineEnd(files[index + 1], files[index + 1].size));
        if (older_end > 0) {
          out.set_next_page_token(EncodeToken({.inode = files[index + 1].inode,
                                               .first_line = FirstLineHash(files[index + 1]),
                                               .end = older_end}));
        }
      }
      break;
    }
  }
  return out;
}

}  // namespace snapconf
