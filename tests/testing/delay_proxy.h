// tests/testing/delay_proxy.h
//
// A loopback TCP proxy that holds every chunk of bytes for a fixed time before
// passing it on, in both directions: a slow link (high round-trip time) between
// a client and a real server, without touching either of them. Connection
// set-up (TCP, HTTP/2 and TLS handshakes) pays the delay on every round trip,
// which is what exposes connect timeouts that are too tight.
//
// Thread safety: the proxy runs its own threads; the object is used from one.
//
//   ASSERT_OK_AND_ASSIGN(auto proxy, DelayProxy::Start(server->address(),
//                                                      absl::Milliseconds(150)));
//   client options.endpoints = {proxy->address()};
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace snapconf::testing {

class DelayProxy {
 public:
  // Listens on 127.0.0.1 (a free port) and forwards to `target` ("127.0.0.1:PORT").
  static absl::StatusOr<std::unique_ptr<DelayProxy>> Start(std::string target,
                                                           absl::Duration delay);

  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;
  // Closes the listener and every forwarded connection, and joins the threads.
  ~DelayProxy();

  const std::string& address() const { return address_; }

 private:
  DelayProxy(std::string target, absl::Duration delay)
      : target_(std::move(target)), delay_(delay) {}

  void AcceptLoop();
  void Pump(int from, int to);

  const std::string target_;
  const absl::Duration delay_;
  std::string address_;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;
  Mutex mu_;
  std::vector<int> fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> pumps_ ABSL_GUARDED_BY(mu_);
};

}  // namespace snapconf::testing
