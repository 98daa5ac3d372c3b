// VcTable: the node's virtual circuits, indexed by the label (VCI) peers put
// in DATA frames. The control side creates, activates, deactivates and deletes
// VCs (condis-spec R27-R34); I/O threads look labels up with no lock; client
// threads begin sends with no lock.
//
//   VcTable t;
//   VcId vc = *t.create(/*owner=*/42);
//   t.activate(vc, {.peer = mac, .tx_vci = peer_label});   // R32
//   uint32_t mine = t.rx_vci(vc);        // announce this label to the peer
//   auto hit = t.lookup_rx(vci, src);    // I/O thread, per frame
//   t.deactivate(vc);                    // R34: completes in poll_deactivations()
//
// Labels: switched VCs get (generation << 20 | slot), always >= 2^20, and a
// new generation after each deactivation, so a late frame for an old call
// never reaches a new one. PVCs use the operator's label, which must lie in
// 1..2^20-1. Up to 2^20 (1,048,576) VCs, stored in lazily allocated chunks.
//
// Reclamation: a deactivation completes only when (a) every I/O thread has
// passed a quiescent point since it began (Qsbr), (b) no send is in flight and
// (c) every indicated receive was returned (R34, R75). A deleted slot is
// reused only after another grace period.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "miniport/mac_address.h"
#include "miniport/qsbr.h"
#include "miniport/status.h"

namespace miniport {

inline constexpr uint32_t kPvcVciLimit = 1u << 20;  // PVC labels are 1..kPvcVciLimit-1
inline constexpr uint32_t kMaxVcs = 1u << 20;
inline constexpr uint32_t kMaxLeaves = 64;  // leaves of one point-to-multipoint VC

// A VC handle: slot plus the generation it was created in, so a handle kept
// after delete_vc() is refused instead of reaching the slot's next owner.
struct VcId {
  static constexpr uint32_t kNone = 0xFFFFFFFF;
  uint32_t slot = kNone;
  uint32_t gen = 0;
  [[nodiscard]] bool valid() const noexcept { return slot != kNone; }
  friend bool operator==(const VcId&, const VcId&) = default;
};

enum class VcState : uint8_t {
  kInactive = 0,      // created, or deactivated: may be activated or deleted
  kActive = 1,        // data may flow
  kDeactivating = 2,  // draining sends and returned receives (R34)
};

// What the miniport needs from the call parameters at activation (R32).
struct VcParams {
  MacAddress peer;          // frames go to, and are accepted only from, this MAC
  uint32_t tx_vci = 0;      // the peer's label for this VC (0 = receive-only)
  uint32_t pvc_rx_vci = 0;  // PVC: the configured label we receive on; 0 = switched VC
  uint16_t max_sdu = 0;     // largest payload this VC sends (0 = the link's limit)
  bool transmit = true;     // CO_MEDIA_PARAMETERS TRANSMIT_VC
  bool receive = true;      // CO_MEDIA_PARAMETERS RECEIVE_VC
  bool multipoint = false;  // a point-to-multipoint root: sends go to its leaves (set_leaf), not to `peer`
  // Guaranteed and controlled-load VCs are shaped to their FLOWSPEC's token
  // bucket: bytes/s and bytes (frames on the wire). 0 = not shaped.
  uint32_t shape_rate = 0;
  uint32_t shape_bucket = 0;
};

// One leaf of a point-to-multipoint root VC: where a copy of each packet goes.
struct LeafTarget {
  MacAddress peer;
  uint32_t tx_vci = 0;
};

struct VcCounters {
  uint64_t rx_frames = 0, rx_bytes = 0, tx_frames = 0, tx_bytes = 0;
  uint64_t rx_dropped = 0;  // delivered to this VC's label but dropped (ring full, pool empty)
  uint64_t tx_refused = 0;  // sends refused (not active, ring full, too long)
};

class VcTable {
 public:
  // max_vcs: 1..kMaxVcs.
  explicit VcTable(uint32_t max_vcs = kMaxVcs);
  ~VcTable();
  VcTable(const VcTable&) = delete;
  VcTable& operator=(const VcTable&) = delete;

  // ---- control side (one thread) ----

  // R27: a new inactive VC owned by `owner` (an opaque context for upcalls).
  // Errors: kResources when max_vcs are in use (or still being reclaimed).
  [[nodiscard]] Result<VcId> create(uint64_t owner);

  // R32 activate / R33 re-activate with new parameters. Errors: kFailure for a
  // stale or unknown handle; kClosing while deactivation is pending;
  // kInvalidData for bad parameters (a PVC label out of range or taken, a PVC
  // label changed on re-activation, a multicast peer, neither direction):
  // a failed re-activation leaves the previous parameters in force.
  [[nodiscard]] Result<void> activate(VcId id, const VcParams& p);

  // R34: starts deactivation; receives stop at once, sends are refused, and
  // it completes in poll_deactivations(). Errors: kFailure for a bad handle;
  // kNotAccepted when the VC is not active (already deactivated: R34's
  // NdisMCmDeactivateVc rule); kClosing when deactivation is already pending.
  [[nodiscard]] Result<void> deactivate(VcId id);

  // Completes the deactivations that have drained; calls done(VcId) for each.
  // Returns how many are still pending.
  template <class Done>
  size_t poll_deactivations(Done&& done);

  // Point-to-multipoint roots (PROTOCOL.md 2): a VC with leaves sends one
  // copy of each packet to every leaf, each with that leaf's label. Sets or
  // clears leaf `i`; a deleted VC loses its leaves. Errors: kFailure for a
  // bad handle; kInvalidData for an index >= kMaxLeaves, a multicast or zero
  // peer or a zero label.
  [[nodiscard]] Result<void> set_leaf(VcId id, uint32_t i, const MacAddress& peer, uint32_t tx_vci);
  [[nodiscard]] Result<void> clear_leaf(VcId id, uint32_t i);

  // R30: deletes an inactive VC. Errors: kFailure for a bad handle;
  // kNotAccepted while active; kClosing while deactivation is pending.
  [[nodiscard]] Result<void> remove(VcId id);

  // The label peers must put in DATA frames for this VC: for a switched VC,
  // valid until its deactivation completes (then a new one is drawn); 0 for a
  // bad handle.
  [[nodiscard]] uint32_t rx_vci(VcId id) const noexcept;
  [[nodiscard]] VcState state(VcId id) const noexcept;
  // Any thread; 0 for a dead handle.
  [[nodiscard]] uint64_t owner(VcId id) const noexcept;
  // Any thread: whether the handle is live and its VC active (atomics only).
  [[nodiscard]] bool tx_active(VcId id) const noexcept;
  [[nodiscard]] VcCounters counters(VcId id) const noexcept;
  [[nodiscard]] uint32_t in_use() const noexcept { return in_use_; }
  [[nodiscard]] uint32_t max_vcs() const noexcept { return max_; }

  // ---- I/O threads (lock-free) ----

  Qsbr& qsbr() noexcept { return qsbr_; }

  enum class RxMiss : uint8_t { kNone, kUnknownVci, kNotActivated, kForeign };
  struct RxHit {
    RxMiss miss = RxMiss::kNone;
    VcId id;
    uint64_t owner = 0;
  };
  // Finds the active VC that receives on `vci` from `src`. On a hit the VC's
  // outstanding-receive count is raised: call rx_returned() when the owner
  // gives the frame back (or rx_dropped() if it never reached the owner).
  [[nodiscard]] RxHit lookup_rx(uint32_t vci, const MacAddress& src) noexcept;
  void rx_delivered(VcId id, uint64_t bytes) noexcept;
  void rx_dropped(VcId id) noexcept;   // also returns the receive
  void rx_returned(VcId id, uint32_t n = 1) noexcept;
  // VC-scoped status (R84) without a flood: take_status() says whether a
  // loss on this VC may be indicated now (true once, until rearm_status(),
  // which the indication's receiver calls once it has been delivered).
  [[nodiscard]] bool take_status(VcId id) noexcept;
  void rearm_status(VcId id) noexcept;

  // ---- senders (any thread, lock-free) ----

  struct TxGrant {
    Status status = Status::kSuccess;  // kSuccess, kVcNotActivated, kFailure (bad handle), kNotSupported (receive-only)
    MacAddress peer;
    uint32_t tx_vci = 0;
    uint16_t max_sdu = 0;
    bool multipoint = false;  // send one copy to each of leaves()
    uint32_t shape_rate = 0;   // VcParams::shape_rate / shape_bucket
    uint32_t shape_bucket = 0;
  };
  // Begins one send: on kSuccess the VC cannot finish deactivating until
  // end_tx() is called for it. R72: an inactive VC yields kVcNotActivated.
  [[nodiscard]] TxGrant begin_tx(VcId id) noexcept;
  void end_tx(VcId id, uint64_t bytes, bool sent) noexcept;
  // The VC's leaves, copied into `out` (at most kMaxLeaves); 0 for a VC
  // without leaves. Lock-free; call between begin_tx and end_tx.
  [[nodiscard]] size_t leaves(VcId id, std::span<LeafTarget> out) const noexcept;
  // Ends a begun send that never left the node, counting nothing.
  void cancel_tx(VcId id) noexcept;

 private:
  struct Slot;
  Slot* slot_ptr(uint32_t idx) const noexcept;
  Slot* checked(VcId id) const noexcept;  // control side: live handle or nullptr
  Result<void> ensure_chunk(uint32_t idx);
  void write_params(Slot& s, const VcParams& p) noexcept;
  bool pvc_map(uint32_t vci, uint32_t slot_plus_one);
  uint32_t pvc_lookup(uint32_t vci) const noexcept;
  bool try_complete(uint32_t slot);
  uint32_t slot_gen(uint32_t slot) const noexcept;

  static constexpr uint32_t kChunkBits = 12;
  static constexpr uint32_t kChunk = 1u << kChunkBits;
  static constexpr uint32_t kChunks = kMaxVcs / kChunk;

  const uint32_t max_;
  Qsbr qsbr_;
  std::unique_ptr<std::atomic<Slot*>[]> chunks_;
  std::unique_ptr<std::atomic<std::atomic<uint32_t>*>[]> pvc_chunks_;
  // Control-only bookkeeping.
  uint32_t next_unused_ = 0;
  uint32_t in_use_ = 0;
  std::vector<uint32_t> free_;
  struct Retired {
    uint32_t slot;
    uint64_t epoch;
  };
  std::deque<Retired> retired_;  // deleted, reusable once their epoch passed
  struct Pending {
    uint32_t slot;
    uint64_t epoch;
  };
  std::vector<Pending> deactivating_;
};

template <class Done>
size_t VcTable::poll_deactivations(Done&& done) {
  size_t kept = 0;
  for (size_t i = 0; i < deactivating_.size(); ++i) {
    const Pending p = deactivating_[i];
    if (qsbr_.passed(p.epoch) && try_complete(p.slot)) {
      done(VcId{p.slot, slot_gen(p.slot)});
    } else {
      deactivating_[kept++] = p;
    }
  }
  deactivating_.resize(kept);
  return kept;
}

}  // namespace miniport
