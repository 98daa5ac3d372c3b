#include "cm/sap_registry.h"

namespace cm {

SapRegistry::Entry* SapRegistry::get(SapId id) {
  if (id.slot >= slots_.size()) return nullptr;
  Entry& e = slots_[id.slot];
  return e.live && e.gen == id.gen ? &e : nullptr;
}

const SapRegistry::Entry* SapRegistry::get(SapId id) const { return const_cast<SapRegistry*>(this)->get(id); }

Result<SapId> SapRegistry::add(uint64_t client, const SapSpec& spec) {
  const SapValue v{spec.type, spec.value};
  const bool known = spec.type >= static_cast<uint16_t>(SapType::kSelector) &&
                     spec.type <= static_cast<uint16_t>(SapType::kWildcard);
  // The CM "does not recognise the SAP specification" (R21): INVALID_DATA.
  if (!known || !valid_sap(v)) return miniport::fail(Status::kInvalidData);
  for (const Entry& e : slots_) {
    // A SAP being deregistered still holds its value until it is gone.
    if (e.live && e.spec == spec) return miniport::fail(Status::kSapInUse);
  }
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
  e.spec = spec;
  e.state = SapState::kRegistering;
  ++live_;
  return SapId{slot, e.gen};
}

Result<void> SapRegistry::complete(SapId id) {
  Entry* e = get(id);
  if (!e || e->state != SapState::kRegistering) return miniport::fail(Status::kFailure);
  e->state = SapState::kRegistered;
  return {};
}

Result<void> SapRegistry::begin_remove(SapId id) {
  Entry* e = get(id);
  if (!e || e->state == SapState::kDeregistering) return miniport::fail(Status::kFailure);
  e->state = SapState::kDeregistering;
  return {};
}

Result<void> SapRegistry::finish_remove(SapId id) {
  Entry* e = get(id);
  if (!e || e->state != SapState::kDeregistering) return miniport::fail(Status::kFailure);
  e->live = false;
  e->spec = {};
  ++e->gen;
  free_.push_back(id.slot);
  --live_;
  return {};
}

std::optional<SapId> SapRegistry::find_for_call(const SapValue& called) const {
  std::optional<SapId> wildcard;
  const bool wants_wildcard = called.type == static_cast<uint16_t>(SapType::kWildcard);
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    const Entry& e = slots_[i];
    if (!e.live || e.state == SapState::kDeregistering) continue;
    if (e.spec.type == static_cast<uint16_t>(SapType::kWildcard)) {
      wildcard = SapId{i, e.gen};
      continue;
    }
    if (!wants_wildcard && e.spec.type == called.type && e.spec.value.size() == called.value.size() &&
        std::equal(e.spec.value.begin(), e.spec.value.end(), called.value.begin()))
      return SapId{i, e.gen};
  }
  return wildcard;
}

std::optional<SapState> SapRegistry::state(SapId id) const {
  const Entry* e = get(id);
  return e ? std::optional(e->state) : std::nullopt;
}

uint64_t SapRegistry::client(SapId id) const {
  const Entry* e = get(id);
  return e ? e->client : 0;
}

}  // namespace cm
