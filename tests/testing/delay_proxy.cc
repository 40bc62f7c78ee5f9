// tests/testing/delay_proxy.cc
//
// Plain blocking sockets with poll() timeouts, so that every thread notices
// `stopping_` within 50 ms and the destructor never hangs.
#include "tests/testing/delay_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace snapconf::testing {
namespace {

constexpr int kPollMillis = 50;

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// True when `fd` became readable (or hung up) before the poll interval ended.
bool WaitReadable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, kPollMillis) > 0;
}

absl::StatusOr<int> ConnectTo(const std::string& target) {
  std::vector<std::string> parts = absl::StrSplit(target, ':');
  int port = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &port)) {
    return absl::InvalidArgumentError(absl::StrCat("target must be IPv4:PORT: ", target));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, parts[0].c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4 address: ", parts[0]));
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    absl::Status s = Errno(absl::StrCat("connect ", target));
    ::close(fd);
    return s;
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

}  // namespace

absl::StatusOr<std::unique_ptr<DelayProxy>> DelayProxy::Start(std::string target,
                                                              absl::Duration delay) {
  std::unique_ptr<DelayProxy> proxy(new DelayProxy(std::move(target), delay));
  proxy->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (proxy->listen_fd_ < 0) return Errno("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(proxy->listen_fd_, 64) != 0 ||
      ::getsockname(proxy->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Errno("listen on 127.0.0.1");
  }
  proxy->address_ = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  proxy->acceptor_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

DelayProxy::~DelayProxy() {
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> pumps;
  std::vector<int> fds;
  {
    MutexLock lock(&mu_);
    pumps.swap(pumps_);
    fds.swap(fds_);
  }
  for (std::thread& t : pumps) t.join();
  for (int fd : fds) ::close(fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void DelayProxy::AcceptLoop() {
  while (!stopping_.load()) {
    if (!WaitReadable(listen_fd_)) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    absl::StatusOr<int> upstream = ConnectTo(target_);
    if (!upstream.ok()) {
      ::close(client);
      continue;
    }
    const int one = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    MutexLock lock(&mu_);
    fds_.push_back(client);
    fds_.push_back(*upstream);
    pumps_.emplace_back([this, client, up = *upstream] { Pump(client, up); });
    pumps_.emplace_back([this, client, up = *upstream] { Pump(up, client); });
  }
}

void DelayProxy::Pump(int from, int to) {
  char buffer[64 * 1024];
  while (!stopping_.load()) {
    if (!WaitReadable(from)) continue;
    const ssize_t n = ::read(from, buffer, sizeof(buffer));
    if (n <= 0) break;
    // Sleep in short steps so that the destructor is not held up by a long delay.
    const absl::Time release = absl::Now() + delay_;
    while (!stopping_.load() && absl::Now() < release) {
      absl::SleepFor(std::min(absl::Milliseconds(kPollMillis), release - absl::Now()));
    }
    for (ssize_t sent = 0; sent < n && !stopping_.load();) {
      const ssize_t w = ::send(to, buffer + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
      if (w <= 0) return;
      sent += w;
    }
  }
  // Pass the end of the stream on; the sockets are closed by the destructor.
  ::shutdown(to, SHUT_WR);
}

}  // namespace snapconf::testing
