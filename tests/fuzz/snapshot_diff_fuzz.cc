// tests/fuzz/snapshot_diff_fuzz.cc
//
// Differential fuzz target for snapshot/: random change sets (and Restores)
// are applied both to a Snapshot lineage and to a std::map model. After every
// step the snapshot must hold exactly the model's entries (Find, Scan with
// prefix / start_after / limit, Namespaces, NamespaceSize, size), report the
// model's change list from Apply, keep its tree invariants, leave older
// snapshots untouched, and Diff between any two kept snapshots (optionally by
// namespace and prefix) must equal the model's difference.
//
// Names come from a tiny alphabet so keys collide, share prefixes and split
// nodes; occasional long keys exercise the inline key storage.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "snapshot/change_set.h"
#include "snapshot/snapshot.h"
#include "tests/fuzz/fuzz_input.h"

namespace snapconf::fuzz {
namespace {

struct ModelEntry {
  std::string value, content_type;
  Revision create = 0, mod = 0;
  int64_t version = 0;
  bool operator==(const ModelEntry&) const = default;
};
using Model = std::map<std::pair<std::string, std::string>, ModelEntry>;

struct Version {
  SnapshotPtr snapshot;
  Model model;
};

const char* const kNamespaces[] = {"a", "b", "a/b", "payments/prod", "z"};

std::string Name(FuzzInput& in) {
  if (in.Below(16) == 0) {
    // A long key: 40..103 bytes sharing a 32-byte stem.
    return std::string(32, 'k') +
           std::string(8 + in.Below(64), static_cast<char>('a' + in.Below(3)));
  }
  static const char kAlphabet[] = {'a', 'b', '/', '.'};
  std::string out(1 + in.Below(5), 'a');
  for (char& c : out) c = kAlphabet[in.Below(4)];
  return out;
}

ModelEntry FromEntry(const Entry& e) {
  return ModelEntry{e.value, e.content_type, e.create_revision, e.mod_revision, e.version};
}

std::string Describe(const std::string& ns, const std::string& key) { return ns + "|" + key; }

void CheckSame(const Snapshot& s, const Model& model) {
  FUZZ_CHECK(s.CheckInvariantsForTest(), "tree invariants at revision %lld",
             static_cast<long long>(s.revision()));
  FUZZ_CHECK(s.size() == model.size(), "size %zu, model %zu", s.size(), model.size());
  std::map<std::string, size_t> per_ns;
  for (const auto& [k, e] : model) {
    ++per_ns[k.first];
    const Entry* found = s.Find(k.first, k.second);
    FUZZ_CHECK(found != nullptr, "missing %s", Describe(k.first, k.second).c_str());
    FUZZ_CHECK(FromEntry(*found) == e, "different entry %s", Describe(k.first, k.second).c_str());
  }
  std::vector<std::string> names;
  for (const auto& [ns, n] : per_ns) {
    names.push_back(ns);
    FUZZ_CHECK(s.NamespaceSize(ns) == n, "NamespaceSize(%s)", ns.c_str());
  }
  FUZZ_CHECK(s.Namespaces() == names, "Namespaces() differs");
  // A full scan of each namespace lists the model's keys in order.
  for (const std::string& ns : names) {
    auto it = model.lower_bound({ns, ""});
    s.Scan(ns, "", "", 0, [&](std::string_view key, const EntryPtr& e) {
      FUZZ_CHECK(it != model.end() && it->first.first == ns && it->first.second == key,
                 "scan of %s yields an unexpected key", ns.c_str());
      FUZZ_CHECK(FromEntry(*e) == it->second, "scan entry differs");
      ++it;
      return true;
    });
    FUZZ_CHECK(it == model.end() || it->first.first != ns, "scan of %s stopped early", ns.c_str());
  }
}

// The model's changes from `from` to `to`, restricted like Diff.
std::vector<std::pair<std::string, std::string>> ModelDiff(const Model& from, const Model& to,
                                                           const std::string& ns,
                                                           const std::string& prefix) {
  std::map<std::pair<std::string, std::string>, bool> keys;
  for (const auto& [k, e] : from) keys[k] = true;
  for (const auto& [k, e] : to) keys[k] = true;
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, unused] : keys) {
    if (!ns.empty() && k.first != ns) continue;
    if (k.second.compare(0, prefix.size(), prefix) != 0) continue;
    auto a = from.find(k);
    auto b = to.find(k);
    const bool same = a != from.end() && b != to.end() ? a->second == b->second
                                                       : (a == from.end()) == (b == to.end());
    if (!same) out.push_back(k);
  }
  return out;
}

void CheckDiff(const Version& from, const Version& to, const std::string& ns,
               const std::string& prefix) {
  const std::vector<EntryChange> got = Diff(*from.snapshot, *to.snapshot, ns, prefix);
  const auto want = ModelDiff(from.model, to.model, ns, prefix);
  FUZZ_CHECK(got.size() == want.size(),
             "Diff %lld -> %lld (ns '%s', prefix '%s'): %zu changes, model %zu",
             static_cast<long long>(from.snapshot->revision()),
             static_cast<long long>(to.snapshot->revision()), ns.c_str(), prefix.c_str(),
             got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    FUZZ_CHECK(got[i].ns == want[i].first && got[i].key == want[i].second, "Diff order/key at %zu",
               i);
    auto a = from.model.find(want[i]);
    auto b = to.model.find(want[i]);
    FUZZ_CHECK((got[i].before == nullptr) == (a == from.model.end()), "Diff before-image presence");
    FUZZ_CHECK((got[i].after == nullptr) == (b == to.model.end()), "Diff after-image presence");
    if (got[i].before != nullptr) FUZZ_CHECK(FromEntry(*got[i].before) == a->second, "before");
    if (got[i].after != nullptr) FUZZ_CHECK(FromEntry(*got[i].after) == b->second, "after");
  }
}

void CheckScan(const Version& v, FuzzInput& in) {
  const std::string ns = kNamespaces[in.Below(std::size(kNamespaces))];
  const std::string prefix = in.Bool() ? std::string() : Name(in).substr(0, 1 + in.Below(3));
  const std::string start_after = in.Bool() ? std::string() : Name(in);
  const size_t limit = in.Below(6);
  std::vector<std::string> want;
  for (auto it = v.model.lower_bound({ns, ""}); it != v.model.end() && it->first.first == ns;
       ++it) {
    const std::string& key = it->first.second;
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    if (!start_after.empty() && key <= start_after) continue;
    if (limit != 0 && want.size() == limit) break;
    want.push_back(key);
  }
  std::vector<std::string> got;
  v.snapshot->Scan(ns, prefix, start_after, limit, [&](std::string_view key, const EntryPtr&) {
    got.emplace_back(key);
    return true;
  });
  FUZZ_CHECK(got == want, "Scan(%s, '%s', after '%s', limit %zu): %zu keys, model %zu", ns.c_str(),
             prefix.c_str(), start_after.c_str(), limit, got.size(), want.size());
}

void ApplyStep(std::vector<Version>& kept, FuzzInput& in) {
  const Version& cur = kept.back();
  ChangeSet changes;
  const size_t n = 1 + in.Below(24);
  for (size_t i = 0; i < n; ++i) {
    std::string ns = kNamespaces[in.Below(std::size(kNamespaces))];
    std::string key = Name(in);
    if (in.Below(3) == 0) {
      changes.Delete(std::move(ns), std::move(key));
    } else {
      changes.Put(std::move(ns), std::move(key), std::string(in.Below(4), 'v') + std::to_string(i),
                  in.Bool() ? "text/plain" : "");
    }
  }
  // Now and then a revision that does not follow: refused, nothing changes.
  if (in.Below(8) == 0) {
    const Revision bad = cur.snapshot->revision() - static_cast<Revision>(in.Below(2));
    FUZZ_CHECK(!cur.snapshot->Apply(changes, bad).ok(), "Apply at stale revision accepted");
    CheckSame(*cur.snapshot, cur.model);
    return;
  }
  const Revision rev = cur.snapshot->revision() + 1 + static_cast<Revision>(in.Below(3));

  // The model: the last mutation of a key wins, judged against the old state.
  std::map<std::pair<std::string, std::string>, const Mutation*> last;
  for (const Mutation& m : changes.mutations()) last[{m.ns, m.key}] = &m;
  Model next = cur.model;
  std::vector<std::pair<std::string, std::string>> want_changed;
  for (const auto& [k, m] : last) {
    auto old = cur.model.find(k);
    if (m->kind == Mutation::Kind::kDelete) {
      if (old == cur.model.end()) continue;
      next.erase(k);
    } else if (old == cur.model.end()) {
      next[k] = ModelEntry{m->value, m->content_type, rev, rev, 1};
    } else {
      next[k] =
          ModelEntry{m->value, m->content_type, old->second.create, rev, old->second.version + 1};
    }
    want_changed.push_back(k);
  }

  absl::StatusOr<Snapshot::Applied> applied = cur.snapshot->Apply(changes, rev);
  FUZZ_CHECK(applied.ok(), "Apply failed");
  FUZZ_CHECK(applied->snapshot->revision() == rev, "revision");
  FUZZ_CHECK(applied->changes.size() == want_changed.size(),
             "Apply reported %zu changes, model %zu", applied->changes.size(), want_changed.size());
  for (size_t i = 0; i < want_changed.size(); ++i) {
    const EntryChange& c = applied->changes[i];
    FUZZ_CHECK(c.ns == want_changed[i].first && c.key == want_changed[i].second,
               "Apply change %zu is %s", i, Describe(c.ns, c.key).c_str());
    auto before = cur.model.find(want_changed[i]);
    FUZZ_CHECK((c.before == nullptr) == (before == cur.model.end()), "before-image presence");
    if (c.before != nullptr) FUZZ_CHECK(FromEntry(*c.before) == before->second, "before-image");
    auto after = next.find(want_changed[i]);
    FUZZ_CHECK((c.after == nullptr) == (after == next.end()), "after-image presence");
    if (c.after != nullptr) FUZZ_CHECK(FromEntry(*c.after) == after->second, "after-image");
  }
  kept.push_back(Version{applied->snapshot, std::move(next)});
}

void RestoreStep(std::vector<Version>& kept, FuzzInput& in) {
  // Undo back to an older kept version the way the store does: install the
  // older entries (before-images) over the newest snapshot.
  const Version& cur = kept.back();
  const Version& old = kept[in.Below(kept.size())];
  std::vector<RawEntry> raw;
  for (const EntryChange& c : Diff(*cur.snapshot, *old.snapshot)) {
    raw.push_back(RawEntry{c.ns, c.key, c.after});
  }
  const Revision rev = cur.snapshot->revision() + 1;
  SnapshotPtr restored = cur.snapshot->Restore(raw, rev);
  FUZZ_CHECK(restored->revision() == rev, "Restore revision");
  kept.push_back(Version{restored, old.model});
}

void BuilderStep(const Version& v) {
  // SnapshotBuilder from the model (in reverse order) equals the lineage.
  SnapshotBuilder builder;
  for (auto it = v.model.rbegin(); it != v.model.rend(); ++it) {
    const ModelEntry& m = it->second;
    builder.Add(
        it->first.first, it->first.second,
        std::make_shared<const Entry>(Entry{m.value, m.content_type, m.create, m.mod, m.version}));
  }
  SnapshotPtr built = std::move(builder).Build(v.snapshot->revision());
  CheckSame(*built, v.model);
  FUZZ_CHECK(Diff(*v.snapshot, *built).empty(), "built snapshot differs from the lineage");
}

}  // namespace
}  // namespace snapconf::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace snapconf;
  using namespace snapconf::fuzz;
  FuzzInput in(data, size);
  std::vector<Version> kept;
  kept.push_back(Version{Snapshot::Empty(), Model()});
  for (int step = 0; step < 48 && !in.empty(); ++step) {
    switch (in.Below(8)) {
      case 0:
      case 1:
      case 2:
      case 3:
        ApplyStep(kept, in);
        break;
      case 4:
        RestoreStep(kept, in);
        break;
      case 5: {
        const Version& from = kept[in.Below(kept.size())];
        const Version& to = kept[in.Below(kept.size())];
        const std::string ns =
            in.Bool() ? std::string() : kNamespaces[in.Below(std::size(kNamespaces))];
        const std::string prefix = in.Bool() ? std::string() : Name(in).substr(0, 1 + in.Below(2));
        CheckDiff(from, to, ns, prefix);
        break;
      }
      case 6:
        CheckScan(kept[in.Below(kept.size())], in);
        break;
      default:
        BuilderStep(kept.back());
        break;
    }
    CheckSame(*kept.back().snapshot, kept.back().model);
    // Older snapshots are immutable: spot-check one.
    const Version& older = kept[in.Below(kept.size())];
    CheckSame(*older.snapshot, older.model);
  }
  return 0;
}
