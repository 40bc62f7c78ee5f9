#include "tests/watch/contract_checker.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "snapconf/v1/config_service.grpc.pb.h"

namespace snapconf::watch_testing {
namespace {

bool SameEntry(const v1::Entry& a, const v1::Entry& b) {
  return a.value() == b.value() && a.content_type() == b.content_type() &&
         a.create_revision() == b.create_revision() && a.mod_revision() == b.mod_revision() &&
         a.version() == b.version();
}

// Same key and same outcome (after entry, or deletion); `before` too when asked.
bool SameChange(const v1::Change& a, const v1::Change& b, bool with_before) {
  if (a.namespace_() != b.namespace_() || a.key() != b.key()) return false;
  if (a.has_after() != b.has_after()) return false;
  if (a.has_after() && !SameEntry(a.after(), b.after())) return false;
  if (with_before) {
    if (a.has_before() != b.has_before()) return false;
    if (a.has_before() && !SameEntry(a.before(), b.before())) return false;
  }
  return true;
}

std::string KeyName(const std::string& ns, const std::string& key) {
  return absl::StrCat(ns, "/", key);
}

}  // namespace

const char* ViolationName(Violation v) {
  switch (v) {
    case Violation::kFilter:
      return "filter";
    case Violation::kOrdered:
      return "ordered";
    case Violation::kUnique:
      return "unique";
    case Violation::kAtomic:
      return "atomic";
    case Violation::kReliable:
      return "reliable";
    case Violation::kResumable:
      return "resumable";
    case Violation::kBookmark:
      return "bookmarkable";
    case Violation::kResetState:
      return "reset_state";
    case Violation::kProtocol:
      return "protocol";
  }
  return "?";
}

void WatchTrace::Start(const v1::WatchCreateRequest& create) {
  WatchEvent e;
  e.is_start = true;
  e.create = create;
  events_.push_back(std::move(e));
}

void WatchTrace::Receive(const v1::WatchResponse& response) {
  WatchEvent e;
  e.response = response;
  events_.push_back(std::move(e));
}

bool FilterMatches(const v1::WatchCreateRequest& create, const std::string& ns,
                   const std::string& key) {
  for (const v1::WatchFilter& f : create.filters()) {
    if (f.namespace_() != ns) continue;
    if (f.prefixes_size() == 0) return true;
    for (const std::string& p : f.prefixes()) {
      if (key.compare(0, p.size(), p) == 0) return true;
    }
  }
  return false;
}

ContractChecker::ContractChecker(const std::vector<v1::ChangeRecord>& history) {
  for (const v1::ChangeRecord& r : history) {
    records_[r.revision()] = r;
    head_ = std::max<int64_t>(head_, r.revision());
  }
  for (const auto& [revision, record] : records_) {
    for (const v1::Change& c : record.changes()) {
      timeline_[{c.namespace_(), c.key()}].push_back({revision, c});
    }
  }
}

std::vector<v1::Change> ContractChecker::MatchingChanges(
    int64_t revision, const v1::WatchCreateRequest& create) const {
  std::vector<v1::Change> out;
  auto it = records_.find(revision);
  if (it == records_.end()) return out;
  for (const v1::Change& c : it->second.changes()) {
    if (FilterMatches(create, c.namespace_(), c.key())) out.push_back(c);
  }
  std::sort(out.begin(), out.end(), [](const v1::Change& a, const v1::Change& b) {
    return std::tie(a.namespace_(), a.key()) < std::tie(b.namespace_(), b.key());
  });
  return out;
}

ContractChecker::State ContractChecker::StateAt(int64_t revision,
                                                const v1::WatchCreateRequest& create) const {
  State state;
  for (const auto& [key, changes] : timeline_) {
    if (!FilterMatches(create, key.first, key.second)) continue;
    const v1::Change* last = nullptr;
    for (const auto& [r, c] : changes) {
      if (r > revision) break;
      last = &c;
    }
    if (last != nullptr && last->has_after()) state[key] = last->after();
  }
  return state;
}

CheckResult ContractChecker::Check(const WatchTrace& trace) const {
  CheckResult result;
  auto report = [&](Violation kind, std::string detail) {
    result.findings.push_back({kind, std::move(detail)});
  };

  v1::WatchCreateRequest create;
  bool started = false;
  bool with_before = false;
  bool latest = false;
  int64_t held = -1;                   // revision the client holds (-1: none yet)
  int64_t delivered = 0;               // highest revision covered by changes or a reset
  int64_t bookmark = 0;                // highest progress revision
  bool stream_first = false;           // next message is the first of its stream
  int64_t resumed_from = 0;            // start_revision of the current stream
  std::vector<v1::WatchReset> chunks;  // a reset being received

  for (size_t index = 0; index < trace.events().size(); ++index) {
    const WatchEvent& event = trace.events()[index];
    const std::string at = absl::StrCat("event ", index, ": ");
    if (event.is_start) {
      create = event.create;
      started = true;
      with_before = create.with_previous();
      latest = create.mode() == v1::DELIVERY_MODE_LATEST_STATE;
      chunks.clear();  // an unfinished reset is never applied
      stream_first = true;
      resumed_from = create.start_revision();
      if (resumed_from > 0) held = resumed_from - 1;
      continue;
    }
    if (!started) {
      report(Violation::kProtocol, at + "message before any start");
      continue;
    }
    const v1::WatchResponse& response = event.response;
    const bool first = stream_first;
    stream_first = false;

    if (!response.has_reset() && !chunks.empty()) {
      report(Violation::kAtomic, at + "a reset was interrupted by another message");
      chunks.clear();
    }

    if (response.has_reset()) {
      const v1::WatchReset& reset = response.reset();
      if (first && resumed_from == 0 && reset.reason() != v1::RESET_REASON_INITIAL) {
        report(Violation::kProtocol,
               at + "a watch from revision 0 must start with an INITIAL reset");
      }
      if (chunks.empty() && !(first && resumed_from == 0) &&
          reset.reason() == v1::RESET_REASON_INITIAL) {
        report(Violation::kProtocol, at + "INITIAL reset on a watch that did not start at 0");
      }
      if (latest && !first && chunks.empty() && reset.reason() == v1::RESET_REASON_FELL_BEHIND) {
        report(Violation::kProtocol, at + "LATEST_STATE watcher got a FELL_BEHIND reset");
      }
      if (!chunks.empty() && (chunks.front().revision() != reset.revision() ||
                              chunks.front().reason() != reset.reason())) {
        report(Violation::kAtomic, at + "reset chunks disagree on revision or reason");
      }
      chunks.push_back(reset);
      if (reset.more()) continue;
      ++result.resets;
      const int64_t revision = chunks.front().revision();
      if (revision < bookmark) {
        report(Violation::kBookmark,
               at + absl::StrCat("reset at ", revision, " below progress ", bookmark));
      } else if (held >= 0 && revision < held) {
        report(Violation::kOrdered,
               at + absl::StrCat("reset at ", revision, " but the client held ", held));
      }
      State expected = StateAt(revision, create);
      State got;
      for (const v1::WatchReset& chunk : chunks) {
        for (const v1::Entry& e : chunk.entries()) {
          if (!FilterMatches(create, e.namespace_(), e.key())) {
            report(Violation::kFilter,
                   at + "reset entry outside the filter: " + KeyName(e.namespace_(), e.key()));
            continue;
          }
          got[{e.namespace_(), e.key()}] = e;
        }
      }
      for (const auto& [key, entry] : expected) {
        auto it = got.find(key);
        if (it == got.end() || !SameEntry(it->second, entry)) {
          report(Violation::kResetState,
                 at + absl::StrCat("reset at ", revision, ": ", KeyName(key.first, key.second),
                                   it == got.end() ? " missing" : " differs"));
        }
      }
      for (const auto& [key, entry] : got) {
        if (!expected.contains(key)) {
          report(Violation::kResetState,
                 at + absl::StrCat("reset at ", revision, ": ", KeyName(key.first, key.second),
                                   " does not exist there"));
        }
      }
      chunks.clear();
      held = revision;
      delivered = std::max(delivered, revision);
      continue;
    }

    if (response.has_progress()) {
      ++result.progress;
      const int64_t revision = response.progress().revision();
      if (held >= 0 && revision < held) {
        report(Violation::kOrdered,
               at + absl::StrCat("progress ", revision, " below held revision ", held));
      } else if (held >= 0) {
        for (int64_t r = held + 1; r <= revision; ++r) {
          if (!MatchingChanges(r, create).empty()) {
            report(Violation::kReliable,
                   at + absl::StrCat("progress ", revision, " skips matching revision ", r));
            break;
          }
        }
      } else {
        report(Violation::kProtocol, at + "progress before the initial reset");
      }
      bookmark = std::max(bookmark, revision);
      held = std::max(held, revision);
      continue;
    }

    if (!response.has_changes()) {
      report(Violation::kProtocol, at + "empty WatchResponse");
      continue;
    }
    const v1::WatchChanges& changes = response.changes();
    if (held < 0) {
      report(Violation::kProtocol, at + "changes before the initial reset");
      held = changes.after_revision();
    }
    if (changes.revision() <= changes.after_revision()) {
      report(Violation::kOrdered, at + "revision not after after_revision");
    }
    // Revisions listed: ordered, unique, above bookmarks.
    int64_t previous = changes.after_revision();
    bool listed_ok = true;
    for (const v1::RevisionChanges& rc : changes.revisions()) {
      const int64_t r = rc.revision();
      if (r <= bookmark) {
        report(Violation::kBookmark,
               at + absl::StrCat("revision ", r, " at or below progress ", bookmark));
        listed_ok = false;
      } else if (r <= delivered) {
        report(Violation::kUnique, at + absl::StrCat("revision ", r, " delivered again"));
        listed_ok = false;
      } else if (r <= previous || r > changes.revision()) {
        report(Violation::kOrdered, at + absl::StrCat("revision ", r, " out of order"));
        listed_ok = false;
      }
      previous = std::max(previous, r);
    }
    if (listed_ok && changes.after_revision() != held) {
      if (first && resumed_from > 0) {
        report(Violation::kResumable,
               at + absl::StrCat("resumed at ", resumed_from, " but after_revision is ",
                                 changes.after_revision()));
      } else if (changes.after_revision() > held) {
        report(Violation::kReliable,
               at + absl::StrCat("gap: client held ", held, ", message is after ",
                                 changes.after_revision()));
      } else {
        report(Violation::kOrdered, at + absl::StrCat("message after ", changes.after_revision(),
                                                      " but the client held ", held));
      }
    }
    const int64_t from = std::max<int64_t>(held, 0);
    if (changes.net()) {
      ++result.net;
      if (!latest) report(Violation::kProtocol, at + "net message on an EVERY_REVISION watch");
      if (changes.revisions_size() != 1 || changes.revisions(0).revision() != changes.revision()) {
        report(Violation::kProtocol, at + "a net message must hold one element at its revision");
      } else {
        const State before = StateAt(from, create);
        const State after = StateAt(changes.revision(), create);
        std::map<std::pair<std::string, std::string>, const v1::Change*> got;
        for (const v1::Change& c : changes.revisions(0).changes()) {
          if (!FilterMatches(create, c.namespace_(), c.key())) {
            report(Violation::kFilter,
                   at + "net change outside the filter: " + KeyName(c.namespace_(), c.key()));
          }
          got[{c.namespace_(), c.key()}] = &c;
        }
        std::set<std::pair<std::string, std::string>> keys;
        for (const auto& [k, e] : before) keys.insert(k);
        for (const auto& [k, e] : after) keys.insert(k);
        for (const auto& key : keys) {
          auto b = before.find(key);
          auto a = after.find(key);
          const bool changed = (b == before.end()) != (a == after.end()) ||
                               (a != after.end() && !SameEntry(a->second, b->second));
          auto g = got.find(key);
          if (!changed) {
            if (g != got.end()) {
              report(Violation::kAtomic,
                     at + "net change of an unchanged key " + KeyName(key.first, key.second));
            }
            continue;
          }
          const bool ok = g != got.end() && g->second->has_after() == (a != after.end()) &&
                          (a == after.end() || SameEntry(g->second->after(), a->second));
          if (!ok) {
            report(Violation::kAtomic,
                   at + "net difference wrong for " + KeyName(key.first, key.second));
          }
        }
        for (const auto& [key, change] : got) {
          if (!keys.contains(key)) {
            report(Violation::kAtomic, at + "net change of a key absent on both sides " +
                                           KeyName(key.first, key.second));
          }
        }
      }
    } else {
      ++result.changes;
      if (changes.revisions_size() == 0) {
        report(Violation::kProtocol, at + "changes message lists no revision");
      }
      std::set<int64_t> listed;
      for (const v1::RevisionChanges& rc : changes.revisions()) {
        listed.insert(rc.revision());
        const std::vector<v1::Change> expected = MatchingChanges(rc.revision(), create);
        for (const v1::Change& c : rc.changes()) {
          if (!FilterMatches(create, c.namespace_(), c.key())) {
            report(Violation::kFilter,
                   at + absl::StrCat("revision ", rc.revision(), ": change outside the filter ",
                                     KeyName(c.namespace_(), c.key())));
          }
        }
        bool same = static_cast<int>(expected.size()) == rc.changes_size();
        for (int i = 0; same && i < rc.changes_size(); ++i) {
          same = SameChange(rc.changes(i), expected[i], with_before);
        }
        if (!same) {
          report(Violation::kAtomic,
                 at + absl::StrCat("revision ", rc.revision(), ": ", rc.changes_size(),
                                   " changes delivered, history has ", expected.size(),
                                   " matching (or they differ)"));
        }
      }
      // Every matching revision in (from, revision] must be listed.
      const int64_t lower = std::max(from, changes.after_revision());
      for (int64_t r = lower + 1; r <= changes.revision(); ++r) {
        if (listed.contains(r) || MatchingChanges(r, create).empty()) continue;
        if (first && resumed_from > 0 && r == resumed_from) {
          report(Violation::kResumable, at + absl::StrCat("resumed at ", resumed_from,
                                                          " but revision ", r, " is missing"));
        } else {
          report(Violation::kReliable, at + absl::StrCat("matching revision ", r, " skipped"));
        }
      }
    }
    held = changes.revision();
    delivered = std::max(delivered, changes.revision());
  }
  result.final_revision = held;
  return result;
}

absl::StatusOr<std::vector<v1::ChangeRecord>> ReadFullHistory(
    const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::ConfigService::NewStub(channel);
  std::vector<v1::ChangeRecord> out;
  std::string token;
  for (int page = 0; page < 1000; ++page) {
    v1::HistoryRequest req;
    req.set_page_size(1000);
    req.set_page_token(token);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::HistoryResponse resp;
    const grpc::Status s = stub->History(&ctx, req, &resp);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    }
    out.insert(out.end(), resp.records().begin(), resp.records().end());
    token = resp.next_page_token();
    if (token.empty()) return out;
  }
  return absl::OutOfRangeError("history has more than 1000 pages");
}

}  // namespace snapconf::watch_testing
