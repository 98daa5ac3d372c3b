#include "cm/address_family.h"

#include <algorithm>

namespace cm {

Result<void> AddressFamilies::register_af(uint32_t af) {
  if (std::find(afs_.begin(), afs_.end(), af) != afs_.end()) return miniport::fail(Status::kFailure);
  afs_.push_back(af);
  return {};
}

Result<AddressFamilies::OpenResult> AddressFamilies::open(uint64_t client, uint32_t af) {
  if (cm_closing_ || std::find(afs_.begin(), afs_.end(), af) == afs_.end()) return miniport::fail(Status::kFailure);
  const AfOpenId id =
      opens_.add(Entry{client, af, opts_.open_pends ? AfOpenState::kOpening : AfOpenState::kOpen, {0, 0, 0, 0}});
  return OpenResult{id, opts_.open_pends};
}

Result<void> AddressFamilies::complete_open(AfOpenId id, Status status) {
  Entry* e = opens_.get(id);
  if (!e || e->state != AfOpenState::kOpening) return miniport::fail(Status::kFailure);
  if (status == Status::kSuccess) {
    e->state = AfOpenState::kOpen;
  } else {
    opens_.remove(id);  // R12: a failed open leaves nothing behind
  }
  return {};
}

void AddressFamilies::add(AfOpenId id, Held what) {
  if (Entry* e = opens_.get(id)) ++e->held[static_cast<int>(what)];
}

void AddressFamilies::remove(AfOpenId id, Held what) {
  // A closing open's handle is dead to its client, but the CM still
  // removes what it held until the close finishes.
  if (Entry* e = opens_.get(id); e && e->held[static_cast<int>(what)] > 0) --e->held[static_cast<int>(what)];
}

Result<AddressFamilies::CloseResult> AddressFamilies::close(AfOpenId id) {
  Entry* e = opens_.get(id);
  if (!e || e->state == AfOpenState::kClosing) return miniport::fail(Status::kFailure);  // R15: second close
  if (e->state == AfOpenState::kOpening) return miniport::fail(Status::kFailure);  // R12: nothing before completion
  // R15: NDIS itself fails the close while SAPs or VCs remain (R14 says the
  // client deregisters and deletes them first); only live calls reach the
  // CM's choice of pending or refusing.
  if (e->held[static_cast<int>(Held::kSap)] || e->held[static_cast<int>(Held::kVc)])
    return miniport::fail(Status::kFailure);
  if (!idle(*e)) {
    if (opts_.refuse_busy_close) return miniport::fail(Status::kNotAccepted);
    e->state = AfOpenState::kClosing;  // R15 (preferred): pend until it holds nothing
    return CloseResult{true};
  }
  opens_.remove(id);
  return CloseResult{false};
}

std::vector<AfOpenId> AddressFamilies::begin_cm_close() {
  cm_closing_ = true;
  std::vector<AfOpenId> out;
  opens_.for_each([&](AfOpenId id, const Entry& e) {
    if (e.state != AfOpenState::kClosing) out.push_back(id);
  });
  return out;
}

bool AddressFamilies::usable(AfOpenId id) const {
  const Entry* e = opens_.get(id);
  return e && e->state == AfOpenState::kOpen;
}

uint64_t AddressFamilies::client(AfOpenId id) const {
  const Entry* e = opens_.get(id);
  return e ? e->client : 0;
}

}  // namespace cm
