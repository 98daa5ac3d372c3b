#include "cm/address_family.h"

#include <algorithm>

namespace cm {

AddressFamilies::Entry* AddressFamilies::get(AfOpenId id) {
  if (id.slot >= slots_.size()) return nullptr;
  Entry& e = slots_[id.slot];
  return e.live && e.gen == id.gen ? &e : nullptr;
}

const AddressFamilies::Entry* AddressFamilies::get(AfOpenId id) const {
  return const_cast<AddressFamilies*>(this)->get(id);
}

void AddressFamilies::release(uint32_t slot) {
  Entry& e = slots_[slot];
  e.live = false;
  ++e.gen;  // old handles are refused from now on
  free_.push_back(slot);
  --live_;
}

Result<void> AddressFamilies::register_af(uint32_t af) {
  if (std::find(afs_.begin(), afs_.end(), af) != afs_.end()) return miniport::fail(Status::kFailure);
  afs_.push_back(af);
  return {};
}

Result<AddressFamilies::OpenResult> AddressFamilies::open(uint64_t client, uint32_t af) {
  if (cm_closing_ || std::find(afs_.begin(), afs_.end(), af) == afs_.end()) return miniport::fail(Status::kFailure);
  uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Entry& e = slots_[slot];
  e.live = true;
  e.client = client;
  e.af = af;
  e.state = opts_.open_pends ? AfOpenState::kOpening : AfOpenState::kOpen;
  std::fill(std::begin(e.held), std::end(e.held), 0u);
  ++live_;
  return OpenResult{AfOpenId{slot, e.gen}, opts_.open_pends};
}

Result<void> AddressFamilies::complete_open(AfOpenId id, Status status) {
  Entry* e = get(id);
  if (!e || e->state != AfOpenState::kOpening) return miniport::fail(Status::kFailure);
  if (status == Status::kSuccess) {
    e->state = AfOpenState::kOpen;
  } else {
    release(id.slot);  // R12: a failed open leaves nothing behind
  }
  return {};
}

void AddressFamilies::add(AfOpenId id, Held what) {
  if (Entry* e = get(id)) ++e->held[static_cast<int>(what)];
}

void AddressFamilies::remove(AfOpenId id, Held what) {
  // A closing open's handle is dead to its client, but the CM still removes
  // what it held: look the slot up by generation only.
  if (Entry* e = get(id); e && e->held[static_cast<int>(what)] > 0) --e->held[static_cast<int>(what)];
}

Result<AddressFamilies::CloseResult> AddressFamilies::close(AfOpenId id) {
  Entry* e = get(id);
  if (!e || e->state == AfOpenState::kClosing) return miniport::fail(Status::kFailure);  // R15: second close
  if (e->state == AfOpenState::kOpening) return miniport::fail(Status::kFailure);  // R12: nothing before completion
  if (!idle(*e)) {
    if (opts_.refuse_busy_close) return miniport::fail(Status::kNotAccepted);
    e->state = AfOpenState::kClosing;  // R15 (preferred): pend until it holds nothing
    return CloseResult{true};
  }
  release(id.slot);
  return CloseResult{false};
}

std::vector<AfOpenId> AddressFamilies::begin_cm_close() {
  cm_closing_ = true;
  std::vector<AfOpenId> out;
  for (uint32_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].live && slots_[i].state != AfOpenState::kClosing) out.push_back(AfOpenId{i, slots_[i].gen});
  return out;
}

bool AddressFamilies::usable(AfOpenId id) const {
  const Entry* e = get(id);
  return e && e->state == AfOpenState::kOpen;
}

uint64_t AddressFamilies::client(AfOpenId id) const {
  const Entry* e = get(id);
  return e ? e->client : 0;
}

}  // namespace cm
