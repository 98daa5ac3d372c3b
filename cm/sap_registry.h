// SapRegistry: the SAPs clients listen on (condis-spec R20-R26, PROTOCOL.md
// section 5) and the matching of an incoming SETUP to one of them.
//
//   SapRegistry r;
//   SapId s = *r.add(client, {kSelector, {0, 42}});  // state kRegistering
//   r.find_for_call(setup_sap);                       // dispatchable already (R23)
//   r.complete(s);                                    // kRegistered
//   r.begin_remove(s); r.finish_remove(s);           // R24; calls stay (R25)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "cm/sig_codec.h"
#include "cm/slot_table.h"

namespace cm {

// A SAP handle: slot plus generation, so a handle kept after removal is
// refused rather than reaching a later SAP.
struct SapId {
  uint32_t slot = 0xFFFFFFFF;
  uint32_t gen = 0;
  friend bool operator==(const SapId&, const SapId&) = default;
};

enum class SapState : uint8_t {
  kRegistering,    // the CM has not completed the registration; calls may already come (R23)
  kRegistered,
  kDeregistering,  // the client's handle is dead (R24); no new calls
};

struct SapSpec {
  uint16_t type = 0;
  std::vector<uint8_t> value;
  friend bool operator==(const SapSpec&, const SapSpec&) = default;
};

class SapRegistry {
 public:
  // R20/R21: registers spec for client. Errors: kInvalidData for an unknown
  // sap_type or a malformed value (PROTOCOL.md 5); kSapInUse when a client of
  // this node (the same one included) already holds the SAP, or a second
  // wildcard is asked for.
  [[nodiscard]] Result<SapId> add(uint64_t client, const SapSpec& spec);
  // R22: the registration completed. Errors: kFailure for a dead handle or a
  // SAP not in kRegistering.
  [[nodiscard]] Result<void> complete(SapId id);
  // R24: the client deregisters; its handle is dead from now on. Errors:
  // kFailure for a dead handle or a SAP already deregistering.
  [[nodiscard]] Result<void> begin_remove(SapId id);
  // The CM finished deregistering: the SAP is gone.
  [[nodiscard]] Result<void> finish_remove(SapId id);

  // The SAP an incoming SETUP with this SAP value is offered to, if any:
  // an exact match, else the wildcard (at most one); a SETUP whose SAP is
  // WILDCARD matches only a wildcard; an unknown sap_type only the wildcard.
  // SAPs being deregistered take no calls. nullopt = refuse with cause 88.
  [[nodiscard]] std::optional<SapId> find_for_call(const SapValue& called) const;

  [[nodiscard]] std::optional<SapState> state(SapId id) const;
  [[nodiscard]] uint64_t client(SapId id) const;
  [[nodiscard]] size_t size() const noexcept { return saps_.size(); }
  // f(SapId, client, spec, state) for every SAP.
  template <class F>
  void for_each(F&& f) const {
    saps_.for_each([&](SapId id, const Entry& e) { f(id, e.client, e.spec, e.state); });
  }

 private:
  struct Entry {
    uint64_t client = 0;
    SapSpec spec;
    SapState state = SapState::kRegistering;
  };
  SlotTable<Entry, SapId> saps_;
};

}  // namespace cm
