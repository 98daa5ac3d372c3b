// CallTable: the call manager's calls (and parties) by key, built for a
// million of them: objects live in fixed chunks (stable addresses, slots
// reused), an open-addressing index of 4-byte entries finds a call by
// (peer, call reference, direction), and the parties of one point-to-
// multipoint call hang off that entry in a chain ordered by ENDPOINT_REF.
// Every operation is O(1) in the number of calls (the chain is at most a
// call's parties with one peer).
//
//   CallTable<Call> t;
//   uint32_t slot = t.emplace(key, Call{...});   // key not present
//   if (Call* c = t.find(key)) ...;
//   t.for_each_party(key, [](const CallKey& k, Call& c) { ... });
//   t.erase(key);
//
// T must have members `peer` (MacAddress), `ref` (uint32_t), `originated`
// (bool) and `endpoint` (uint16_t) matching the key it was put in with.
#pragma once

#include <bit>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "miniport/mac_address.h"

namespace cm {

// A call (or a party of one) as the wire names it.
struct CallKey {
  miniport::MacAddress peer;
  uint32_t ref = 0;         // without the direction bit
  bool originated = false;  // we sent the SETUP
  uint16_t party = 0;       // the party's ENDPOINT_REF (0 for point-to-point calls)
  friend bool operator==(const CallKey&, const CallKey&) = default;
};

template <class T>
class CallTable {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFF;

  [[nodiscard]] size_t size() const noexcept { return size_; }

  // The party `k`, or nullptr.
  T* find(const CallKey& k) { return const_cast<T*>(std::as_const(*this).find(k)); }
  const T* find(const CallKey& k) const {
    const uint32_t s = find_slot(k);
    return s == kNone ? nullptr : at(s);
  }
  // The first party (lowest ENDPOINT_REF) of the call `k` names, if any.
  [[nodiscard]] std::optional<CallKey> first_party(const CallKey& k) const {
    const uint32_t s = head(k);
    if (s == kNone) return std::nullopt;
    return key_of(*cell(s).value);
  }
  // Its slot (stable while it lives), or kNone.
  [[nodiscard]] uint32_t find_slot(const CallKey& k) const {
    for (uint32_t s = head(k); s != kNone; s = cell(s).next) {
      const uint16_t e = cell(s).value->endpoint;
      if (e == k.party) return s;
      if (e > k.party) break;  // the chain is ordered
    }
    return kNone;
  }
  // The object in a live slot; nullptr for a free one.
  T* at(uint32_t slot) { return const_cast<T*>(std::as_const(*this).at(slot)); }
  const T* at(uint32_t slot) const {
    if (slot >= cells_) return nullptr;
    const auto& c = cell(slot);
    return c.value ? &*c.value : nullptr;
  }
  [[nodiscard]] static CallKey key_of(const T& v) { return CallKey{v.peer, v.ref, v.originated, v.endpoint}; }

  // Adds `v` under `k` (which must not be present); returns its slot.
  uint32_t emplace(const CallKey& k, T v) {
    uint32_t s;
    if (!free_.empty()) {
      s = free_.back();
      free_.pop_back();
    } else {
      if (cells_ / kChunk >= chunks_.size()) chunks_.push_back(std::make_unique<Cell[]>(kChunk));
      s = cells_++;
    }
    Cell& c = cell(s);
    c.value.emplace(std::move(v));
    ++size_;
    // Into the chain of its call, in ENDPOINT_REF order; a new call gets an
    // index entry.
    const size_t i = probe(k);
    if (index_.empty() || index_[i] == 0) {
      c.next = kNone;
      insert_head(k, s);
      return s;
    }
    uint32_t* link = &index_[i];  // index entries hold slot + 1
    uint32_t cur = *link - 1;
    if (cell(cur).value->endpoint > k.party) {
      c.next = cur;
      *link = s + 1;
      return s;
    }
    while (cell(cur).next != kNone && cell(cell(cur).next).value->endpoint < k.party) cur = cell(cur).next;
    c.next = cell(cur).next;
    cell(cur).next = s;
    return s;
  }

  // Removes the party `k`; false when absent.
  bool erase(const CallKey& k) {
    if (index_.empty()) return false;
    const size_t i = probe(k);
    if (index_[i] == 0) return false;
    uint32_t prev = kNone, cur = index_[i] - 1;
    while (cur != kNone && cell(cur).value->endpoint != k.party) {
      prev = cur;
      cur = cell(cur).next;
    }
    if (cur == kNone) return false;
    const uint32_t next = cell(cur).next;
    if (prev != kNone) cell(prev).next = next;
    else if (next != kNone) index_[i] = next + 1;
    else remove_index(i);
    cell(cur).value.reset();
    free_.push_back(cur);
    --size_;
    if (size_ == 0 && cells_ > kChunk) {
      // A table that emptied after a crowd gives its memory back; one chunk
      // stays (a node with one call coming and going would otherwise map
      // and unmap a chunk per call).
      chunks_.resize(1);
      free_ = {};
      cells_ = 0;
      index_ = {};
      used_ = 0;
    }
    return true;
  }

  // f(const CallKey&, T&) for every party of the call `k` names (its
  // `party` is ignored), in ENDPOINT_REF order. f must not add or remove.
  template <class F>
  void for_each_party(const CallKey& k, F&& f) {
    for (uint32_t s = head(k); s != kNone; s = cell(s).next) f(key_of(*cell(s).value), *cell(s).value);
  }
  // f(const CallKey&, const T&) for every call; f must not add or remove.
  template <class F>
  void for_each(F&& f) const {
    for (uint32_t s = 0; s < cells_; ++s)
      if (const auto& c = cell(s); c.value) f(key_of(*c.value), *c.value);
  }

 private:
  static constexpr uint32_t kChunk = 4096;
  struct Cell {
    std::optional<T> value;
    uint32_t next = kNone;  // the next party of the same call
  };
  Cell& cell(uint32_t s) { return chunks_[s / kChunk][s % kChunk]; }
  const Cell& cell(uint32_t s) const { return chunks_[s / kChunk][s % kChunk]; }

  static uint64_t hash(const CallKey& k) {
    uint64_t m = 0;
    for (uint8_t b : k.peer.bytes) m = (m << 8) | b;
    uint64_t h = (m * 0x9E3779B97F4A7C15ull) ^ (uint64_t{k.ref} << 1 | k.originated);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
  }
  bool matches(uint32_t entry, const CallKey& k) const {
    const T& v = *cell(entry - 1).value;
    return v.ref == k.ref && v.originated == k.originated && v.peer == k.peer;
  }
  // The index position of k's call: its entry, or the empty one it would take.
  size_t probe(const CallKey& k) const {
    if (index_.empty()) return 0;
    const size_t mask = index_.size() - 1;
    for (size_t i = hash(k) & mask;; i = (i + 1) & mask)
      if (index_[i] == 0 || matches(index_[i], k)) return i;
  }
  uint32_t head(const CallKey& k) const {
    if (index_.empty()) return kNone;
    const uint32_t e = index_[probe(k)];
    return e == 0 ? kNone : e - 1;
  }
  void insert_head(const CallKey& k, uint32_t s) {
    if ((used_ + 1) * 2 > index_.size()) grow();
    index_[probe(k)] = s + 1;
    ++used_;
  }
  void grow() {
    std::vector<uint32_t> old = std::exchange(index_, std::vector<uint32_t>(std::max<size_t>(64, index_.size() * 2)));
    const size_t mask = index_.size() - 1;
    for (uint32_t e : old) {
      if (e == 0) continue;
      size_t i = hash(key_of(*cell(e - 1).value)) & mask;
      while (index_[i] != 0) i = (i + 1) & mask;
      index_[i] = e;
    }
  }
  // Backward-shift deletion keeps every probe chain unbroken.
  void remove_index(size_t i) {
    const size_t mask = index_.size() - 1;
    size_t hole = i;
    for (size_t j = (i + 1) & mask; index_[j] != 0; j = (j + 1) & mask) {
      const size_t home = hash(key_of(*cell(index_[j] - 1).value)) & mask;
      // Entry j may fill the hole if its home is not in (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        index_[hole] = index_[j];
        hole = j;
      }
    }
    index_[hole] = 0;
    --used_;
  }

  std::vector<std::unique_ptr<Cell[]>> chunks_;
  uint32_t cells_ = 0;
  std::vector<uint32_t> free_;
  std::vector<uint32_t> index_;  // slot + 1 of each call's first party; 0 = empty
  size_t used_ = 0;              // index entries in use
  size_t size_ = 0;
};

}  // namespace cm

namespace cm {

// Objects by a small dense number that someone else hands out (a VC slot):
// chunks of 4096 allocated as numbers reach them, no per-object allocation.
template <class T>
class SlotVector {
 public:
  T* find(uint32_t n) {
    if (n / kChunk >= chunks_.size() || !chunks_[n / kChunk]) return nullptr;
    auto& v = chunks_[n / kChunk][n % kChunk];
    return v ? &*v : nullptr;
  }
  const T* find(uint32_t n) const { return const_cast<SlotVector*>(this)->find(n); }
  // Puts `v` at n (replacing what was there); returns it.
  T& put(uint32_t n, T v) {
    if (n / kChunk >= chunks_.size()) chunks_.resize(n / kChunk + 1);
    auto& chunk = chunks_[n / kChunk];
    if (!chunk) chunk = std::make_unique<std::optional<T>[]>(kChunk);
    auto& slot = chunk[n % kChunk];
    if (!slot) ++size_;
    slot.emplace(std::move(v));
    return *slot;
  }
  void erase(uint32_t n) {
    if (T* v = find(n)) {
      (void)v;
      chunks_[n / kChunk][n % kChunk].reset();
      --size_;
    }
  }
  [[nodiscard]] size_t size() const noexcept { return size_; }
  // f(uint32_t n, const T&) for each object, in order of n.
  template <class F>
  void for_each(F&& f) const {
    for (size_t c = 0; c < chunks_.size(); ++c)
      if (chunks_[c])
        for (uint32_t i = 0; i < kChunk; ++i)
          if (const auto& v = chunks_[c][i]) f(static_cast<uint32_t>(c * kChunk + i), *v);
  }

 private:
  static constexpr uint32_t kChunk = 4096;
  std::vector<std::unique_ptr<std::optional<T>[]>> chunks_;
  size_t size_ = 0;
};

// Node addresses of the calls' peers, interned: a call holds a 4-byte
// handle instead of a string (a node has few peers and many calls).
class NameTable {
 public:
  static constexpr uint32_t kNone = 0xFFFFFFFF;
  // A handle for `name`, counted once more.
  uint32_t acquire(std::string_view name) {
    if (auto it = ids_.find(name); it != ids_.end()) {
      ++names_[it->second].refs;
      return it->second;
    }
    uint32_t id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
      names_[id] = {std::string(name), 1};
    } else {
      id = static_cast<uint32_t>(names_.size());
      names_.push_back({std::string(name), 1});
    }
    ids_.emplace(names_[id].name, id);
    return id;
  }
  void release(uint32_t id) {
    if (id >= names_.size() || names_[id].refs == 0) return;
    if (--names_[id].refs > 0) return;
    ids_.erase(names_[id].name);
    names_[id].name.clear();
    free_.push_back(id);
  }
  [[nodiscard]] const std::string& name(uint32_t id) const {
    static const std::string kEmpty;
    return id < names_.size() ? names_[id].name : kEmpty;
  }

 private:
  struct Entry {
    std::string name;
    uint32_t refs = 0;
  };
  std::vector<Entry> names_;
  std::map<std::string, uint32_t, std::less<>> ids_;
  std::vector<uint32_t> free_;
};

}  // namespace cm
