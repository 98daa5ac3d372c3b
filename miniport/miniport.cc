#include "miniport/miniport.h"

#include <algorithm>

#include "miniport/byte_order.h"

namespace miniport {

namespace {
void bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept { c.fetch_add(n, std::memory_order_relaxed); }
uint64_t get(const std::atomic<uint64_t>& c) noexcept { return c.load(std::memory_order_relaxed); }

// NDIS buffers are host (little-endian) structures, not wire fields.
void store_le(uint8_t* p, uint64_t v, size_t n) noexcept {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

OidResult write_u64(uint64_t v, std::span<uint8_t> out) noexcept {
  if (out.size() >= 8) {
    store_le(out.data(), v, 8);
    return {Status::kSuccess, 8, 0};
  }
  if (out.size() >= 4) {
    store_le(out.data(), v & 0xFFFFFFFF, 4);  // R82: low 32 bits, and say 8 would be better
    return {Status::kSuccess, 4, 8};
  }
  return {Status::kInvalidLength, 0, 8};
}

OidResult write_u32(uint64_t v, std::span<uint8_t> out) noexcept {
  if (out.size() < 4) return {Status::kInvalidLength, 0, 4};
  store_le(out.data(), std::min<uint64_t>(v, 0xFFFFFFFF), 4);
  return {Status::kSuccess, 4, 0};
}
}  // namespace

RxVerdict Miniport::classify(std::span<const uint8_t> frame) noexcept {
  RxVerdict v;
  bump(c_.rx_frames);
  bump(c_.rx_bytes, frame.size());
  if (frame.size() < kEthHeaderLen) {
    bump(c_.rx_not_ours);
    return v;
  }
  // A NIC takes unicast frames for its own address only. A TAP on a bridge
  // also sees unicast the bridge floods (to a MAC it has not learned): a
  // node that read those would act on signaling meant for another node.
  const bool group = (frame[0] & 1) != 0;
  if (!group && !std::equal(cfg_.mac.bytes.begin(), cfg_.mac.bytes.end(), frame.begin())) {
    bump(c_.rx_not_for_us);
    return v;
  }
  const uint16_t type = load_be16(frame.data() + 12);
  if (type == kEtherTypeSig) {
    bump(c_.rx_sig);
    v.kind = RxKind::kSig;
    return v;
  }
  if (type != kEtherTypeData) {
    bump(c_.rx_not_ours);  // not ours: counted, never parsed
    return v;
  }
  auto d = decode_data(frame.subspan(kEthHeaderLen));
  if (!d) {
    bump(d.error() == Status::kInvalidData ? c_.rx_bad_vci : c_.rx_malformed);
    return v;
  }
  MacAddress src;
  std::copy_n(frame.data() + 6, 6, src.bytes.begin());
  v.hit = vcs_.lookup_rx(d->vci, src);
  switch (v.hit.miss) {
    case VcTable::RxMiss::kUnknownVci: bump(c_.rx_unknown_vci); return v;
    case VcTable::RxMiss::kNotActivated: bump(c_.rx_not_activated); return v;
    case VcTable::RxMiss::kForeign: bump(c_.rx_foreign); return v;
    case VcTable::RxMiss::kNone: break;
  }
  v.kind = RxKind::kData;
  v.payload_off = static_cast<uint16_t>(kEthHeaderLen + kDataHeaderLen);
  v.payload_len = static_cast<uint16_t>(d->payload.size());
  return v;
}

void Miniport::rx_handed_over(const RxVerdict& v) noexcept {
  bump(c_.rx_data);
  bump(c_.rx_data_bytes, v.payload_len);
  vcs_.rx_delivered(v.hit.id, v.payload_len);
}

std::optional<StatusIndication> Miniport::rx_drop_after_lookup(const RxVerdict& v, bool pool_empty) noexcept {
  bump(pool_empty ? c_.rx_pool_empty : c_.rx_ring_full);
  vcs_.rx_dropped(v.hit.id);
  if (!vcs_.take_status(v.hit.id)) return std::nullopt;
  StatusIndication ind{Indication::kVcReceiveError, link_up(), 0, v.hit.id};
  ind.errors = vc_error::kBufferOverrun;
  ind.dropped = vcs_.counters(v.hit.id).rx_dropped;
  return ind;
}

Result<size_t> Miniport::frame_tx(VcId vc, std::span<uint8_t> buf, size_t payload_len, TxInfo* info) noexcept {
  VcTable::TxGrant g = vcs_.begin_tx(vc);
  if (info) {
    info->nleaves = 0;
    info->shape_rate = g.shape_rate;
    info->shape_bucket = g.shape_bucket;
  }
  if (g.status == Status::kSuccess && g.multipoint) {
    const size_t n = info ? vcs_.leaves(vc, info->leaves) : 0;
    if (n == 0) {  // the last leaf has gone: the call is going
      vcs_.end_tx(vc, 0, false);
      bump(c_.tx_not_activated);
      return fail(Status::kVcNotActivated);
    }
    g.peer = info->leaves[0].peer;
    g.tx_vci = info->leaves[0].tx_vci;
    info->nleaves = n;
  }
  if (g.status != Status::kSuccess) {
    if (g.status == Status::kVcNotActivated) bump(c_.tx_not_activated);
    return fail(g.status);
  }
  const size_t limit = g.max_sdu ? std::min<size_t>(g.max_sdu, max_payload()) : max_payload();
  if (payload_len > limit) {
    bump(c_.tx_too_long);
    vcs_.end_tx(vc, 0, false);
    return fail(Status::kInvalidLength);
  }
  auto n = encode_data_header(g.peer, cfg_.mac, g.tx_vci, payload_len, buf);
  if (!n) {
    vcs_.end_tx(vc, 0, false);
    return fail(n.error());
  }
  c_.tx_outstanding.fetch_add(1, std::memory_order_relaxed);
  c_.tx_outstanding_bytes.fetch_add(static_cast<int64_t>(*n), std::memory_order_relaxed);
  return *n;
}

void Miniport::complete_tx(VcId vc, size_t frame_len, bool sent) noexcept {
  if (sent) {
    bump(c_.tx_frames);
    bump(c_.tx_bytes, frame_len);
    bump(c_.tx_data_bytes, frame_len > kFrameHeaders ? frame_len - kFrameHeaders : 0);
  } else {
    bump(c_.tx_errors);
  }
  c_.tx_outstanding.fetch_sub(1, std::memory_order_relaxed);
  c_.tx_outstanding_bytes.fetch_sub(static_cast<int64_t>(frame_len), std::memory_order_relaxed);
  vcs_.end_tx(vc, frame_len, sent);
}

void Miniport::cancel_tx(VcId vc, size_t frame_len) noexcept {
  c_.tx_outstanding.fetch_sub(1, std::memory_order_relaxed);
  c_.tx_outstanding_bytes.fetch_sub(static_cast<int64_t>(frame_len), std::memory_order_relaxed);
  vcs_.cancel_tx(vc);
}

std::optional<StatusIndication> Miniport::on_carrier(bool up) noexcept {
  if (link_up_.exchange(up, std::memory_order_relaxed) == up) return std::nullopt;
  return StatusIndication{Indication::kLinkState, up, up ? cfg_.link_speed_bps : 0};
}

OidResult Miniport::query(uint32_t o, std::optional<VcId> vc, std::span<uint8_t> out) const noexcept {
  VcCounters v;
  if (vc) {
    if (vcs_.rx_vci(*vc) == 0) return {Status::kInvalidData, 0, 0};  // stale or unknown VC handle
    v = vcs_.counters(*vc);
  }
  switch (o) {
    case oid::kXmitPdusOk: return write_u64(vc ? v.tx_frames : get(c_.tx_frames), out);
    case oid::kRcvPdusOk: return write_u64(vc ? v.rx_frames : get(c_.rx_data), out);
    case oid::kBytesXmit: return write_u64(vc ? v.tx_bytes : get(c_.tx_data_bytes), out);
    case oid::kBytesRcv: return write_u64(vc ? v.rx_bytes : get(c_.rx_data_bytes), out);
    case oid::kXmitPdusError:
      return write_u32(vc ? v.tx_refused : get(c_.tx_errors) + get(c_.tx_not_activated) + get(c_.tx_too_long), out);
    case oid::kRcvPdusNoBuffer:
      return write_u32(vc ? v.rx_dropped : get(c_.rx_ring_full) + get(c_.rx_pool_empty), out);
    case oid::kRcvPdusError:
      if (vc) return {Status::kNotSupported, 0, 0};
      return write_u32(get(c_.rx_malformed) + get(c_.rx_bad_vci) + get(c_.rx_unknown_vci) +
                           get(c_.rx_not_activated) + get(c_.rx_foreign),
                       out);
    case oid::kRcvCrcError:
      // Ethernet frames reach a TAP without FCS: CRC errors cannot be seen.
      if (vc) return {Status::kNotSupported, 0, 0};
      return write_u32(0, out);
    case oid::kTransmitQueueLength:
      if (vc) return {Status::kNotSupported, 0, 0};
      return write_u32(static_cast<uint64_t>(std::max<int64_t>(0, c_.tx_outstanding.load())), out);
    case oid::kBytesXmitOutstanding:
      if (vc) return {Status::kNotSupported, 0, 0};
      return write_u32(static_cast<uint64_t>(std::max<int64_t>(0, c_.tx_outstanding_bytes.load())), out);
    case oid::kMediaConnectStatus:
      // NdisMediaStateConnected = 0, NdisMediaStateDisconnected = 1.
      return write_u32(link_up() ? 0 : 1, out);
    case oid::kLinkSpeed: {
      // NDIS_CO_LINK_SPEED {Outbound, Inbound} in units of 100 bit/s.
      if (out.size() < 8) return {Status::kInvalidLength, 0, 8};
      const uint64_t units = std::min<uint64_t>(cfg_.link_speed_bps / 100, 0xFFFFFFFF);
      store_le(out.data(), units, 4);
      store_le(out.data() + 4, units, 4);
      return {Status::kSuccess, 8, 0};
    }
    default: return {Status::kInvalidOid, 0, 0};
  }
}

}  // namespace miniport
