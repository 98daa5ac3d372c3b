#include "cm/sap_registry.h"

#include <algorithm>

namespace cm {

Result<SapId> SapRegistry::add(uint64_t client, const SapSpec& spec) {
  const SapValue v{spec.type, spec.value};
  const bool known = spec.type >= static_cast<uint16_t>(SapType::kSelector) &&
                     spec.type <= static_cast<uint16_t>(SapType::kWildcard);
  // The CM "does not recognise the SAP specification" (R21): INVALID_DATA.
  if (!known || !valid_sap(v)) return miniport::fail(Status::kInvalidData);
  bool taken = false;
  // A SAP being deregistered still holds its value until it is gone.
  saps_.for_each([&](SapId, const Entry& e) { taken |= e.spec == spec; });
  if (taken) return miniport::fail(Status::kSapInUse);
  return saps_.add(Entry{client, spec, SapState::kRegistering});
}

Result<void> SapRegistry::complete(SapId id) {
  Entry* e = saps_.get(id);
  if (!e || e->state != SapState::kRegistering) return miniport::fail(Status::kFailure);
  e->state = SapState::kRegistered;
  return {};
}

Result<void> SapRegistry::begin_remove(SapId id) {
  Entry* e = saps_.get(id);
  if (!e || e->state == SapState::kDeregistering) return miniport::fail(Status::kFailure);
  e->state = SapState::kDeregistering;
  return {};
}

Result<void> SapRegistry::finish_remove(SapId id) {
  Entry* e = saps_.get(id);
  if (!e || e->state != SapState::kDeregistering) return miniport::fail(Status::kFailure);
  saps_.remove(id);
  return {};
}

std::optional<SapId> SapRegistry::find_for_call(const SapValue& called) const {
  std::optional<SapId> wildcard, exact;
  const bool wants_wildcard = called.type == static_cast<uint16_t>(SapType::kWildcard);
  saps_.for_each([&](SapId id, const Entry& e) {
    if (e.state == SapState::kDeregistering) return;
    if (e.spec.type == static_cast<uint16_t>(SapType::kWildcard)) {
      wildcard = id;
    } else if (!wants_wildcard && e.spec.type == called.type && e.spec.value.size() == called.value.size() &&
               std::equal(e.spec.value.begin(), e.spec.value.end(), called.value.begin())) {
      exact = id;
    }
  });
  return exact ? exact : wildcard;
}

std::optional<SapState> SapRegistry::state(SapId id) const {
  const Entry* e = saps_.get(id);
  return e ? std::optional(e->state) : std::nullopt;
}

uint64_t SapRegistry::client(SapId id) const {
  const Entry* e = saps_.get(id);
  return e ? e->client : 0;
}

}  // namespace cm
