// SlotTable: objects behind generation-checked handles. A removed object's
// slot is reused under a new generation, so a handle kept after removal is
// refused instead of reaching the slot's next occupant (the CoNDIS rule that
// a closed AF, a deregistered SAP or a deleted VC is a dead handle).
//
//   SlotTable<Sap, SapId> t;
//   SapId id = t.add(Sap{...});
//   if (Sap* s = t.get(id)) ...;   // nullptr for a dead handle
//   t.remove(id);
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace cm {

// Id must have `uint32_t slot, gen` members and be constructible from them.
template <class T, class Id>
class SlotTable {
 public:
  Id add(T value) {
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      slot = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    Entry& e = slots_[slot];
    e.value.emplace(std::move(value));
    ++live_;
    return Id{slot, e.gen};
  }

  T* get(Id id) {
    if (id.slot >= slots_.size()) return nullptr;
    Entry& e = slots_[id.slot];
    return e.value && e.gen == id.gen ? &*e.value : nullptr;
  }
  const T* get(Id id) const { return const_cast<SlotTable*>(this)->get(id); }

  // Removes a live object; a dead handle is ignored (false).
  bool remove(Id id) {
    if (!get(id)) return false;
    Entry& e = slots_[id.slot];
    e.value.reset();
    ++e.gen;
    free_.push_back(id.slot);
    --live_;
    return true;
  }

  // Calls f(Id, T&) for every live object; f may remove the one it is given.
  template <class F>
  void for_each(F&& f) {
    for (uint32_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].value) f(Id{i, slots_[i].gen}, *slots_[i].value);
  }
  template <class F>
  void for_each(F&& f) const {
    for (uint32_t i = 0; i < slots_.size(); ++i)
      if (slots_[i].value) f(Id{i, slots_[i].gen}, *slots_[i].value);
  }

  [[nodiscard]] size_t size() const noexcept { return live_; }

 private:
  struct Entry {
    uint32_t gen = 0;
    std::optional<T> value;
  };
  std::vector<Entry> slots_;
  std::vector<uint32_t> free_;
  size_t live_ = 0;
};

}  // namespace cm
