// snapshot/internal/btree.h
//
// A persistent (immutable, path-copying) B+tree from byte-string keys to values of type V. It is
// the storage behind Snapshot: one tree of entries per namespace, and one tree of namespaces.
// Not part of the public API; only snapshot/*.cc and tests include it.
//
// Thread-safety: a node never changes after it is built, so any number of threads may read a
// tree concurrently. Nodes are shared between trees by an intrusive atomic reference count;
// building a new tree (Update, Build) never touches the nodes it shares except to add a
// reference, so it may run while other threads read the old tree.
//
// Invariants (checked by CheckInvariantsForTest):
//   * All leaves are at height 0; an internal node at height h has children at height h-1.
//   * Keys are strictly increasing across leaves; key(n, i) of an internal node is the exact
//     smallest key of child i (path copying rebuilds every ancestor of a change, so it is
//     recomputed for free and Diff can use it as the lower bound of the subtree).
//   * Every node holds 1..MaxFanout(height) slots; every node except the root holds at least
//     MinFanout(height), so deletes merge nodes and memory comes back.
//   * A node is allocated at its exact size (header, slots, key offsets, fingerprints and key
//     bytes in one block): immutable nodes never need room to grow, and memory stays
//     proportional to the live keys whatever the fill factor.
//
//   NodeRef<EntryPtr> root = Tree<EntryPtr>::Build(sorted_items);
//   const EntryPtr* e = Tree<EntryPtr>::Find(root.get(), "db.pool.max");
#pragma once

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"

namespace snapconf::snapshot_internal {

// Fan-out is what an update costs: copying a node changes the reference count of every child
// or entry in it, each in cold memory. Measured at 1M keys, 100-key batch: 64/64 (internal/leaf)
// 1.6 ms, 64/32 1.05 ms, 32/32 ~0.6 ms, with lookups within noise (the extra level sits in
// cache). Kept as two constants so either side can be tuned alone.
inline constexpr int kMaxFanout = 32;
inline constexpr int kMinFanout = 8;
inline constexpr int kMaxLeafFanout = 32;
inline constexpr int kMinLeafFanout = 8;
constexpr size_t MaxFanout(int height) { return height == 0 ? kMaxLeafFanout : kMaxFanout; }
constexpr size_t MinFanout(int height) { return height == 0 ? kMinLeafFanout : kMinFanout; }
// Heights are bounded by log_8(2^64); 24 leaves ample room.
inline constexpr int kMaxHeight = 24;

// Live bytes in tree nodes across the process, for memory tests and the ADR numbers.
int64_t LiveNodeBytesForTest();
int64_t LiveNodesForTest();
void AccountNodeBytes(int64_t bytes, int64_t nodes);

// Bytes p[0..n), n < 8, as a little-endian integer, zero-extended. Two overlapping loads
// instead of a variable-length memcpy, which compiles to byte stores to the stack and a wide
// reload that stalls on store forwarding (measured: half the lookup time at 1k keys).
inline uint64_t LoadPartial(const char* p, size_t n) {
  if (n >= 4) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + n - 4, 4);
    return lo | (static_cast<uint64_t>(hi) << ((n - 4) * 8));
  }
  if (n == 0) return 0;
  const auto byte = [p](size_t i) { return static_cast<uint64_t>(static_cast<uint8_t>(p[i])); };
  return byte(0) | (byte(n / 2) << (8 * (n / 2))) | (byte(n - 1) << (8 * (n - 1)));
}

// a == b for equal-length byte ranges, inlined (keys are short; a libc call costs more).
inline bool BytesEqual(const char* a, const char* b, size_t n) {
  while (n >= 8) {
    uint64_t x, y;
    std::memcpy(&x, a, 8);
    std::memcpy(&y, b, 8);
    if (x != y) return false;
    a += 8;
    b += 8;
    n -= 8;
  }
  return LoadPartial(a, n) == LoadPartial(b, n);
}
inline bool KeyEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && BytesEqual(a.data(), b.data(), a.size());
}

// One byte of a fast hash of the key. Leaves keep one per key so a point lookup scans 32 bytes
// instead of binary-searching through scattered key bytes (one cache line instead of ~6).
inline uint8_t Fingerprint(std::string_view key) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ key.size();
  const char* p = key.data();
  size_t n = key.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) h = (h ^ LoadPartial(p, n)) * 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 32;
  h *= 0x9e3779b97f4a7c15ull;
  return static_cast<uint8_t>(h >> 56);
}

// Node header; the payload follows in the same allocation (see Layout).
struct NodeBase {
  mutable std::atomic<uint32_t> refs;
  uint16_t count;  // number of slots (values in a leaf, children in an internal node)
  uint8_t height;  // 0 = leaf
  uint8_t unused;
  uint32_t key_bytes;
  uint32_t alloc_bytes;
  uint32_t prefix_len;  // internal: bytes shared by all separators key(n, 1..count-1)
  uint32_t unused2;
};
inline constexpr size_t kHeaderBytes = 24;
static_assert(sizeof(NodeBase) <= kHeaderBytes);

inline void Ref(const NodeBase* n) { n->refs.fetch_add(1, std::memory_order_relaxed); }

// Hints that `p`'s reference count is about to be changed. Copying or freeing a node changes up
// to 32 counts in cold memory; a locked increment stalls until its line arrives, so without the
// hints the misses are taken one after another.
inline void PrefetchForWrite(const void* p) { __builtin_prefetch(p, 1, 3); }

// Per value type: where its reference count lives, for PrefetchForWrite.
template <typename V>
struct ValueTraits {
  static void Prefetch(const V&) {}
};
template <typename T>
struct ValueTraits<std::shared_ptr<T>> {
  static void Prefetch(const std::shared_ptr<T>& p) {
    // make_shared puts the control block right before the object; for other shared_ptrs this
    // is a harmless wrong guess (a prefetch never faults).
    const uintptr_t a = reinterpret_cast<uintptr_t>(p.get());
    PrefetchForWrite(reinterpret_cast<const void*>(a - 16));
  }
};

// The 8 bytes of `s` from `pos` as a big-endian integer, zero-padded: comparing heads compares
// those bytes (equal heads need a full comparison: "ab" and "ab\0" share one head).
inline uint64_t KeyHead(std::string_view s, size_t pos) {
  if (s.size() <= pos) return 0;
  uint64_t w;
  if (s.size() - pos >= 8) {
    std::memcpy(&w, s.data() + pos, 8);
  } else {
    w = LoadPartial(s.data() + pos, s.size() - pos);
  }
  return __builtin_bswap64(w);
}

// Payload addressing, ordered so a lookup touches as few cache lines as possible: what the
// search reads first sits right after the header, in adjacent lines.
//   leaf:     header | uint8_t fingerprints[count] (padded to 8) | uint32_t offsets[count + 1]
//             (padded to 8) | V vals[count] | key bytes
//   internal: header | uint64_t heads[count] (KeyHead of each separator after the common
//             prefix: the descent compares integers, not strings) | const NodeBase* kids[count] |
//             uint32_t offsets[count + 1] | key bytes
template <typename V>
struct Layout {
  static_assert(alignof(V) <= 8);
  static constexpr size_t Align8(size_t x) { return (x + 7) & ~size_t{7}; }
  static constexpr size_t OffsetsAt(int height, size_t count) {
    return kHeaderBytes + (height == 0 ? Align8(count) : 2 * sizeof(uint64_t) * count);
  }
  static constexpr size_t ValsAt(size_t count) {
    return Align8(OffsetsAt(0, count) + (count + 1) * sizeof(uint32_t));
  }
  static constexpr size_t KeysAt(int height, size_t count) {
    return height == 0 ? ValsAt(count) + count * sizeof(V)
                       : OffsetsAt(height, count) + (count + 1) * sizeof(uint32_t);
  }
  static size_t Bytes(int height, size_t count, size_t key_bytes) {
    return KeysAt(height, count) + key_bytes;
  }
  static char* Base(const NodeBase* n) { return reinterpret_cast<char*>(const_cast<NodeBase*>(n)); }
  static uint8_t* Fingerprints(const NodeBase* n) {
    return reinterpret_cast<uint8_t*>(Base(n) + kHeaderBytes);
  }
  static V* Vals(const NodeBase* n) { return reinterpret_cast<V*>(Base(n) + ValsAt(n->count)); }
  static uint64_t* Heads(const NodeBase* n) {
    return reinterpret_cast<uint64_t*>(Base(n) + kHeaderBytes);
  }
  static const NodeBase** Kids(const NodeBase* n) {
    return reinterpret_cast<const NodeBase**>(Base(n) + kHeaderBytes + n->count * sizeof(uint64_t));
  }
  static uint32_t* Offsets(const NodeBase* n) {
    return reinterpret_cast<uint32_t*>(Base(n) + OffsetsAt(n->height, n->count));
  }
  static const char* KeyBytes(const NodeBase* n) { return Base(n) + KeysAt(n->height, n->count); }
  static std::string_view Key(const NodeBase* n, size_t i) {
    const uint32_t* off = Offsets(n);
    return std::string_view(KeyBytes(n) + off[i], off[i + 1] - off[i]);
  }
};

// The index of the child of internal node `n` whose subtree would hold `key`: the last child
// whose separator (smallest key) is <= key, or 0.
template <typename V>
inline size_t ChildFor(const NodeBase* n, std::string_view key) {
  const size_t count = n->count;
  if (count == 1) return 0;
  const size_t p = n->prefix_len;
  if (p != 0) {
    // Every separator starts with these p bytes: outside them, the answer is an end.
    const std::string_view sep = Layout<V>::Key(n, 1);
    if (key.size() < p || !BytesEqual(key.data(), sep.data(), p)) {
      return key < sep.substr(0, p) ? 0 : count - 1;
    }
  }
  const uint64_t head = KeyHead(key, p);
  const uint64_t* heads = Layout<V>::Heads(n);
  // Branch-free upper bound over heads[1..count): a mispredicted branch per probe would cost
  // more than the probes themselves.
  size_t lo = 1, len = count - 1;
  while (len > 1) {
    const size_t half = len / 2;
    lo = heads[lo + half - 1] <= head ? lo + half : lo;
    len -= half;
  }
  size_t i = lo - 1 + (heads[lo] <= head ? 1 : 0);  // last separator whose head <= key's head
  if (i == 0 || heads[i] != head) return i;
  // Separators sharing the key's head (keys with long common prefixes inside one subtree, e.g.
  // "svc-12/config/setting-..."): find their first index t, then binary-search the full keys
  // in [t, i]. A linear walk here was measured to cost 3x at 1M keys.
  size_t t = 1;
  len = i;
  while (len > 1) {
    const size_t half = len / 2;
    t = heads[t + half - 1] < head ? t + half : t;
    len -= half;
  }
  if (heads[t] < head) ++t;
  size_t a = t, b = i + 1;
  const std::string_view rest = key.substr(p);
  while (a < b) {
    const size_t mid = (a + b) / 2;
    if (Layout<V>::Key(n, mid).substr(p) <= rest) {
      a = mid + 1;
    } else {
      b = mid;
    }
  }
  return a - 1;
}

// First slot of leaf `n` with key >= `key` (or > `key` when `strict`).
template <typename V>
inline size_t LeafLowerBound(const NodeBase* n, std::string_view key, bool strict) {
  size_t lo = 0, hi = n->count;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    const std::string_view k = Layout<V>::Key(n, mid);
    if (k < key || (strict && k == key)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

template <typename V>
class Tree;

// An owning, reference-counted pointer to an immutable node (nullptr = empty tree).
template <typename V>
class NodeRef {
 public:
  NodeRef() = default;
  static NodeRef Adopt(const NodeBase* n) { return NodeRef(n); }
  static NodeRef Share(const NodeBase* n) {
    if (n != nullptr) Ref(n);
    return NodeRef(n);
  }
  NodeRef(const NodeRef& o) : p_(o.p_) {
    if (p_ != nullptr) Ref(p_);
  }
  NodeRef(NodeRef&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  NodeRef& operator=(NodeRef o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~NodeRef() { Tree<V>::Unref(p_); }
  const NodeBase* get() const { return p_; }
  const NodeBase* release() { return std::exchange(p_, nullptr); }
  explicit operator bool() const { return p_ != nullptr; }

 private:
  explicit NodeRef(const NodeBase* n) : p_(n) {}
  const NodeBase* p_ = nullptr;
};

// What an Update resolver decided for one key.
enum class Action { kKeep, kSet, kErase };

template <typename V>
class Tree {
 public:
  using L = Layout<V>;

  struct Item {  // a leaf slot under construction
    std::string_view key;
    uint8_t fp;
    V val;
  };
  struct Kid {  // an internal slot under construction; owns one reference to node
    const NodeBase* node;
    // == MinKey(node), but read from the parent being copied when there is one: reading it
    // from the child would cost a cache miss per untouched child.
    std::string_view min_key;
  };
  static Kid FreshKid(const NodeBase* n) { return Kid{n, MinKey(n)}; }

  static void Unref(const NodeBase* n) {
    if (n != nullptr && n->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) Destroy(n);
  }

  static const V* Find(const NodeBase* n, std::string_view key, uint8_t fp) {
    if (n == nullptr) return nullptr;
    // Ask for every line the search of a node will read before reading the first: the
    // binary search over heads and the leaf's fingerprints-then-offsets would otherwise take
    // their cache misses one after another.
    PrefetchNode(n);
    while (n->height != 0) {
      n = L::Kids(n)[ChildFor<V>(n, key)];
      PrefetchNode(n);
    }
    const uint8_t* f = L::Fingerprints(n);
    const size_t count = n->count;
    const uint64_t pattern = 0x0101010101010101ull * fp;
    size_t i = 0;
    for (; i + 8 <= count; i += 8) {
      uint64_t w;
      std::memcpy(&w, f + i, 8);
      const uint64_t x = w ^ pattern;
      // Zero bytes of x are candidate matches (false positives above a true zero are harmless:
      // the key comparison rejects them).
      uint64_t m = (x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull;
      while (m != 0) {
        const size_t j = i + (static_cast<size_t>(__builtin_ctzll(m)) >> 3);
        if (KeyEquals(L::Key(n, j), key)) return &L::Vals(n)[j];
        m &= m - 1;
      }
    }
    for (; i < count; ++i) {
      if (f[i] == fp && KeyEquals(L::Key(n, i), key)) return &L::Vals(n)[i];
    }
    return nullptr;
  }
  static void PrefetchNode(const NodeBase* n) {
    // Internal: heads (8 bytes per child; prefetching the child pointers too measured no
    // better). Leaf: fingerprints and offsets. The header's line is being read anyway.
    const char* base = L::Base(n);
    const size_t end =
        n->height != 0 ? kHeaderBytes + n->count * sizeof(uint64_t) : L::ValsAt(n->count);
    for (size_t off = 64; off < end; off += 64) __builtin_prefetch(base + off, 0, 3);
  }

  static const V* Find(const NodeBase* n, std::string_view key) {
    return Find(n, key, Fingerprint(key));
  }

  // Builds a leaf from items[0..n), moving the values out.
  static const NodeBase* MakeLeaf(Item* items, size_t n) {
    size_t key_bytes = 0;
    for (size_t i = 0; i < n; ++i) key_bytes += items[i].key.size();
    NodeBase* node = Allocate(0, n, key_bytes);
    V* vals = L::Vals(node);
    uint32_t* off = L::Offsets(node);
    uint8_t* fps = L::Fingerprints(node);
    char* keys = const_cast<char*>(L::KeyBytes(node));
    uint32_t pos = 0;
    for (size_t i = 0; i < n; ++i) {
      new (&vals[i]) V(std::move(items[i].val));
      fps[i] = items[i].fp;
      off[i] = pos;
      if (!items[i].key.empty()) std::memcpy(keys + pos, items[i].key.data(), items[i].key.size());
      pos += static_cast<uint32_t>(items[i].key.size());
    }
    off[n] = pos;
    return node;
  }

  // Builds an internal node over kids[0..n), taking over their references.
  static const NodeBase* MakeInternal(const Kid* kids, size_t n) {
    size_t key_bytes = 0;
    for (size_t i = 0; i < n; ++i) key_bytes += kids[i].min_key.size();
    NodeBase* node = Allocate(kids[0].node->height + 1, n, key_bytes);
    // Common prefix of the separators (children 1..n-1).
    size_t p = 0;
    if (n > 1) {
      const std::string_view first = kids[1].min_key;
      p = first.size();
      for (size_t i = 2; i < n && p > 0; ++i) {
        const std::string_view k = kids[i].min_key;
        p = std::min(p, k.size());
        size_t j = 0;
        while (j < p && k[j] == first[j]) ++j;
        p = j;
      }
    }
    node->prefix_len = static_cast<uint32_t>(p);
    uint64_t* heads = L::Heads(node);
    const NodeBase** slots = L::Kids(node);
    uint32_t* off = L::Offsets(node);
    char* keys = const_cast<char*>(L::KeyBytes(node));
    uint32_t pos = 0;
    for (size_t i = 0; i < n; ++i) {
      assert(kids[i].node->height + 1 == node->height);
      slots[i] = kids[i].node;
      const std::string_view k = kids[i].min_key;
      assert(k == MinKey(kids[i].node));
      heads[i] = i == 0 ? 0 : KeyHead(k, p);
      off[i] = pos;
      if (!k.empty()) std::memcpy(keys + pos, k.data(), k.size());
      pos += static_cast<uint32_t>(k.size());
    }
    off[n] = pos;
    return node;
  }

  static std::string_view MinKey(const NodeBase* n) { return L::Key(n, 0); }

  // Splits items into evenly sized nodes of at most MaxFanout slots each and appends them to
  // out. Fewer than MinFanout items make one underfull node, which the parent merges away.
  template <typename T, typename Make>
  static void Chunk(std::vector<T>& items, Make make, std::vector<const NodeBase*>& out) {
    const size_t n = items.size();
    if (n == 0) return;
    const size_t max = std::is_same_v<T, Item> ? kMaxLeafFanout : kMaxFanout;
    const size_t pieces = (n + max - 1) / max;
    for (size_t p = 0; p < pieces; ++p) {
      const size_t b = n * p / pieces, e = n * (p + 1) / pieces;
      out.push_back(make(items.data() + b, e - b));
    }
  }

  // Stacks a level of nodes into a single root.
  static NodeRef<V> BuildRoot(std::vector<const NodeBase*> level) {
    while (level.size() > 1) {
      std::vector<Kid> kids;
      kids.reserve(level.size());
      for (const NodeBase* n : level) kids.push_back(FreshKid(n));
      level.clear();
      Chunk(kids, MakeInternal, level);
    }
    if (level.empty()) return NodeRef<V>();
    const NodeBase* root = level[0];
    // A root with one child adds a level for nothing.
    while (root->height != 0 && root->count == 1) {
      const NodeBase* child = L::Kids(root)[0];
      Ref(child);
      Unref(root);
      root = child;
    }
    return NodeRef<V>::Adopt(root);
  }

  // Builds a tree from items sorted by strictly increasing key.
  static NodeRef<V> Build(std::vector<Item>& items) {
    std::vector<const NodeBase*> leaves;
    leaves.reserve(items.size() / kMaxLeafFanout + 1);
    Chunk(items, MakeLeaf, leaves);
    return BuildRoot(std::move(leaves));
  }

  // Applies one operation per key of `keys` (sorted, strictly increasing).
  // resolve(i, const V* old, V* out) -> Action decides what happens to keys[i]; it is called in
  // key order exactly once per key. Unchanged subtrees are shared with `root`; if nothing
  // changed the result is `root` itself.
  template <typename Resolve>
  static NodeRef<V> Update(const NodeRef<V>& root, const std::string_view* keys, size_t n,
                           Resolve& resolve) {
    if (n == 0) return root;
    if (!root) {
      std::vector<Item> items;
      items.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        V v{};
        if (resolve(i, nullptr, &v) == Action::kSet) {
          items.push_back(Item{keys[i], Fingerprint(keys[i]), std::move(v)});
        }
      }
      return Build(items);
    }
    std::vector<const NodeBase*> pieces;
    if (!UpdateNode(root.get(), keys, 0, n, resolve, pieces)) return root;
    return BuildRoot(std::move(pieces));
  }

  // Calls fn(key, const V&) for every slot in order; stops when fn returns false.
  template <typename Fn>
  static bool ForEach(const NodeBase* n, Fn& fn) {
    if (n == nullptr) return true;
    if (n->height == 0) {
      for (size_t i = 0; i < n->count; ++i) {
        if (!fn(L::Key(n, i), L::Vals(n)[i])) return false;
      }
      return true;
    }
    for (size_t i = 0; i < n->count; ++i) {
      if (!ForEach(L::Kids(n)[i], fn)) return false;
    }
    return true;
  }

  // A position in a tree for ordered scans: O(height) to seek, amortized O(1) per step.
  class Cursor {
   public:
    // Positions at the first key >= key (> key when strict).
    Cursor(const NodeBase* root, std::string_view key, bool strict) {
      if (root == nullptr) return;
      const NodeBase* n = root;
      while (true) {
        node_[depth_] = n;
        if (n->height == 0) {
          idx_[depth_] = static_cast<uint16_t>(LeafLowerBound<V>(n, key, strict));
          break;
        }
        const size_t c = ChildFor<V>(n, key);
        idx_[depth_] = static_cast<uint16_t>(c);
        n = L::Kids(n)[c];
        ++depth_;
      }
      ++depth_;
      if (idx_[depth_ - 1] >= node_[depth_ - 1]->count) Advance();
    }
    bool Valid() const { return depth_ > 0; }
    std::string_view key() const { return L::Key(node_[depth_ - 1], idx_[depth_ - 1]); }
    const V& value() const { return L::Vals(node_[depth_ - 1])[idx_[depth_ - 1]]; }
    void Next() {
      ++idx_[depth_ - 1];
      if (idx_[depth_ - 1] >= node_[depth_ - 1]->count) Advance();
    }

   private:
    // The leaf is exhausted: climb to the first ancestor with a next child, descend leftmost.
    void Advance() {
      int d = depth_ - 1;
      while (d >= 0 && idx_[d] >= node_[d]->count) {
        if (--d < 0) break;
        ++idx_[d];
      }
      if (d < 0) {
        depth_ = 0;
        return;
      }
      for (int k = d; k + 1 < depth_; ++k) {
        node_[k + 1] = L::Kids(node_[k])[idx_[k]];
        idx_[k + 1] = 0;
      }
    }
    const NodeBase* node_[kMaxHeight];
    uint16_t idx_[kMaxHeight];
    int depth_ = 0;
  };

  // Calls emit(key, const V* before, const V* after) in key order for every key of keys starting
  // with `prefix` whose value differs between trees a and b (same(x, y) says equal), in time
  // proportional to the difference: subtrees shared by pointer are skipped whole.
  template <typename Same, typename Emit>
  static void Diff(const NodeBase* a, const NodeBase* b, std::string_view prefix, Same same,
                   Emit emit) {
    if (a == b) return;
    std::vector<Pos> fa, fb;  // frontiers; back() is the smallest position
    Seed(a, prefix, fa);
    Seed(b, prefix, fb);
    auto done = [&](const std::vector<Pos>& f) {
      return f.empty() || (!prefix.empty() && !Lo(f.back()).starts_with(prefix));
    };
    while (true) {
      const bool da = done(fa), db = done(fb);
      if (da && db) break;
      if (da || db) {
        std::vector<Pos>& f = da ? fb : fa;
        const Pos p = f.back();
        if (p.idx < 0) {
          Expand(f);
        } else {
          f.pop_back();
          const V* v = &L::Vals(p.node)[p.idx];
          emit(L::Key(p.node, p.idx), da ? nullptr : v, da ? v : nullptr);
        }
        continue;
      }
      const Pos x = fa.back(), y = fb.back();
      if (x.idx < 0 && y.idx < 0 && x.node == y.node) {
        fa.pop_back();
        fb.pop_back();
        continue;
      }
      const std::string_view kx = Lo(x), ky = Lo(y);
      if (kx < ky) {
        if (x.idx < 0) {
          Expand(fa);
        } else {
          fa.pop_back();
          emit(kx, &L::Vals(x.node)[x.idx], nullptr);
        }
      } else if (ky < kx) {
        if (y.idx < 0) {
          Expand(fb);
        } else {
          fb.pop_back();
          emit(ky, nullptr, &L::Vals(y.node)[y.idx]);
        }
      } else if (x.idx >= 0 && y.idx >= 0) {
        fa.pop_back();
        fb.pop_back();
        const V& vx = L::Vals(x.node)[x.idx];
        const V& vy = L::Vals(y.node)[y.idx];
        if (!same(vx, vy)) emit(kx, &vx, &vy);
      } else {
        const int hx = Height(x), hy = Height(y);
        if (hx >= hy) Expand(fa);
        if (hy >= hx) Expand(fb);
      }
    }
  }

  // Verifies the structural invariants; returns the number of values, or -1 if broken.
  static int64_t CheckInvariantsForTest(const NodeBase* root) {
    if (root == nullptr) return 0;
    std::string_view last;
    bool has_last = false;
    return Check(root, true, last, has_last);
  }

 private:
  struct Pos {
    const NodeBase* node;
    int idx;  // -1: the whole node; otherwise one slot of a leaf
  };
  static std::string_view Lo(const Pos& p) { return L::Key(p.node, p.idx < 0 ? 0 : p.idx); }
  static int Height(const Pos& p) { return p.idx < 0 ? p.node->height : -1; }
  static void Expand(std::vector<Pos>& f) {
    const Pos p = f.back();
    f.pop_back();
    for (int i = p.node->count - 1; i >= 0; --i) {
      f.push_back(p.node->height == 0 ? Pos{p.node, i} : Pos{L::Kids(p.node)[i], -1});
    }
  }
  // The frontier of everything >= prefix: right siblings of the seek path plus the leaf tail.
  static void Seed(const NodeBase* n, std::string_view prefix, std::vector<Pos>& f) {
    if (n == nullptr) return;
    if (prefix.empty()) {
      f.push_back(Pos{n, -1});
      return;
    }
    while (n->height != 0) {
      const size_t c = ChildFor<V>(n, prefix);
      for (size_t i = n->count - 1; i > c; --i) f.push_back(Pos{L::Kids(n)[i], -1});
      n = L::Kids(n)[c];
    }
    const size_t lb = LeafLowerBound<V>(n, prefix, false);
    for (size_t i = n->count; i > lb; --i) f.push_back(Pos{n, static_cast<int>(i - 1)});
  }

  static int64_t Check(const NodeBase* n, bool is_root, std::string_view& last, bool& has_last) {
    if (n->count == 0 || n->count > MaxFanout(n->height)) return -1;
    if (!is_root && n->count < MinFanout(n->height)) return -1;
    if (n->height == 0) {
      for (size_t i = 0; i < n->count; ++i) {
        const std::string_view k = L::Key(n, i);
        if (has_last && !(last < k)) return -1;
        if (L::Fingerprints(n)[i] != Fingerprint(k)) return -1;
        last = k;
        has_last = true;
      }
      return n->count;
    }
    int64_t total = 0;
    for (size_t i = 0; i < n->count; ++i) {
      const NodeBase* kid = L::Kids(n)[i];
      if (kid->height + 1 != n->height) return -1;
      if (L::Key(n, i) != MinKey(kid)) return -1;
      if (i > 0) {
        const size_t p = n->prefix_len;
        if (L::Key(n, i).substr(0, p) != L::Key(n, 1).substr(0, p)) return -1;
        if (L::Key(n, i).size() < p || L::Heads(n)[i] != KeyHead(L::Key(n, i), p)) return -1;
      }
      const int64_t sub = Check(kid, false, last, has_last);
      if (sub < 0) return -1;
      total += sub;
    }
    return total;
  }

  static NodeBase* Allocate(int height, size_t count, size_t key_bytes) {
    assert(count > 0 && count <= MaxFanout(height));
    const size_t bytes = L::Bytes(height, count, key_bytes);
    void* mem = ::operator new(bytes);
    NodeBase* n = static_cast<NodeBase*>(mem);
    n->refs.store(1, std::memory_order_relaxed);
    n->count = static_cast<uint16_t>(count);
    n->height = static_cast<uint8_t>(height);
    n->unused = 0;
    n->prefix_len = 0;
    n->unused2 = 0;
    n->key_bytes = static_cast<uint32_t>(key_bytes);
    n->alloc_bytes = static_cast<uint32_t>(bytes);
    AccountNodeBytes(static_cast<int64_t>(bytes), 1);
    return n;
  }

  static void Destroy(const NodeBase* n) {
    if (n->height == 0) {
      V* vals = L::Vals(n);
      for (size_t i = 0; i < n->count; ++i) ValueTraits<V>::Prefetch(vals[i]);
      for (size_t i = 0; i < n->count; ++i) vals[i].~V();
    } else {
      const NodeBase** kids = L::Kids(n);
      for (size_t i = 0; i < n->count; ++i) PrefetchForWrite(kids[i]);
      for (size_t i = 0; i < n->count; ++i) Unref(kids[i]);
    }
    AccountNodeBytes(-static_cast<int64_t>(n->alloc_bytes), -1);
    ::operator delete(const_cast<NodeBase*>(n));
  }

  // Merges two adjacent siblings (same height) into one or two nodes appended to out.
  static void Concat(const NodeBase* a, const NodeBase* b, std::vector<const NodeBase*>& out) {
    if (a->height == 0) {
      std::vector<Item> items;
      items.reserve(a->count + b->count);
      for (const NodeBase* n : {a, b}) {
        for (size_t i = 0; i < n->count; ++i) ValueTraits<V>::Prefetch(L::Vals(n)[i]);
      }
      for (const NodeBase* n : {a, b}) {
        for (size_t i = 0; i < n->count; ++i) {
          items.push_back(Item{L::Key(n, i), L::Fingerprints(n)[i], L::Vals(n)[i]});
        }
      }
      Chunk(items, MakeLeaf, out);
    } else {
      std::vector<Kid> kids;
      kids.reserve(a->count + b->count);
      for (const NodeBase* n : {a, b}) {
        for (size_t i = 0; i < n->count; ++i) PrefetchForWrite(L::Kids(n)[i]);
      }
      for (const NodeBase* n : {a, b}) {
        for (size_t i = 0; i < n->count; ++i) {
          Ref(L::Kids(n)[i]);
          kids.push_back(Kid{L::Kids(n)[i], L::Key(n, i)});
        }
      }
      Chunk(kids, MakeInternal, out);
    }
    // Items hold views of a's and b's keys: release the siblings only after building.
    Unref(a);
    Unref(b);
  }

  // Merges underfull children into a neighbour until every child holds >= MinFanout slots
  // (or only one child is left, which the parent in turn merges away).
  static void Rebalance(std::vector<Kid>& kids) {
    size_t i = 0;
    std::vector<const NodeBase*> merged;
    while (kids.size() > 1 && i < kids.size()) {
      if (kids[i].node->count >= MinFanout(kids[i].node->height)) {
        ++i;
        continue;
      }
      const size_t l = i + 1 < kids.size() ? i : i - 1;
      merged.clear();
      Concat(kids[l].node, kids[l + 1].node, merged);
      kids.erase(kids.begin() + static_cast<ptrdiff_t>(l) + 1);
      kids[l] = FreshKid(merged[0]);
      if (merged.size() > 1) {
        kids.insert(kids.begin() + static_cast<ptrdiff_t>(l) + 1, FreshKid(merged[1]));
      }
      i = l;
    }
  }

  // Applies keys[b..e) to the subtree at n. Returns false (and appends nothing) if nothing
  // changed; otherwise appends the replacement nodes (same height as n, possibly none).
  template <typename Resolve>
  static bool UpdateNode(const NodeBase* n, const std::string_view* keys, size_t b, size_t e,
                         Resolve& resolve, std::vector<const NodeBase*>& out) {
    if (n->height == 0) {
      std::vector<Item> items;
      items.reserve(n->count + (e - b));
      bool changed = false;
      size_t i = 0;
      const uint8_t* fps = L::Fingerprints(n);
      const V* vals = L::Vals(n);
      for (size_t i = 0; i < n->count; ++i) ValueTraits<V>::Prefetch(vals[i]);
      for (size_t j = b; j < e; ++j) {
        const std::string_view k = keys[j];
        while (i < n->count && L::Key(n, i) < k) {
          items.push_back(Item{L::Key(n, i), fps[i], vals[i]});
          ++i;
        }
        const V* old = (i < n->count && L::Key(n, i) == k) ? &vals[i] : nullptr;
        V v{};
        switch (resolve(j, old, &v)) {
          case Action::kKeep:
            if (old != nullptr) items.push_back(Item{k, fps[i], *old});
            break;
          case Action::kSet:
            items.push_back(Item{k, old != nullptr ? fps[i] : Fingerprint(k), std::move(v)});
            changed = true;
            break;
          case Action::kErase:
            changed |= old != nullptr;
            break;
        }
        if (old != nullptr) ++i;
      }
      if (!changed) return false;
      for (; i < n->count; ++i) items.push_back(Item{L::Key(n, i), fps[i], vals[i]});
      Chunk(items, MakeLeaf, out);
      return true;
    }
    std::vector<Kid> kids;
    kids.reserve(n->count + 4);
    bool changed = false;
    std::vector<const NodeBase*> pieces;
    for (size_t c = 0; c < n->count; ++c) PrefetchForWrite(L::Kids(n)[c]);
    size_t j = b;
    for (size_t c = 0; c < n->count; ++c) {
      const NodeBase* child = L::Kids(n)[c];
      size_t end = j;
      if (c + 1 == n->count) {
        end = e;
      } else {
        const std::string_view next_min = L::Key(n, c + 1);
        while (end < e && keys[end] < next_min) ++end;
      }
      pieces.clear();
      if (end > j && UpdateNode(child, keys, j, end, resolve, pieces)) {
        changed = true;
        for (const NodeBase* p : pieces) kids.push_back(FreshKid(p));
      } else {
        Ref(child);
        kids.push_back(Kid{child, L::Key(n, c)});
      }
      j = end;
    }
    if (!changed) {
      for (const Kid& k : kids) Unref(k.node);
      return false;
    }
    Rebalance(kids);
    Chunk(kids, MakeInternal, out);
    return true;
  }
};

}  // namespace snapconf::snapshot_internal
