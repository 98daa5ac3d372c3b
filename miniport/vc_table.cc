#include "miniport/vc_table.h"

#include <new>

namespace miniport {

// A root's leaves: each entry under its own sequence lock, so a sender never
// reads one leaf's MAC with another's label; allocated on the first leaf and
// kept with the slot (nothing to reclaim while senders look).
struct Leaves {
  struct Entry {
    std::atomic<uint32_t> seq{0};
    std::atomic<uint64_t> mac{0};  // peer MAC (48 bits) | set << 48
    std::atomic<uint32_t> vci{0};
  };
  Entry e[kMaxLeaves];
};

// Two cache lines: a node holds up to a million (see bench scale), so the
// fields are packed by size; the I/O side's hot words share the first line.
struct alignas(kCacheLine) VcTable::Slot {
  ~Slot() { delete leaves.load(std::memory_order_relaxed); }
  // Read by I/O threads and senders.
  std::atomic<uint32_t> rx_vci{0};  // label readers match; 0 = none
  std::atomic<uint32_t> gen{0};     // handle generation, bumped at delete
  std::atomic<uint64_t> owner{0};
  // Parameters under a sequence lock: three words, no pointer to reclaim.
  std::atomic<uint32_t> pseq{0};
  std::atomic<uint8_t> state{static_cast<uint8_t>(VcState::kInactive)};
  std::atomic<bool> status_armed{true};  // the next receive loss may be indicated (R84)
  uint16_t label_gen = 1;                // control-only
  std::atomic<uint64_t> pword0{0};  // peer MAC (48 bits) | transmit << 48 | receive << 49 | multipoint << 50
  std::atomic<uint64_t> pword1{0};  // tx_vci << 32 | max_sdu
  std::atomic<uint64_t> pword2{0};  // shape_rate << 32 | shape_bucket
  // In-flight work that a deactivation waits for (at most the pool's size).
  std::atomic<int32_t> tx_inflight{0};
  std::atomic<int32_t> rx_outstanding{0};
  // Counters (relaxed: statistics only).
  std::atomic<uint64_t> rx_frames{0}, rx_bytes{0}, tx_frames{0}, tx_bytes{0}, rx_dropped{0}, tx_refused{0};
  std::atomic<Leaves*> leaves{nullptr};
  std::atomic<uint32_t> leaf_count{0};
  // Control-only.
  uint32_t pvc_vci = 0;
  bool live = false;
};

namespace {

struct Params {
  MacAddress peer;
  bool transmit = false, receive = false, multipoint = false;
  uint32_t tx_vci = 0;
  uint16_t max_sdu = 0;
  uint32_t shape_rate = 0, shape_bucket = 0;
};

uint64_t pack0(const VcParams& p) {
  uint64_t w = 0;
  for (int i = 0; i < 6; ++i) w = (w << 8) | p.peer.bytes[i];
  return w | (uint64_t{p.transmit} << 48) | (uint64_t{p.receive} << 49) | (uint64_t{p.multipoint} << 50);
}

template <class S>
Params read_params(const S& s) noexcept {
  Params p;
  for (;;) {
    // Acquire loads of the words keep the second sequence read after them
    // (and pair with the writer's release stores); no fence, which TSan
    // cannot model.
    const uint32_t a = s.pseq.load(std::memory_order_acquire);
    const uint64_t w0 = s.pword0.load(std::memory_order_acquire);
    const uint64_t w1 = s.pword1.load(std::memory_order_acquire);
    const uint64_t w2 = s.pword2.load(std::memory_order_acquire);
    if ((a & 1) == 0 && s.pseq.load(std::memory_order_relaxed) == a) {
      for (int i = 5, k = 0; i >= 0; --i, ++k) p.peer.bytes[i] = static_cast<uint8_t>(w0 >> (8 * k));
      p.transmit = (w0 >> 48) & 1;
      p.receive = (w0 >> 49) & 1;
      p.multipoint = (w0 >> 50) & 1;
      p.tx_vci = static_cast<uint32_t>(w1 >> 32);
      p.max_sdu = static_cast<uint16_t>(w1);
      p.shape_rate = static_cast<uint32_t>(w2 >> 32);
      p.shape_bucket = static_cast<uint32_t>(w2);
      return p;
    }
  }
}

constexpr uint32_t svc_label(uint16_t gen, uint32_t slot) { return (uint32_t{gen} << 20) | slot; }

}  // namespace

VcTable::VcTable(uint32_t max_vcs)
    : max_(max_vcs == 0 || max_vcs > kMaxVcs ? kMaxVcs : max_vcs),
      chunks_(std::make_unique<std::atomic<Slot*>[]>(kChunks)),
      pvc_chunks_(std::make_unique<std::atomic<std::atomic<uint32_t>*>[]>(kChunks)) {
  static_assert(sizeof(Slot) <= 2 * kCacheLine, "a slot stays within two cache lines");
}

VcTable::~VcTable() {
  for (uint32_t c = 0; c < kChunks; ++c) {
    delete[] chunks_[c].load(std::memory_order_relaxed);
    delete[] pvc_chunks_[c].load(std::memory_order_relaxed);
  }
}

VcTable::Slot* VcTable::slot_ptr(uint32_t idx) const noexcept {
  if (idx >= max_) return nullptr;
  Slot* chunk = chunks_[idx >> kChunkBits].load(std::memory_order_acquire);  // A: pairs with ensure_chunk
  return chunk ? &chunk[idx & (kChunk - 1)] : nullptr;
}

VcTable::Slot* VcTable::checked(VcId id) const noexcept {
  Slot* s = slot_ptr(id.slot);
  if (!s || !s->live || s->gen.load(std::memory_order_relaxed) != id.gen) return nullptr;
  return s;
}

uint32_t VcTable::slot_gen(uint32_t slot) const noexcept {
  const Slot* s = slot_ptr(slot);
  return s ? s->gen.load(std::memory_order_relaxed) : 0;
}

Result<void> VcTable::ensure_chunk(uint32_t idx) {
  auto& c = chunks_[idx >> kChunkBits];
  if (c.load(std::memory_order_relaxed)) return {};
  Slot* chunk = new (std::nothrow) Slot[kChunk];
  if (!chunk) return fail(Status::kResources);
  c.store(chunk, std::memory_order_release);  // R: publishes constructed slots
  return {};
}

Result<VcId> VcTable::create(uint64_t owner) {
  uint32_t idx;
  // Deleted slots come back once no reader can still be looking at them.
  while (!retired_.empty() && qsbr_.passed(retired_.front().epoch)) {
    free_.push_back(retired_.front().slot);
    retired_.pop_front();
  }
  if (!free_.empty()) {
    idx = free_.back();
    free_.pop_back();
  } else if (next_unused_ < max_) {
    idx = next_unused_;
    COEMU_TRY(ensure_chunk(idx));
    ++next_unused_;
  } else {
    return fail(Status::kResources);
  }
  Slot& s = *slot_ptr(idx);
  s.live = true;
  // The label is known from creation on (the CM announces it before the
  // call is up); frames on it count as "not activated" until activation.
  s.rx_vci.store(svc_label(s.label_gen, idx), std::memory_order_release);
  s.owner.store(owner, std::memory_order_relaxed);
  for (auto* c : {&s.rx_frames, &s.rx_bytes, &s.tx_frames, &s.tx_bytes, &s.rx_dropped, &s.tx_refused})
    c->store(0, std::memory_order_relaxed);
  s.status_armed.store(true, std::memory_order_relaxed);
  s.state.store(static_cast<uint8_t>(VcState::kInactive), std::memory_order_release);
  ++in_use_;
  return VcId{idx, s.gen.load(std::memory_order_relaxed)};
}

bool VcTable::pvc_map(uint32_t vci, uint32_t slot_plus_one) {
  auto& c = pvc_chunks_[vci >> kChunkBits];
  std::atomic<uint32_t>* chunk = c.load(std::memory_order_relaxed);
  if (!chunk) {
    chunk = new (std::nothrow) std::atomic<uint32_t>[kChunk];
    if (!chunk) return false;
    for (uint32_t i = 0; i < kChunk; ++i) chunk[i].store(0, std::memory_order_relaxed);
    c.store(chunk, std::memory_order_release);
  }
  chunk[vci & (kChunk - 1)].store(slot_plus_one, std::memory_order_release);
  return true;
}

uint32_t VcTable::pvc_lookup(uint32_t vci) const noexcept {
  const std::atomic<uint32_t>* chunk = pvc_chunks_[vci >> kChunkBits].load(std::memory_order_acquire);
  return chunk ? chunk[vci & (kChunk - 1)].load(std::memory_order_acquire) : 0;
}

void VcTable::write_params(Slot& s, const VcParams& p) noexcept {
  const uint32_t q = s.pseq.load(std::memory_order_relaxed);
  s.pseq.store(q + 1, std::memory_order_relaxed);  // odd: readers retry
  // Release: a reader that sees a new word also sees the odd sequence, and
  // its second sequence read then tells it to retry.
  s.pword0.store(pack0(p), std::memory_order_release);
  s.pword1.store((uint64_t{p.tx_vci} << 32) | p.max_sdu, std::memory_order_release);
  s.pword2.store((uint64_t{p.shape_rate} << 32) | p.shape_bucket, std::memory_order_release);
  s.pseq.store(q + 2, std::memory_order_release);
}

Result<void> VcTable::activate(VcId id, const VcParams& p) {
  Slot* s = checked(id);
  if (!s) return fail(Status::kFailure);
  const auto st = static_cast<VcState>(s->state.load(std::memory_order_relaxed));
  if (st == VcState::kDeactivating) return fail(Status::kClosing);
  // Validate everything before changing anything (R33: a failed
  // re-activation leaves the old parameters in force).
  if (!p.transmit && !p.receive) return fail(Status::kInvalidData);
  if (p.transmit && p.tx_vci == 0) return fail(Status::kInvalidData);
  if (p.peer.is_multicast() || p.peer == MacAddress{}) return fail(Status::kInvalidData);
  if (p.pvc_rx_vci != 0) {
    if (p.pvc_rx_vci >= kPvcVciLimit) return fail(Status::kInvalidData);
    const uint32_t owner = pvc_lookup(p.pvc_rx_vci);
    if (owner != 0 && owner != id.slot + 1) return fail(Status::kInvalidData);  // label taken
  }
  if (st == VcState::kActive && p.pvc_rx_vci != s->pvc_vci) return fail(Status::kInvalidData);

  write_params(*s, p);
  if (st == VcState::kInactive) {
    if (p.pvc_rx_vci != 0) {
      if (!pvc_map(p.pvc_rx_vci, id.slot + 1)) return fail(Status::kResources);
      s->pvc_vci = p.pvc_rx_vci;
      s->rx_vci.store(p.pvc_rx_vci, std::memory_order_release);
    } else {
      s->rx_vci.store(svc_label(s->label_gen, id.slot), std::memory_order_release);
    }
    s->state.store(static_cast<uint8_t>(VcState::kActive), std::memory_order_seq_cst);
  }
  return {};
}

Result<void> VcTable::deactivate(VcId id) {
  Slot* s = checked(id);
  if (!s) return fail(Status::kFailure);
  const auto st = static_cast<VcState>(s->state.load(std::memory_order_relaxed));
  if (st == VcState::kDeactivating) return fail(Status::kClosing);
  if (st == VcState::kInactive) return fail(Status::kNotAccepted);
  // seq_cst: pairs with begin_tx()'s increment-then-check (Dekker): a sender
  // either sees this state and backs out, or its in-flight count is seen here.
  s->state.store(static_cast<uint8_t>(VcState::kDeactivating), std::memory_order_seq_cst);
  deactivating_.push_back({id.slot, qsbr_.advance()});
  return {};
}

bool VcTable::try_complete(uint32_t idx) {
  Slot& s = *slot_ptr(idx);
  if (s.tx_inflight.load(std::memory_order_seq_cst) != 0) return false;
  if (s.rx_outstanding.load(std::memory_order_acquire) != 0) return false;
  s.state.store(static_cast<uint8_t>(VcState::kInactive), std::memory_order_seq_cst);
  if (s.pvc_vci != 0) {
    pvc_map(s.pvc_vci, 0);
    s.pvc_vci = 0;
    s.rx_vci.store(0, std::memory_order_release);
  } else {
    // A new label for the next activation: frames for this call that are
    // still on the wire can never match the next one.
    s.label_gen = static_cast<uint16_t>(s.label_gen % 4095 + 1);
    s.rx_vci.store(svc_label(s.label_gen, idx), std::memory_order_release);
  }
  return true;
}

namespace {
void write_leaf(Leaves::Entry& e, uint64_t mac, uint32_t vci) noexcept {
  const uint32_t q = e.seq.load(std::memory_order_relaxed);
  e.seq.store(q + 1, std::memory_order_relaxed);
  // Release stores of the words order them after the odd sequence for a
  // reader that acquires them (as write_params does; no fence for TSan).
  e.mac.store(mac, std::memory_order_release);
  e.vci.store(vci, std::memory_order_release);
  e.seq.store(q + 2, std::memory_order_release);
}
}  // namespace

Result<void> VcTable::set_leaf(VcId id, uint32_t i, const MacAddress& peer, uint32_t tx_vci) {
  Slot* s = checked(id);
  if (!s) return fail(Status::kFailure);
  if (i >= kMaxLeaves || tx_vci == 0 || peer.is_multicast() || peer == MacAddress{}) return fail(Status::kInvalidData);
  Leaves* l = s->leaves.load(std::memory_order_relaxed);
  if (!l) {
    l = new (std::nothrow) Leaves;
    if (!l) return fail(Status::kResources);
    s->leaves.store(l, std::memory_order_release);
  }
  uint64_t mac = 0;
  for (int k = 0; k < 6; ++k) mac = (mac << 8) | peer.bytes[k];
  const bool was_set = (l->e[i].mac.load(std::memory_order_relaxed) >> 48) & 1;
  write_leaf(l->e[i], mac | (uint64_t{1} << 48), tx_vci);
  if (!was_set) s->leaf_count.fetch_add(1, std::memory_order_release);
  return {};
}

Result<void> VcTable::clear_leaf(VcId id, uint32_t i) {
  Slot* s = checked(id);
  if (!s) return fail(Status::kFailure);
  if (i >= kMaxLeaves) return fail(Status::kInvalidData);
  Leaves* l = s->leaves.load(std::memory_order_relaxed);
  if (!l || !((l->e[i].mac.load(std::memory_order_relaxed) >> 48) & 1)) return {};
  write_leaf(l->e[i], 0, 0);
  s->leaf_count.fetch_sub(1, std::memory_order_release);
  return {};
}

size_t VcTable::leaves(VcId id, std::span<LeafTarget> out) const noexcept {
  const Slot* s = slot_ptr(id.slot);
  if (!s || s->leaf_count.load(std::memory_order_acquire) == 0) return 0;
  const Leaves* l = s->leaves.load(std::memory_order_acquire);
  if (!l) return 0;
  size_t n = 0;
  for (uint32_t i = 0; i < kMaxLeaves && n < out.size(); ++i) {
    const Leaves::Entry& e = l->e[i];
    for (;;) {
      const uint32_t a = e.seq.load(std::memory_order_acquire);
      const uint64_t mac = e.mac.load(std::memory_order_acquire);
      const uint32_t vci = e.vci.load(std::memory_order_acquire);
      if ((a & 1) || e.seq.load(std::memory_order_relaxed) != a) continue;
      if ((mac >> 48) & 1) {
        for (int b = 5, k = 0; b >= 0; --b, ++k) out[n].peer.bytes[b] = static_cast<uint8_t>(mac >> (8 * k));
        out[n++].tx_vci = vci;
      }
      break;
    }
  }
  return n;
}

Result<void> VcTable::remove(VcId id) {
  Slot* s = checked(id);
  if (!s) return fail(Status::kFailure);
  const auto st = static_cast<VcState>(s->state.load(std::memory_order_relaxed));
  if (st == VcState::kActive) return fail(Status::kNotAccepted);
  if (st == VcState::kDeactivating) return fail(Status::kClosing);
  // A VC that was never a multipoint root has no leaf table to walk.
  if (s->leaves.load(std::memory_order_relaxed))
    for (uint32_t i = 0; i < kMaxLeaves; ++i) (void)clear_leaf(id, i);
  s->live = false;
  s->gen.fetch_add(1, std::memory_order_seq_cst);
  s->rx_vci.store(0, std::memory_order_release);
  s->owner.store(0, std::memory_order_relaxed);
  retired_.push_back({id.slot, qsbr_.advance()});
  --in_use_;
  return {};
}

uint32_t VcTable::rx_vci(VcId id) const noexcept {
  const Slot* s = checked(id);
  if (!s) return 0;
  if (s->pvc_vci) return s->pvc_vci;
  return svc_label(s->label_gen, id.slot);
}

VcState VcTable::state(VcId id) const noexcept {
  const Slot* s = checked(id);
  return s ? static_cast<VcState>(s->state.load(std::memory_order_relaxed)) : VcState::kInactive;
}

bool VcTable::tx_active(VcId id) const noexcept {
  const Slot* s = slot_ptr(id.slot);
  return s && s->gen.load(std::memory_order_acquire) == id.gen &&
         s->state.load(std::memory_order_acquire) == static_cast<uint8_t>(VcState::kActive);
}

uint64_t VcTable::owner(VcId id) const noexcept {
  // Any thread (the node routes send completions by owner on I/O threads):
  // only atomics here, not the control-only `live` flag. A removed slot's
  // generation moved on, and a never-created slot's owner is 0.
  const Slot* s = slot_ptr(id.slot);
  if (!s || s->gen.load(std::memory_order_acquire) != id.gen) return 0;
  return s->owner.load(std::memory_order_relaxed);
}

VcCounters VcTable::counters(VcId id) const noexcept {
  VcCounters c;
  const Slot* s = slot_ptr(id.slot);
  if (!s || s->gen.load(std::memory_order_relaxed) != id.gen) return c;
  c.rx_frames = s->rx_frames.load(std::memory_order_relaxed);
  c.rx_bytes = s->rx_bytes.load(std::memory_order_relaxed);
  c.tx_frames = s->tx_frames.load(std::memory_order_relaxed);
  c.tx_bytes = s->tx_bytes.load(std::memory_order_relaxed);
  c.rx_dropped = s->rx_dropped.load(std::memory_order_relaxed);
  c.tx_refused = s->tx_refused.load(std::memory_order_relaxed);
  return c;
}

VcTable::RxHit VcTable::lookup_rx(uint32_t vci, const MacAddress& src) noexcept {
  RxHit h;
  uint32_t idx;
  if (vci >= kPvcVciLimit) {
    idx = vci & (kPvcVciLimit - 1);
  } else {
    const uint32_t p = vci ? pvc_lookup(vci) : 0;
    if (p == 0) {
      h.miss = RxMiss::kUnknownVci;
      return h;
    }
    idx = p - 1;
  }
  Slot* s = slot_ptr(idx);
  if (!s || s->rx_vci.load(std::memory_order_acquire) != vci) {
    h.miss = RxMiss::kUnknownVci;
    return h;
  }
  if (s->state.load(std::memory_order_acquire) != static_cast<uint8_t>(VcState::kActive)) {
    h.miss = RxMiss::kNotActivated;
    return h;
  }
  const Params p = read_params(*s);
  if (!p.receive) {
    h.miss = RxMiss::kNotActivated;
    return h;
  }
  if (p.peer != src) {
    h.miss = RxMiss::kForeign;
    return h;
  }
  // Counted before this thread's next quiescent point, so a deactivation
  // that waited for the grace period sees it.
  s->rx_outstanding.fetch_add(1, std::memory_order_relaxed);
  h.id = VcId{idx, s->gen.load(std::memory_order_relaxed)};
  h.owner = s->owner.load(std::memory_order_relaxed);
  return h;
}

void VcTable::rx_delivered(VcId id, uint64_t bytes) noexcept {
  if (Slot* s = slot_ptr(id.slot)) {
    s->rx_frames.fetch_add(1, std::memory_order_relaxed);
    s->rx_bytes.fetch_add(bytes, std::memory_order_relaxed);
  }
}

void VcTable::rx_dropped(VcId id) noexcept {
  if (Slot* s = slot_ptr(id.slot)) {
    s->rx_dropped.fetch_add(1, std::memory_order_relaxed);
    s->rx_outstanding.fetch_sub(1, std::memory_order_release);
  }
}

bool VcTable::take_status(VcId id) noexcept {
  Slot* s = slot_ptr(id.slot);
  return s && s->gen.load(std::memory_order_acquire) == id.gen &&
         s->status_armed.exchange(false, std::memory_order_acq_rel);
}

void VcTable::rearm_status(VcId id) noexcept {
  Slot* s = slot_ptr(id.slot);
  if (s && s->gen.load(std::memory_order_acquire) == id.gen) s->status_armed.store(true, std::memory_order_release);
}

void VcTable::rx_returned(VcId id, uint32_t n) noexcept {
  if (Slot* s = slot_ptr(id.slot)) s->rx_outstanding.fetch_sub(static_cast<int32_t>(n), std::memory_order_release);
}

VcTable::TxGrant VcTable::begin_tx(VcId id) noexcept {
  TxGrant g;
  Slot* s = slot_ptr(id.slot);
  if (!s || s->gen.load(std::memory_order_seq_cst) != id.gen) {
    g.status = Status::kFailure;
    return g;
  }
  // Dekker with deactivate(): raise the count, then look at the state.
  s->tx_inflight.fetch_add(1, std::memory_order_seq_cst);
  const uint8_t st = s->state.load(std::memory_order_seq_cst);
  // Re-check the handle: the slot may have been deleted and reused between
  // the first check and the increment.
  if (s->gen.load(std::memory_order_seq_cst) != id.gen) {
    s->tx_inflight.fetch_sub(1, std::memory_order_release);
    g.status = Status::kFailure;
    return g;
  }
  if (st != static_cast<uint8_t>(VcState::kActive)) {
    s->tx_inflight.fetch_sub(1, std::memory_order_release);
    s->tx_refused.fetch_add(1, std::memory_order_relaxed);
    g.status = Status::kVcNotActivated;  // R72
    return g;
  }
  const Params p = read_params(*s);
  if (!p.transmit) {
    s->tx_inflight.fetch_sub(1, std::memory_order_release);
    s->tx_refused.fetch_add(1, std::memory_order_relaxed);
    g.status = Status::kNotSupported;
    return g;
  }
  g.peer = p.peer;
  g.tx_vci = p.tx_vci;
  g.max_sdu = p.max_sdu;
  g.multipoint = p.multipoint;
  g.shape_rate = p.shape_rate;
  g.shape_bucket = p.shape_bucket;
  return g;
}

void VcTable::end_tx(VcId id, uint64_t bytes, bool sent) noexcept {
  Slot* s = slot_ptr(id.slot);
  if (!s) return;
  if (sent) {
    s->tx_frames.fetch_add(1, std::memory_order_relaxed);
    s->tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
  } else {
    s->tx_refused.fetch_add(1, std::memory_order_relaxed);
  }
  s->tx_inflight.fetch_sub(1, std::memory_order_release);
}

}  // namespace miniport

namespace miniport {

void VcTable::cancel_tx(VcId id) noexcept {
  if (Slot* s = slot_ptr(id.slot)) s->tx_inflight.fetch_sub(1, std::memory_order_release);
}

}  // namespace miniport
