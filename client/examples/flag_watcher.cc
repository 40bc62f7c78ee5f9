// client/examples/flag_watcher.cc
//
// Reads one flag in a hot loop from the local snapshot (no network, no lock per read) and
// prints each change it sees, plus every change callback. Runs for --run_for, then prints how
// many reads it made.
//
//   flag_watcher --endpoints=127.0.0.1:7070 --namespace=shared/feature-flags
//                --key=checkout.new_flow --run_for=30s
#include <cstdio>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/config_client.h"

ABSL_FLAG(std::string, endpoints, "127.0.0.1:7070", "Comma-separated host:port list.");
ABSL_FLAG(std::string, namespace, "shared/feature-flags", "Namespace of the flag.");
ABSL_FLAG(std::string, key, "checkout.new_flow", "Key of the flag.");
ABSL_FLAG(std::string, cache_dir, "", "Directory for the client's cache file (optional).");
ABSL_FLAG(absl::Duration, run_for, absl::Seconds(10), "How long to run.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  namespace sc = snapconf::client;
  absl::StatusOr<std::vector<std::string>> endpoints =
      sc::ParseEndpoints(absl::GetFlag(FLAGS_endpoints));
  if (!endpoints.ok()) {
    std::fprintf(stderr, "flag_watcher: %s\n", endpoints.status().ToString().c_str());
    return 2;
  }
  const std::string ns = absl::GetFlag(FLAGS_namespace);
  const std::string key = absl::GetFlag(FLAGS_key);
  sc::ConfigClientOptions options;
  options.endpoints = *endpoints;
  options.watches = {{ns, {key}}};
  options.cache_dir = absl::GetFlag(FLAGS_cache_dir);
  absl::StatusOr<sc::ConfigClient> client = sc::ConfigClient::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "flag_watcher: %s\n", client.status().ToString().c_str());
    return 2;
  }
  client->Subscribe(ns, key, [](const sc::ConfigChange& c) {
    std::printf("callback: rev %lld %s/%s -> %s\n", static_cast<long long>(c.revision),
                c.ns.c_str(), c.key.c_str(), c.after ? c.after->value.c_str() : "(deleted)");
    std::fflush(stdout);
  });
  const absl::Time end = absl::Now() + absl::GetFlag(FLAGS_run_for);
  if (absl::Status s = client->WaitUntilReady(end); !s.ok()) {
    std::fprintf(stderr, "flag_watcher: %s\n", s.ToString().c_str());
    return 1;
  }
  std::optional<std::string> last = client->Get(ns, key);
  std::printf("initial: %s = %s\n", key.c_str(), last ? last->c_str() : "(absent)");
  std::fflush(stdout);
  long long reads = 0;
  while (true) {
    // Check the clock only every 64k reads: the read itself costs nanoseconds.
    for (int i = 0; i < 65536; ++i, ++reads) {
      std::optional<std::string> now = client->Get(ns, key);
      if (now != last) {
        std::printf("changed: %s = %s (revision %lld)\n", key.c_str(),
                    now ? now->c_str() : "(absent)", static_cast<long long>(client->revision()));
        std::fflush(stdout);
        last = std::move(now);
      }
    }
    if (absl::Now() >= end) break;
  }
  const sc::ClientStatus status = client->Status();
  std::printf("done: %lld reads, revision %lld, stale %d\n", reads,
              static_cast<long long>(status.revision), status.stale ? 1 : 0);
  return 0;
}
