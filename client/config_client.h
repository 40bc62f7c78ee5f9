// client/config_client.h
//
// ConfigClient: the library services link to read their configuration. It keeps a local,
// immutable Snapshot (snapshot/snapshot.h) of the namespaces it watches, follows the server's
// Watch stream in DELIVERY_MODE_LATEST_STATE, and answers every read from that local copy: a
// Get never touches the network and never takes a lock (Publisher::Read).
//
// Overview
//   * One background thread runs the Watch stream. It applies resets (a new snapshot holding
//     exactly the reset's entries) and changes (Snapshot::Restore with the server's entries,
//     labelled with the message's revision), checks each message's after_revision against the
//     revision it holds (a mismatch drops the stream: a gap is never applied), and publishes
//     each message atomically. On any stream end it reconnects with exponential backoff and
//     full jitter, rotating across endpoints, and resumes at the held revision + 1.
//   * One callback thread runs change callbacks (in revision order, once per change) and
//     writes the cache file (at most once per second, and once more on shutdown).
//   * With a cache_dir, a valid cache for the same watches is served at once on start (ready,
//     stale) and the stream resumes from its revision + 1.
//
// Thread-safety contract
//   * Every const method and Subscribe/Unsubscribe may be called from any thread at once.
//   * Get/View/typed getters are lock-free (no mutex, no reference count on Get).
//   * Callbacks run on the callback thread, one at a time. Unsubscribe may be called from
//     inside a callback (also the running one). Called from any other thread, it returns only
//     after that subscription's running callback, if any, has finished; no call starts after.
//   * The destructor stops both threads; it must not run inside a callback.
//
// Invariants: revisions seen by readers never decrease while one server lineage is followed;
// a snapshot is published only whole (never half a message); callbacks see revisions in
// increasing order.
//
//   ConfigClientOptions options;
//   options.endpoints = {"10.0.0.1:7070", "10.0.0.2:7070"};
//   options.watches = {{"payments/prod", {}}};
//   options.cache_dir = "/var/cache/payments";
//   ASSIGN_OR_RETURN(ConfigClient client, ConfigClient::Create(options));
//   RETURN_IF_ERROR(client.WaitUntilReady(absl::Now() + absl::Seconds(5)));
//   int64_t pool = client.GetInt64Or("payments/prod", "db.pool.max", 16);
//   client.Subscribe("payments/prod", "db.", [](const ConfigChange& c) { ... });
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/admin_client.h"
#include "snapshot/snapshot.h"

namespace snapconf::client {

// ---------------------------------------------------------------------------
// Options.

struct ConfigChange;
using ChangeCallback = std::function<void(const ConfigChange&)>;

// A subscription in place before the stream starts, so it misses no update from the server
// (the first reset included; loading the cache fires no callbacks). Their ids are 1..n in
// order.
struct InitialSubscription {
  std::string ns;
  std::string key_prefix;
  ChangeCallback callback;
};

struct ConfigClientOptions {
  // "host:port" of each server; at least one. Reconnects rotate through them.
  std::vector<std::string> endpoints;
  // What to keep locally (WatchFilter from admin_client.h: a namespace and key prefixes, none
  // meaning every key); at least one, each namespace at most once.
  std::vector<WatchFilter> watches;
  // Directory of snapconf-cache.bin; empty disables the cache.
  std::string cache_dir;
  // Channel security (shared with AdminClient): insecure, or TLS with optional mutual TLS and
  // a bearer token.
  ChannelSecurity security;
  // How long one attempt may wait for a channel to connect before moving on.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Reconnect when an open stream delivers nothing (not even progress) for this long; zero
  // disables it. Set it above the server's --watch-progress-interval.
  absl::Duration stream_idle_timeout = absl::ZeroDuration();
  // Reconnect delay: uniform in [0, min(backoff_max, backoff_base * 2^attempt)].
  absl::Duration backoff_base = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(10);
  // Keepalive on each channel (matches the server's defaults).
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // See InitialSubscription.
  std::vector<InitialSubscription> subscriptions;
  // Test hook: sees each watch stream's create request (`is_create`) and every
  // message it delivers, as serialized snapconf.v1 WatchCreateRequest /
  // WatchResponse bytes, on the client's stream thread, before it is applied.
  // Lets tests run the watch contract checker on what the client received.
  std::function<void(bool is_create, const std::string& bytes)> stream_observer_for_test;
};

// ---------------------------------------------------------------------------
// Values.

// One stored value with the server's metadata.
struct ConfigEntry {
  std::string value;
  std::string content_type;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t version = 0;

  friend bool operator==(const ConfigEntry&, const ConfigEntry&) = default;
};

// One key's change as delivered to callbacks. `before` is absent for a create, `after` for a
// delete.
struct ConfigChange {
  std::string ns;
  std::string key;
  std::optional<ConfigEntry> before;
  std::optional<ConfigEntry> after;
  std::int64_t revision = 0;
};

struct ClientStatus {
  // The endpoint of the open stream; empty when disconnected.
  std::string endpoint;
  // Revision of the local snapshot (0 before any).
  std::int64_t revision = 0;
  // A snapshot is available (from the server or the cache).
  bool ready = false;
  // The local snapshot may be behind: served from the cache, or the stream is not synced.
  bool stale = true;
  // Last stream or connection error (OK if none yet).
  absl::Status last_error;
  // Streams opened so far.
  std::int64_t streams_opened = 0;
  // Resets applied so far (a full state replaced the local one).
  std::int64_t resets_applied = 0;
};

// Typed parsing shared by ConfigClient and View. NOT_FOUND when `value` is absent,
// INVALID_ARGUMENT naming "ns/key" and the text when it does not parse.
namespace config_parse {
absl::StatusOr<std::int64_t> Int64(std::string_view ns, std::string_view key,
                                   const std::optional<std::string>& value);
absl::StatusOr<double> Double(std::string_view ns, std::string_view key,
                              const std::optional<std::string>& value);
// true/false, yes/no, t/f, y/n, 1/0 (case-insensitive).
absl::StatusOr<bool> Bool(std::string_view ns, std::string_view key,
                          const std::optional<std::string>& value);
// absl::ParseDuration syntax: "250ms", "1.5s", "1h30m".
absl::StatusOr<absl::Duration> Duration(std::string_view ns, std::string_view key,
                                        const std::optional<std::string>& value);
// The raw text, validated as one JSON document.
absl::StatusOr<std::string> Json(std::string_view ns, std::string_view key,
                                 const std::optional<std::string>& value);
}  // namespace config_parse

// A pinned snapshot: many reads at one revision. Cheap to copy (shares the snapshot); keeps it
// alive for as long as the View lives, so do not hold one forever.
class View {
 public:
  explicit View(SnapshotPtr snapshot) : snapshot_(std::move(snapshot)) {}

  std::int64_t revision() const { return snapshot_->revision(); }
  std::optional<std::string> Get(std::string_view ns, std::string_view key) const;
  std::optional<ConfigEntry> GetEntry(std::string_view ns, std::string_view key) const;
  // Keys of `ns` starting with `prefix`, in order, with their values.
  std::vector<std::pair<std::string, std::string>> List(std::string_view ns,
                                                        std::string_view prefix = {}) const;

  absl::StatusOr<std::string> GetString(std::string_view ns, std::string_view key) const;
  absl::StatusOr<std::int64_t> GetInt64(std::string_view ns, std::string_view key) const;
  absl::StatusOr<double> GetDouble(std::string_view ns, std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view ns, std::string_view key) const;
  absl::StatusOr<absl::Duration> GetDuration(std::string_view ns, std::string_view key) const;

 private:
  SnapshotPtr snapshot_;
};

using SubscriptionId = std::int64_t;

class ConfigClient {
 public:
  // Validates the options, loads the cache (if any), and starts the background threads. Does
  // not wait for the server: see WaitUntilReady.
  static absl::StatusOr<ConfigClient> Create(ConfigClientOptions options);

  // Move-only: a copy would need a second stream and cache writer. A moved-from client may only
  // be destroyed or assigned to.
  ConfigClient(ConfigClient&&) noexcept;
  ConfigClient& operator=(ConfigClient&&) noexcept;
  ConfigClient(const ConfigClient&) = delete;
  ConfigClient& operator=(const ConfigClient&) = delete;
  // Stops the stream and the callback thread, and writes the cache once more if it changed.
  ~ConfigClient();

  // --- Reads (lock-free, local) ---
  std::optional<std::string> Get(std::string_view ns, std::string_view key) const;
  std::optional<ConfigEntry> GetEntry(std::string_view ns, std::string_view key) const;
  // Pins the current snapshot for consistent multi-key reads.
  View Snapshot() const;
  std::int64_t revision() const;

  absl::StatusOr<std::string> GetString(std::string_view ns, std::string_view key) const;
  absl::StatusOr<std::int64_t> GetInt64(std::string_view ns, std::string_view key) const;
  absl::StatusOr<double> GetDouble(std::string_view ns, std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view ns, std::string_view key) const;
  absl::StatusOr<absl::Duration> GetDuration(std::string_view ns, std::string_view key) const;
  absl::StatusOr<std::string> GetJson(std::string_view ns, std::string_view key) const;

  // The value, or `fallback` when absent or unparsable.
  std::string GetStringOr(std::string_view ns, std::string_view key,
                          std::string_view fallback) const;
  std::int64_t GetInt64Or(std::string_view ns, std::string_view key, std::int64_t fallback) const;
  double GetDoubleOr(std::string_view ns, std::string_view key, double fallback) const;
  bool GetBoolOr(std::string_view ns, std::string_view key, bool fallback) const;
  absl::Duration GetDurationOr(std::string_view ns, std::string_view key,
                               absl::Duration fallback) const;

  // --- Readiness ---
  // Blocks until a snapshot is available (server or cache). DEADLINE_EXCEEDED with the last
  // connection error otherwise.
  absl::Status WaitUntilReady(absl::Time deadline) const;
  // Blocks until the local revision is at least `revision`.
  absl::Status WaitForRevision(std::int64_t revision, absl::Time deadline) const;
  // Non-blocking.
  ClientStatus Status() const;

  // --- Change callbacks ---
  // Calls `callback` for every later change of a key in `ns` starting with `key_prefix`.
  // Changes already applied are not replayed.
  SubscriptionId Subscribe(std::string ns, std::string key_prefix, ChangeCallback callback);
  // Idempotent; see the thread-safety contract above.
  void Unsubscribe(SubscriptionId id);

  class Impl;

 private:
  explicit ConfigClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace snapconf::client
