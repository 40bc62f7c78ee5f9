// service/store/etcd/etcd_store.h
//
// EtcdStore implements Store over etcd's v3 gRPC API (KV Range/Txn, Watch),
// so several snapconfd replicas can share one etcd cluster. Decisions and
// their reasons: docs/adr/004-etcd-store.md.
//
// How it works:
//   * Start() reads every key under the prefix at one etcd revision L (one
//     linearizable Range, paged at that revision) and returns the snapshot at
//     L. A watcher thread then watches the prefix from L + 1 and turns each
//     etcd revision that carries snapconf's metadata key into one
//     CommitRecord, applied to the previous snapshot and handed to the
//     listener in order. Snapshots come ONLY from this stream, this replica's
//     own writes included, so every replica passes through the same revisions.
//   * A write is evaluated against this replica's newest snapshot S with the
//     shared CheckCompare, then sent as one etcd Txn whose compares guard that
//     S is still current for everything the decision read: mod_revision of
//     every compared and every written key, and of the marker of every
//     compared namespace. If a guard fails, the replica waits until its
//     snapshot reached the Txn's revision and decides again. Two replicas
//     racing therefore behave as one server: exactly one wins.
//   * The write completes when the watch stream delivered the revision that
//     carries the write's Txn id (the listener has seen it), or, after a
//     reload skipped over it, when the reload's revision covers it.
//   * Revisions are etcd's: they only increase, but may skip numbers when
//     something else writes to the same etcd cluster.
//   * A broken watch resumes from the next revision. When etcd compacted past
//     it, the store reloads at a new revision and calls OnReloaded.
//   * History (ReadHistory) is read back from etcd's MVCC history, so
//     retention is etcd's compaction: oldest_revision() is the compacted
//     revision + 1 (learned from etcd, refreshed when a read meets it).
//   * While the watch cannot be (re)established (for more than a second),
//     Health() reports UNAVAILABLE with the time since; writes answer
//     UNAVAILABLE once that lasted --etcd-request-timeout; reads are served
//     from the last snapshot throughout, and Staleness() says for how long.
//
// Thread safety: every Store method may be called from any thread. Listener
// calls and commit callbacks run on the watcher thread (or a gRPC callback
// thread for failures), one listener call at a time.
//
//   EtcdStoreOptions options;
//   options.endpoints = {"127.0.0.1:2379"};
//   ASSIGN_OR_RETURN(std::unique_ptr<EtcdStore> store, OpenEtcdStore(options));
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/store/store.h"

namespace snapconf {

struct EtcdStoreOptions {
  std::vector<std::string> endpoints;  // host:port of etcd members
  std::string prefix = "/snapconf/";
  // TLS for the etcd connection: all empty means plaintext. A CA alone
  // verifies the server; cert and key together authenticate this client.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // Bound of one write (all its etcd attempts) and of one etcd call.
  absl::Duration request_timeout = absl::Seconds(5);
  // How long Start() keeps trying to reach etcd.
  absl::Duration start_timeout = absl::Seconds(20);
};

class EtcdStore : public Store {
 public:
  ~EtcdStore() override = default;

  // The page-token key shared by every replica: read from etcd, or created
  // there from `candidate` when absent.
  virtual absl::StatusOr<std::string> SharedTokenKey(const std::string& candidate) = 0;
};

// Connects (lazily) to etcd; Start() does the first round trip.
absl::StatusOr<std::unique_ptr<EtcdStore>> OpenEtcdStore(const EtcdStoreOptions& options);

}  // namespace snapconf
