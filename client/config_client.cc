// client/config_client.cc
//
// Threads: the watch thread owns the stream and is the only writer of the Publisher (so
// Publish calls are serialized by construction); the callback thread drains the change queue
// and writes the cache. Both wait on one CondVar under mu_; readers never touch mu_.
#include "client/config_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/internal/config_cache.h"
#include "client/internal/retry_hint.h"
#include "common/mutex.h"
#include "nlohmann/json.hpp"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "snapshot/publisher.h"

namespace snapconf::client {
namespace {

std::chrono::system_clock::time_point ToChrono(absl::Time t) {
  if (t == absl::InfiniteFuture()) return std::chrono::system_clock::time_point::max();
  return absl::ToChronoTime(t);
}

ConfigEntry ToConfigEntry(const snapconf::Entry& e) {
  return ConfigEntry{e.value, e.content_type, e.create_revision, e.mod_revision, e.version};
}

std::optional<ConfigEntry> ToOptional(const EntryPtr& e) {
  if (e == nullptr) return std::nullopt;
  return ToConfigEntry(*e);
}

EntryPtr FromProto(const v1::Entry& e) {
  return std::make_shared<const snapconf::Entry>(snapconf::Entry{
      e.value(), e.content_type(), e.create_revision(), e.mod_revision(), e.version()});
}

std::string Quote(const std::string& text) {
  // Long values are cut in error messages: the key already says where to look.
  constexpr size_t kMax = 64;
  if (text.size() <= kMax) return absl::StrCat("\"", text, "\"");
  return absl::StrCat("\"", text.substr(0, kMax), "...\" (", text.size(), " bytes)");
}

absl::Status NotFound(std::string_view ns, std::string_view key) {
  return absl::NotFoundError(absl::StrCat(std::string(ns), "/", std::string(key), " not found"));
}

absl::Status Unparsable(std::string_view ns, std::string_view key, const std::string& text,
                        std::string_view type) {
  return absl::InvalidArgumentError(absl::StrCat(std::string(ns), "/", std::string(key),
                                                 ": cannot parse ", Quote(text), " as ",
                                                 std::string(type)));
}

std::optional<std::string> ReadValue(const Snapshot& s, std::string_view ns, std::string_view key) {
  const snapconf::Entry* e = s.Find(ns, key);
  if (e == nullptr) return std::nullopt;
  return e->value;
}

}  // namespace

// ---------------------------------------------------------------------------
// Parsing.

namespace config_parse {

absl::StatusOr<std::int64_t> Int64(std::string_view ns, std::string_view key,
                                   const std::optional<std::string>& value) {
  if (!value) return NotFound(ns, key);
  std::int64_t out = 0;
  if (!absl::SimpleAtoi(*value, &out)) return Unparsable(ns, key, *value, "int64");
  return out;
}

absl::StatusOr<double> Double(std::string_view ns, std::string_view key,
                              const std::optional<std::string>& value) {
  if (!value) return NotFound(ns, key);
  double out = 0;
  if (!absl::SimpleAtod(*value, &out)) return Unparsable(ns, key, *value, "double");
  return out;
}

absl::StatusOr<bool> Bool(std::string_view ns, std::string_view key,
                          const std::optional<std::string>& value) {
  if (!value) return NotFound(ns, key);
  bool out = false;
  if (!absl::SimpleAtob(*value, &out)) return Unparsable(ns, key, *value, "bool");
  return out;
}

absl::StatusOr<absl::Duration> Duration(std::string_view ns, std::string_view key,
                                        const std::optional<std::string>& value) {
  if (!value) return NotFound(ns, key);
  absl::Duration out;
  if (!absl::ParseDuration(std::string(absl::StripAsciiWhitespace(*value)), &out)) {
    return Unparsable(ns, key, *value, "duration");
  }
  return out;
}

absl::StatusOr<std::string> Json(std::string_view ns, std::string_view key,
                                 const std::optional<std::string>& value) {
  if (!value) return NotFound(ns, key);
  if (!nlohmann::json::accept(*value)) return Unparsable(ns, key, *value, "JSON");
  return *value;
}

}  // namespace config_parse

// ---------------------------------------------------------------------------
// View.

std::optional<std::string> View::Get(std::string_view ns, std::string_view key) const {
  return ReadValue(*snapshot_, ns, key);
}
std::optional<ConfigEntry> View::GetEntry(std::string_view ns, std::string_view key) const {
  const snapconf::Entry* e = snapshot_->Find(ns, key);
  if (e == nullptr) return std::nullopt;
  return ToConfigEntry(*e);
}
std::vector<std::pair<std::string, std::string>> View::List(std::string_view ns,
                                                            std::string_view prefix) const {
  std::vector<std::pair<std::string, std::string>> out;
  snapshot_->Scan(ns, prefix, "", 0, [&](std::string_view key, const EntryPtr& e) {
    out.emplace_back(std::string(key), e->value);
    return true;
  });
  return out;
}
absl::StatusOr<std::string> View::GetString(std::string_view ns, std::string_view key) const {
  std::optional<std::string> v = Get(ns, key);
  if (!v) return NotFound(ns, key);
  return *std::move(v);
}
absl::StatusOr<std::int64_t> View::GetInt64(std::string_view ns, std::string_view key) const {
  return config_parse::Int64(ns, key, Get(ns, key));
}
absl::StatusOr<double> View::GetDouble(std::string_view ns, std::string_view key) const {
  return config_parse::Double(ns, key, Get(ns, key));
}
absl::StatusOr<bool> View::GetBool(std::string_view ns, std::string_view key) const {
  return config_parse::Bool(ns, key, Get(ns, key));
}
absl::StatusOr<absl::Duration> View::GetDuration(std::string_view ns, std::string_view key) const {
  return config_parse::Duration(ns, key, Get(ns, key));
}

// ---------------------------------------------------------------------------
// Impl.

class ConfigClient::Impl {
 public:
  Impl(ConfigClientOptions options, SnapshotPtr initial, bool from_cache)
      : options_subscriptions_(std::move(options.subscriptions)),
        options_(std::move(options)),
        watches_(internal::CanonicalWatches(options_.watches)),
        publisher_(std::move(initial)),
        ready_(from_cache),
        has_state_(from_cache),
        held_revision_(publisher_.revision()),
        rng_(std::random_device{}()) {
    BuildChannels();
    {
      MutexLock lock(&mu_);
      for (InitialSubscription& sub : options_subscriptions_) {
        subscriptions_.emplace(++next_subscription_id_,
                               std::make_shared<Subscription>(
                                   Subscription{sub.ns, sub.key_prefix, std::move(sub.callback)}));
      }
    }
    watch_thread_ = std::thread([this] { WatchLoop(); });
    callback_thread_ = std::thread([this] { CallbackLoop(); });
  }

  ~Impl() {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
      if (stream_ctx_ != nullptr) stream_ctx_->TryCancel();
      cv_.SignalAll();
    }
    watch_thread_.join();
    callback_thread_.join();
  }

  const Publisher& publisher() const { return publisher_; }

  absl::Status WaitUntilReady(absl::Time deadline) {
    MutexLock lock(&mu_);
    while (!ready_) {
      if (!cv_.WaitUntil(&mu_, ToChrono(deadline)) && absl::Now() >= deadline) break;
    }
    if (ready_) return absl::OkStatus();
    return absl::DeadlineExceededError(
        absl::StrCat("no configuration yet; last error: ", last_error_.ToString()));
  }

  absl::Status WaitForRevision(std::int64_t revision, absl::Time deadline) {
    MutexLock lock(&mu_);
    while (publisher_.revision() < revision) {
      if (!cv_.WaitUntil(&mu_, ToChrono(deadline)) && absl::Now() >= deadline) break;
    }
    if (publisher_.revision() >= revision) return absl::OkStatus();
    return absl::DeadlineExceededError(absl::StrCat("revision ", publisher_.revision(), " < ",
                                                    revision,
                                                    "; last error: ", last_error_.ToString()));
  }

  ClientStatus Status() {
    MutexLock lock(&mu_);
    ClientStatus s;
    s.endpoint = connected_endpoint_;
    s.revision = publisher_.revision();
    s.ready = ready_;
    s.stale = !synced_;
    s.last_error = last_error_;
    s.streams_opened = streams_opened_;
    s.resets_applied = resets_applied_;
    return s;
  }

  SubscriptionId Subscribe(std::string ns, std::string prefix, ChangeCallback cb) {
    MutexLock lock(&mu_);
    const SubscriptionId id = ++next_subscription_id_;
    subscriptions_.emplace(id, std::make_shared<Subscription>(
                                   Subscription{std::move(ns), std::move(prefix), std::move(cb)}));
    return id;
  }

  void Unsubscribe(SubscriptionId id) {
    MutexLock lock(&mu_);
    subscriptions_.erase(id);
    // From another thread, wait out a running call of this subscription so the caller may
    // destroy what the callback uses. From the callback thread itself this would deadlock,
    // and is unnecessary: the erase already prevents later calls.
    if (std::this_thread::get_id() == callback_thread_.get_id()) return;
    while (running_subscription_ == id) cv_.Wait(&mu_);
  }

 private:
  struct Subscription {
    std::string ns;
    std::string prefix;
    ChangeCallback callback;
  };

  struct Endpoint {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::WatchService::Stub> stub;
  };

  void BuildChannels() {
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (options_.security.mode == ChannelSecurity::Mode::kTls) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = options_.security.root_certs_pem;
      ssl.pem_cert_chain = options_.security.client_cert_chain_pem;
      ssl.pem_private_key = options_.security.client_private_key_pem;
      creds = grpc::SslCredentials(ssl);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_timeout)));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    // gRPC's own subchannel backoff (default up to 120 s) would hide a restarted server from
    // our reconnect loop; keep it within our own backoff bounds.
    const int base_ms =
        static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(options_.backoff_base)));
    const int max_ms = static_cast<int>(
        std::max<int64_t>(base_ms, absl::ToInt64Milliseconds(options_.backoff_max)));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, base_ms);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_ms);
    // gRPC reads this argument as the least time one connection attempt (TCP, TLS and HTTP/2
    // handshakes) is allowed, not as a retry spacing: set to the backoff it aborted every
    // handshake slower than 100 ms, so a loaded host or a distant server could never connect.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                static_cast<int>(
                    std::max<int64_t>(1000, absl::ToInt64Milliseconds(options_.connect_timeout))));
    for (const std::string& address : options_.endpoints) {
      Endpoint ep;
      ep.address = address;
      ep.channel = grpc::CreateCustomChannel(address, creds, args);
      ep.stub = v1::WatchService::NewStub(ep.channel);
      endpoints_.push_back(std::move(ep));
    }
  }

  // --- Watch thread ---

  void WatchLoop() {
    size_t index = 0;
    int attempt = 0;
    while (true) {
      bool progressed = false;
      absl::Status status = RunStream(endpoints_[index], progressed);
      {
        MutexLock lock(&mu_);
        connected_endpoint_.clear();
        synced_ = false;
        if (stopping_) return;
        last_error_ = status;
      }
      if (progressed) attempt = 0;
      // A server that refused the stream for a limit says how long to wait.
      const absl::Duration delay = std::max(Backoff(attempt), std::exchange(retry_hint_, {}));
      attempt = std::min(attempt + 1, 30);
      index = (index + 1) % endpoints_.size();
      MutexLock lock(&mu_);
      const absl::Time until = absl::Now() + delay;
      while (!stopping_ && absl::Now() < until) cv_.WaitUntil(&mu_, ToChrono(until));
      if (stopping_) return;
    }
  }

  absl::Duration Backoff(int attempt) {
    absl::Duration cap = options_.backoff_base;
    for (int i = 0; i < attempt && cap < options_.backoff_max; ++i) cap *= 2;
    cap = std::min(cap, options_.backoff_max);
    std::uniform_int_distribution<int64_t> dist(
        0, std::max<int64_t>(0, absl::ToInt64Microseconds(cap)));
    return absl::Microseconds(dist(rng_));
  }

  bool Stopping() {
    MutexLock lock(&mu_);
    return stopping_;
  }

  absl::Status RunStream(Endpoint& ep, bool& progressed) {
    // Wait for the channel in short slices so shutdown is never delayed by a dead endpoint.
    const absl::Time connect_deadline = absl::Now() + options_.connect_timeout;
    while (!ep.channel->WaitForConnected(
        ToChrono(std::min(connect_deadline, absl::Now() + absl::Milliseconds(100))))) {
      if (Stopping()) return absl::CancelledError("shutting down");
      // A refused or unreachable endpoint fails at once: try the next one instead of waiting
      // out the whole connect timeout.
      if (ep.channel->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
        return absl::UnavailableError(absl::StrCat("cannot connect to ", ep.address));
      }
      if (absl::Now() >= connect_deadline) {
        return absl::UnavailableError(absl::StrCat("cannot connect to ", ep.address, " within ",
                                                   absl::FormatDuration(options_.connect_timeout)));
      }
    }
    auto ctx = std::make_shared<grpc::ClientContext>();
    if (!options_.security.bearer_token.empty()) {
      ctx->AddMetadata("authorization", absl::StrCat("Bearer ", options_.security.bearer_token));
    }
    {
      MutexLock lock(&mu_);
      if (stopping_) return absl::CancelledError("shutting down");
      stream_ctx_ = ctx;
      ++streams_opened_;
      last_message_ = absl::Now();
    }
    std::unique_ptr<grpc::ClientReaderWriter<v1::WatchRequest, v1::WatchResponse>> stream =
        ep.stub->Watch(ctx.get());
    v1::WatchRequest create;
    auto* c = create.mutable_create();
    for (const WatchFilter& w : watches_) {
      auto* f = c->add_filters();
      f->set_namespace_(w.ns);
      for (const std::string& p : w.prefixes) f->add_prefixes(p);
    }
    c->set_start_revision(has_state_ ? held_revision_ + 1 : 0);
    c->set_mode(v1::DELIVERY_MODE_LATEST_STATE);
    v1::WatchRequest progress;
    progress.mutable_progress();
    // The progress request makes a caught-up stream say so at once: that is when a client
    // resumed from its cache stops being stale.
    absl::Status error;
    if (options_.stream_observer_for_test) {
      options_.stream_observer_for_test(true, create.create().SerializeAsString());
    }
    if (stream->Write(create) && stream->Write(progress)) {
      {
        MutexLock lock(&mu_);
        connected_endpoint_ = ep.address;
      }
      std::vector<RawEntry> reset_entries;
      bool in_reset = false;
      v1::WatchResponse resp;
      while (stream->Read(&resp)) {
        {
          MutexLock lock(&mu_);
          last_message_ = absl::Now();
        }
        if (options_.stream_observer_for_test) {
          options_.stream_observer_for_test(false, resp.SerializeAsString());
        }
        error = Handle(resp, reset_entries, in_reset);
        if (!error.ok()) break;
        progressed = true;
      }
    }
    // Only a stream we stop reading needs cancelling. One that ended by itself
    // (a failed write means that too) keeps the server's status: cancelling it
    // would turn a refusal and its retry hint into CANCELLED.
    if (!error.ok()) ctx->TryCancel();
    v1::WatchResponse drain;
    while (stream->Read(&drain)) {
    }
    const grpc::Status finish = stream->Finish();
    if (finish.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      retry_hint_ = internal::RetryAfterHint(*ctx).value_or(absl::ZeroDuration());
    }
    bool idle = false;
    {
      MutexLock lock(&mu_);
      stream_ctx_.reset();
      idle = std::exchange(idle_cancelled_, false);
    }
    if (idle) {
      return absl::DeadlineExceededError(
          absl::StrCat(ep.address, ": no message for ",
                       absl::FormatDuration(options_.stream_idle_timeout), "; reconnecting"));
    }
    if (!error.ok()) return error;
    return absl::Status(static_cast<absl::StatusCode>(finish.error_code()),
                        absl::StrCat(ep.address, ": ", finish.error_message()));
  }

  absl::Status Handle(const v1::WatchResponse& resp, std::vector<RawEntry>& reset_entries,
                      bool& in_reset) {
    switch (resp.response_case()) {
      case v1::WatchResponse::kReset: {
        const v1::WatchReset& r = resp.reset();
        in_reset = true;
        for (const v1::Entry& e : r.entries()) {
          reset_entries.push_back(RawEntry{e.namespace_(), e.key(), FromProto(e)});
        }
        if (r.more()) return absl::OkStatus();
        in_reset = false;
        SnapshotBuilder builder;
        builder.Reserve(reset_entries.size());
        for (RawEntry& e : reset_entries) {
          builder.Add(std::move(e.ns), std::move(e.key), std::move(e.entry));
        }
        reset_entries.clear();
        SnapshotPtr next = std::move(builder).Build(r.revision());
        const SnapshotPtr old = publisher_.Pin();
        std::vector<ConfigChange> changes;
        // Only keys that really differ fire callbacks (Diff skips equal entries).
        for (EntryChange& d : Diff(*old, *next)) {
          changes.push_back(ConfigChange{std::move(d.ns), std::move(d.key), ToOptional(d.before),
                                         ToOptional(d.after), r.revision()});
        }
        {
          MutexLock lock(&mu_);
          ++resets_applied_;
        }
        Install(std::move(next), std::move(changes), /*synced=*/false);
        return absl::OkStatus();
      }
      case v1::WatchResponse::kChanges: {
        if (in_reset) return absl::InternalError("changes inside an unfinished reset");
        const v1::WatchChanges& m = resp.changes();
        if (!has_state_ || m.after_revision() != held_revision_) {
          return absl::DataLossError(absl::StrCat("gap: holding revision ", held_revision_,
                                                  ", message continues from ", m.after_revision()));
        }
        SnapshotPtr cur = publisher_.Pin();
        std::vector<ConfigChange> changes;
        std::vector<RawEntry> raw;
        for (const v1::RevisionChanges& rc : m.revisions()) {
          raw.clear();
          for (const v1::Change& ch : rc.changes()) {
            EntryPtr after = ch.has_after() ? FromProto(ch.after()) : nullptr;
            changes.push_back(ConfigChange{ch.namespace_(), ch.key(),
                                           ToOptional(cur->FindShared(ch.namespace_(), ch.key())),
                                           ToOptional(after), rc.revision()});
            raw.push_back(RawEntry{ch.namespace_(), ch.key(), std::move(after)});
          }
          cur = cur->Restore(raw, rc.revision());
        }
        if (cur->revision() != m.revision()) cur = cur->Restore({}, m.revision());
        Install(std::move(cur), std::move(changes), /*synced=*/false);
        return absl::OkStatus();
      }
      case v1::WatchResponse::kProgress: {
        if (in_reset) return absl::InternalError("progress inside an unfinished reset");
        const std::int64_t rev = resp.progress().revision();
        if (!has_state_) return absl::OkStatus();
        SnapshotPtr cur = publisher_.Pin();
        // Every matching change up to `rev` is here: relabel so WaitForRevision and resume
        // points move past revisions that touched other namespaces.
        if (rev > cur->revision()) {
          Install(cur->Restore({}, rev), {}, /*synced=*/true);
        } else {
          Install(nullptr, {}, /*synced=*/true);
        }
        return absl::OkStatus();
      }
      default:
        return absl::InternalError("unknown watch response");
    }
  }

  // Publishes `next` (if any) and queues its callbacks; watch thread only.
  void Install(SnapshotPtr next, std::vector<ConfigChange> changes, bool synced) {
    const bool published = next != nullptr;
    if (published) {
      held_revision_ = next->revision();
      has_state_ = true;
      publisher_.Publish(std::move(next));
    }
    MutexLock lock(&mu_);
    if (!published && !synced) return;
    ready_ = true;
    if (synced) synced_ = true;
    cache_dirty_ = cache_dirty_ || (published && !options_.cache_dir.empty());
    for (ConfigChange& c : changes) pending_.push_back(std::move(c));
    cv_.SignalAll();
  }

  // --- Callback thread ---

  void CallbackLoop() {
    absl::Time last_cache_write = absl::InfinitePast();
    MutexLock lock(&mu_);
    while (true) {
      if (!pending_.empty()) {
        ConfigChange change = std::move(pending_.front());
        pending_.pop_front();
        Dispatch(change);
        continue;
      }
      const absl::Time now = absl::Now();
      if (cache_dirty_ && (stopping_ || now >= last_cache_write + absl::Seconds(1))) {
        cache_dirty_ = false;
        mu_.Unlock();
        WriteCache();
        mu_.Lock();
        last_cache_write = absl::Now();
        continue;
      }
      if (stopping_) return;
      CheckIdleStream(now);
      absl::Time wake = now + absl::Milliseconds(200);
      if (cache_dirty_) wake = std::min(wake, last_cache_write + absl::Seconds(1));
      cv_.WaitUntil(&mu_, ToChrono(wake));
    }
  }

  void CheckIdleStream(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (options_.stream_idle_timeout <= absl::ZeroDuration() || stream_ctx_ == nullptr) return;
    if (now - last_message_ > options_.stream_idle_timeout) {
      idle_cancelled_ = true;
      stream_ctx_->TryCancel();
      last_message_ = now;
    }
  }

  // Runs the matching callbacks of one change with mu_ released around each call.
  void Dispatch(const ConfigChange& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::pair<SubscriptionId, std::shared_ptr<Subscription>>> matching;
    for (const auto& [id, sub] : subscriptions_) {
      if (sub->ns == change.ns && absl::StartsWith(change.key, sub->prefix)) {
        matching.emplace_back(id, sub);
      }
    }
    for (const auto& [id, sub] : matching) {
      // Unsubscribed by an earlier callback of this change: skip it.
      if (subscriptions_.find(id) == subscriptions_.end()) continue;
      running_subscription_ = id;
      mu_.Unlock();
      sub->callback(change);
      mu_.Lock();
      running_subscription_ = 0;
      cv_.SignalAll();
    }
  }

  void WriteCache() {
    const SnapshotPtr snap = publisher_.Pin();
    absl::Status s =
        internal::WriteCacheFile(options_.cache_dir, internal::EncodeCache(watches_, *snap));
    if (!s.ok()) {
      std::fprintf(stderr, "snapconf client: cannot write cache in %s: %s\n",
                   options_.cache_dir.c_str(), s.ToString().c_str());
    }
  }

  std::vector<InitialSubscription> options_subscriptions_;  // moved out before options_
  const ConfigClientOptions options_;
  const std::vector<WatchFilter> watches_;  // canonical
  std::vector<Endpoint> endpoints_;
  Publisher publisher_;

  mutable Mutex mu_;
  mutable CondVar cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool ready_ ABSL_GUARDED_BY(mu_);
  bool synced_ ABSL_GUARDED_BY(mu_) = false;
  bool cache_dirty_ ABSL_GUARDED_BY(mu_) = false;
  std::string connected_endpoint_ ABSL_GUARDED_BY(mu_);
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  std::int64_t streams_opened_ ABSL_GUARDED_BY(mu_) = 0;
  std::int64_t resets_applied_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_message_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::ClientContext> stream_ctx_ ABSL_GUARDED_BY(mu_);
  bool idle_cancelled_ ABSL_GUARDED_BY(mu_) = false;  // the watchdog cancelled stream_ctx_
  std::deque<ConfigChange> pending_ ABSL_GUARDED_BY(mu_);
  std::map<SubscriptionId, std::shared_ptr<Subscription>> subscriptions_ ABSL_GUARDED_BY(mu_);
  SubscriptionId next_subscription_id_ ABSL_GUARDED_BY(mu_) = 0;
  SubscriptionId running_subscription_ ABSL_GUARDED_BY(mu_) = 0;

  // Watch thread only.
  bool has_state_;
  std::int64_t held_revision_;
  std::mt19937_64 rng_;
  absl::Duration retry_hint_;  // from the last stream's end, if it carried one

  std::thread watch_thread_;
  std::thread callback_thread_;
};

// ---------------------------------------------------------------------------
// ConfigClient.

absl::StatusOr<ConfigClient> ConfigClient::Create(ConfigClientOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("no endpoints");
  if (options.watches.empty()) return absl::InvalidArgumentError("no watches");
  std::vector<std::string> seen;
  for (const WatchFilter& w : options.watches) {
    if (w.ns.empty()) return absl::InvalidArgumentError("empty namespace in watches");
    if (std::find(seen.begin(), seen.end(), w.ns) != seen.end()) {
      return absl::InvalidArgumentError(absl::StrCat("namespace ", w.ns, " watched twice"));
    }
    seen.push_back(w.ns);
  }
  if (options.security.mode == ChannelSecurity::Mode::kInsecure &&
      !options.security.bearer_token.empty()) {
    return absl::InvalidArgumentError("a bearer token needs TLS");
  }
  if (options.backoff_base <= absl::ZeroDuration() || options.backoff_max < options.backoff_base) {
    return absl::InvalidArgumentError("need 0 < backoff_base <= backoff_max");
  }
  SnapshotPtr initial = snapconf::Snapshot::Empty();
  bool from_cache = false;
  if (!options.cache_dir.empty()) {
    absl::StatusOr<std::string> bytes = internal::ReadCacheFile(options.cache_dir);
    if (bytes.ok()) {
      absl::StatusOr<SnapshotPtr> decoded =
          internal::DecodeCache(*bytes, internal::CanonicalWatches(options.watches));
      if (decoded.ok()) {
        initial = *std::move(decoded);
        from_cache = true;
      } else {
        std::fprintf(stderr, "snapconf client: ignoring cache file in %s: %s\n",
                     options.cache_dir.c_str(), decoded.status().ToString().c_str());
      }
    } else if (!absl::IsNotFound(bytes.status())) {
      std::fprintf(stderr, "snapconf client: ignoring cache file: %s\n",
                   bytes.status().ToString().c_str());
    }
  }
  return ConfigClient(std::make_unique<Impl>(std::move(options), std::move(initial), from_cache));
}

ConfigClient::ConfigClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConfigClient::ConfigClient(ConfigClient&&) noexcept = default;
ConfigClient& ConfigClient::operator=(ConfigClient&&) noexcept = default;
ConfigClient::~ConfigClient() = default;

std::optional<std::string> ConfigClient::Get(std::string_view ns, std::string_view key) const {
  return impl_->publisher().Read(
      [&](const snapconf::Snapshot& s) { return ReadValue(s, ns, key); });
}

std::optional<ConfigEntry> ConfigClient::GetEntry(std::string_view ns, std::string_view key) const {
  return impl_->publisher().Read([&](const snapconf::Snapshot& s) -> std::optional<ConfigEntry> {
    const snapconf::Entry* e = s.Find(ns, key);
    if (e == nullptr) return std::nullopt;
    return ToConfigEntry(*e);
  });
}

View ConfigClient::Snapshot() const { return View(impl_->publisher().Pin()); }
std::int64_t ConfigClient::revision() const { return impl_->publisher().revision(); }

absl::StatusOr<std::string> ConfigClient::GetString(std::string_view ns,
                                                    std::string_view key) const {
  std::optional<std::string> v = Get(ns, key);
  if (!v) return NotFound(ns, key);
  return *std::move(v);
}
absl::StatusOr<std::int64_t> ConfigClient::GetInt64(std::string_view ns,
                                                    std::string_view key) const {
  return config_parse::Int64(ns, key, Get(ns, key));
}
absl::StatusOr<double> ConfigClient::GetDouble(std::string_view ns, std::string_view key) const {
  return config_parse::Double(ns, key, Get(ns, key));
}
absl::StatusOr<bool> ConfigClient::GetBool(std::string_view ns, std::string_view key) const {
  return config_parse::Bool(ns, key, Get(ns, key));
}
absl::StatusOr<absl::Duration> ConfigClient::GetDuration(std::string_view ns,
                                                         std::string_view key) const {
  return config_parse::Duration(ns, key, Get(ns, key));
}
absl::StatusOr<std::string> ConfigClient::GetJson(std::string_view ns, std::string_view key) const {
  return config_parse::Json(ns, key, Get(ns, key));
}

std::string ConfigClient::GetStringOr(std::string_view ns, std::string_view key,
                                      std::string_view fallback) const {
  std::optional<std::string> v = Get(ns, key);
  return v ? *std::move(v) : std::string(fallback);
}
std::int64_t ConfigClient::GetInt64Or(std::string_view ns, std::string_view key,
                                      std::int64_t fallback) const {
  return GetInt64(ns, key).value_or(fallback);
}
double ConfigClient::GetDoubleOr(std::string_view ns, std::string_view key, double fallback) const {
  return GetDouble(ns, key).value_or(fallback);
}
bool ConfigClient::GetBoolOr(std::string_view ns, std::string_view key, bool fallback) const {
  return GetBool(ns, key).value_or(fallback);
}
absl::Duration ConfigClient::GetDurationOr(std::string_view ns, std::string_view key,
                                           absl::Duration fallback) const {
  return GetDuration(ns, key).value_or(fallback);
}

absl::Status ConfigClient::WaitUntilReady(absl::Time deadline) const {
  return impl_->WaitUntilReady(deadline);
}
absl::Status ConfigClient::WaitForRevision(std::int64_t revision, absl::Time deadline) const {
  return impl_->WaitForRevision(revision, deadline);
}
ClientStatus ConfigClient::Status() const { return impl_->Status(); }

SubscriptionId ConfigClient::Subscribe(std::string ns, std::string key_prefix,
                                       ChangeCallback callback) {
  return impl_->Subscribe(std::move(ns), std::move(key_prefix), std::move(callback));
}
void ConfigClient::Unsubscribe(SubscriptionId id) { impl_->Unsubscribe(id); }

}  // namespace snapconf::client
