// AddressFamilies: the call manager's address families and the clients'
// opens of them (condis-spec R8-R19). Pure bookkeeping with the pend/complete
// contract (R1): each operation either finishes at once or says "pending",
// and the completion comes later, exactly once.
//
//   AddressFamilies afs({});
//   afs.register_af(kCoemuAf);                     // R8
//   auto o = afs.open(client, kCoemuAf);           // R11: id (+ pending?)
//   afs.add(o->id, Held::kSap) ... remove(...)     // what the open still holds
//   auto c = afs.close(o->id);                     // R15: done, pending or refused
//   afs.poll_closes([](AfOpenId, uint64_t client) { ...complete... });
//
// What an open holds (SAPs, calls, VCs) is counted here by the call manager,
// so a close knows whether it may finish.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <vector>

#include "cm/slot_table.h"
#include "miniport/status.h"

namespace cm {

using miniport::Result;
using miniport::Status;

// The coemu address family (CO_ADDRESS_FAMILY.AddressFamily); 0x8000+ is
// outside the values ndis.h assigns.
inline constexpr uint32_t kCoemuAf = 0x8C0E;

struct AfOpenId {
  uint32_t slot = 0xFFFFFFFF;
  uint32_t gen = 0;
  friend bool operator==(const AfOpenId&, const AfOpenId&) = default;
};

enum class AfOpenState : uint8_t {
  kOpening,  // the CM pended the open (R12); no other request yet
  kOpen,
  kClosing,  // the client closed; its handle is dead (R15), completion pending
};

// What an open holds: SAPs and VCs its client made (a close fails while any
// remain, R14), calls, and the VCs the CM made for its incoming calls (a
// close pends while either remains, R15).
enum class Held : uint8_t { kSap, kCall, kVc, kCmVc };

struct AfOptions {
  // EMU choices the docs leave open (condis-spec R11, R15):
  bool open_pends = false;         // complete OpenAf later instead of at once
  bool refuse_busy_close = false;  // NOT_ACCEPTED instead of pending while calls remain
};

class AddressFamilies {
 public:
  explicit AddressFamilies(const AfOptions& opts) : opts_(opts) {}

  // R8/R9: a second registration of one AF type fails.
  [[nodiscard]] Result<void> register_af(uint32_t af);
  // R10: the AFs a client is told about when it binds (also later ones).
  [[nodiscard]] const std::vector<uint32_t>& registered() const noexcept { return afs_; }

  struct OpenResult {
    AfOpenId id;
    bool pending = false;  // complete_open() finishes it
  };
  // R11: Errors: kFailure when the AF is not registered or the CM is closing
  // its AFs (R12's NDIS-side failures).
  [[nodiscard]] Result<OpenResult> open(uint64_t client, uint32_t af);
  // R12: completes a pended open with `status`; a failed open is gone.
  // Errors: kFailure for a handle that is not opening.
  [[nodiscard]] Result<void> complete_open(AfOpenId id, Status status);

  // What an open holds; a pending close finishes when all are gone.
  void add(AfOpenId id, Held what);
  void remove(AfOpenId id, Held what);

  struct CloseResult {
    bool pending = false;  // poll_closes() reports it when it finishes
  };
  // R14/R15: closes an open; its handle is dead at once. With calls still
  // live the close pends until they are gone (or, with refuse_busy_close,
  // answers kNotAccepted and changes nothing). Errors: kFailure for a dead
  // handle, a second close, an open not yet completed, or SAPs or VCs still
  // held (NDIS's own check; nothing changes).
  [[nodiscard]] Result<CloseResult> close(AfOpenId id);
  // Finishes pended closes whose open holds nothing now; done(id, client) each.
  template <class Done>
  void poll_closes(Done&& done);

  // R16: the CM closes its AFs: returns the opens to notify (each client must
  // then close); new opens fail from now on.
  [[nodiscard]] std::vector<AfOpenId> begin_cm_close();
  [[nodiscard]] bool cm_closing() const noexcept { return cm_closing_; }

  [[nodiscard]] bool usable(AfOpenId id) const;  // open and not closing
  // f(id, client) for every open that is usable.
  template <class F>
  void for_each_usable(F&& f) const {
    opens_.for_each([&](AfOpenId id, const Entry& e) {
      if (e.state == AfOpenState::kOpen) f(id, e.client);
    });
  }
  [[nodiscard]] uint64_t client(AfOpenId id) const;
  [[nodiscard]] size_t opens() const noexcept { return opens_.size(); }

 private:
  struct Entry {
    uint64_t client = 0;
    uint32_t af = 0;
    AfOpenState state = AfOpenState::kOpening;
    uint32_t held[4] = {0, 0, 0, 0};
  };
  static bool idle(const Entry& e) {
    return std::all_of(std::begin(e.held), std::end(e.held), [](uint32_t n) { return n == 0; });
  }

  AfOptions opts_;
  std::vector<uint32_t> afs_;
  SlotTable<Entry, AfOpenId> opens_;
  bool cm_closing_ = false;
};

template <class Done>
void AddressFamilies::poll_closes(Done&& done) {
  std::vector<std::pair<AfOpenId, uint64_t>> finished;
  opens_.for_each([&](AfOpenId id, const Entry& e) {
    if (e.state == AfOpenState::kClosing && idle(e)) finished.emplace_back(id, e.client);
  });
  for (auto [id, client] : finished) {
    opens_.remove(id);
    done(id, client);
  }
}

}  // namespace cm
