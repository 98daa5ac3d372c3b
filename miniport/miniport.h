// Miniport: the pure connection-oriented miniport core. It classifies every
// received frame (SIG up unparsed, DATA to its VC, the rest counted and
// dropped), frames sends on active VCs (R72: never on inactive ones), keeps
// node counters, answers the statistics OIDs (condis-spec section 12, R80-R82)
// and turns carrier changes into status indications (R85). No syscalls,
// threads or clocks: the emulator's I/O engine calls it.
//
//   Miniport mp({.mac = my_mac, .mtu = 1500});
//   RxVerdict v = mp.classify(frame);             // I/O thread
//   size_t len = *mp.frame_tx(vc, buf, n);          // any sender thread
//   mp.complete_tx(vc, len, /*sent=*/true);         // after the wire write
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>

#include "miniport/frame.h"
#include "miniport/vc_table.h"

namespace miniport {

// NDIS status indication codes (informational, 0x4001xxxx).
enum class Indication : uint32_t {
  kResetStart = 0x40010004,
  kResetEnd = 0x40010005,
  kMediaConnect = 0x4001000B,     // NDIS 5 name of link up
  kMediaDisconnect = 0x4001000C,  // NDIS 5 name of link down
  // NDIS_STATUS_WAN_CO_FRAGMENT: frames received for one VC were lost;
  // `errors` says why (the NDIS_WAN_CO_FRAGMENT bits below).
  kVcReceiveError = 0x40010015,
  kLinkState = 0x40010017,        // NDIS 6: NDIS_LINK_STATE follows
};

// NDIS_WAN_CO_FRAGMENT.Errors bits (ndiswan.h WAN_ERROR_*).
namespace vc_error {
inline constexpr uint32_t kBufferOverrun = 0x08;  // no receive buffer was free
}  // namespace vc_error

// One NdisMCoIndicateStatusEx. Without a VC it concerns the adapter and
// reaches every client; with one, only that VC's client and CM (R84).
struct StatusIndication {
  Indication code = Indication::kLinkState;
  bool link_up = false;
  uint64_t speed_bps = 0;  // both directions
  VcId vc = {};            // valid: VC-scoped
  uint32_t errors = 0;     // kVcReceiveError
  uint64_t dropped = 0;    // kVcReceiveError: the VC's receive losses so far
};

// OIDs answered here (ntddndis.h values, condis-spec R81).
namespace oid {
inline constexpr uint32_t kLinkSpeed = 0x00010107;
inline constexpr uint32_t kMediaConnectStatus = 0x00010114;
inline constexpr uint32_t kXmitPdusOk = 0x00020101;
inline constexpr uint32_t kRcvPdusOk = 0x00020102;
inline constexpr uint32_t kXmitPdusError = 0x00020103;
inline constexpr uint32_t kRcvPdusError = 0x00020104;
inline constexpr uint32_t kRcvPdusNoBuffer = 0x00020105;
inline constexpr uint32_t kBytesXmit = 0x00020201;
inline constexpr uint32_t kBytesRcv = 0x00020207;
inline constexpr uint32_t kRcvCrcError = 0x0002020D;
inline constexpr uint32_t kTransmitQueueLength = 0x0002020E;
inline constexpr uint32_t kBytesXmitOutstanding = 0x00020221;
}  // namespace oid

inline constexpr size_t kFrameHeaders = kEthHeaderLen + kDataHeaderLen;

// Node counters. Every received frame lands in exactly one of rx_sig,
// rx_data or a drop counter (once the engine has handed it over or dropped
// it); `rx_frames` is their sum.
struct MiniportCounters {
  std::atomic<uint64_t> rx_frames{0}, rx_bytes{0};
  std::atomic<uint64_t> rx_sig{0};
  std::atomic<uint64_t> rx_data{0};         // DATA frames handed to their VC's owner
  std::atomic<uint64_t> rx_data_bytes{0};   // their payload bytes
  std::atomic<uint64_t> rx_not_ours{0};     // other EtherTypes (and runts)
  std::atomic<uint64_t> rx_not_for_us{0};   // unicast to another MAC (a bridge flooding it): a NIC's filter
  std::atomic<uint64_t> rx_malformed{0};    // DATA header truncated or len past the end
  std::atomic<uint64_t> rx_bad_vci{0};      // DATA with VCI 0
  std::atomic<uint64_t> rx_unknown_vci{0};  // no VC has this label
  std::atomic<uint64_t> rx_not_activated{0};
  std::atomic<uint64_t> rx_foreign{0};      // the label's VC belongs to another peer
  std::atomic<uint64_t> rx_ring_full{0};    // the VC's receive path was full
  std::atomic<uint64_t> rx_pool_empty{0};   // no buffer to receive into
  std::atomic<uint64_t> tx_frames{0}, tx_bytes{0};
  std::atomic<uint64_t> tx_data_bytes{0};   // frame bytes less the 22 bytes of headers (padding included)
  std::atomic<uint64_t> tx_not_activated{0};  // R72
  std::atomic<uint64_t> tx_too_long{0};
  std::atomic<uint64_t> tx_ring_full{0};
  std::atomic<uint64_t> tx_pool_empty{0};
  std::atomic<uint64_t> tx_errors{0};         // the wire write failed
  std::atomic<int64_t> tx_outstanding{0};     // frames taken but not yet completed
  std::atomic<int64_t> tx_outstanding_bytes{0};
};

enum class RxKind : uint8_t { kSig, kData, kDrop };

struct RxVerdict {
  RxKind kind = RxKind::kDrop;
  VcTable::RxHit hit;        // kData: the VC (its receive is outstanding)
  uint16_t payload_off = 0;  // kData: payload position in the frame
  uint16_t payload_len = 0;
};

struct OidResult {
  Status status = Status::kSuccess;
  uint32_t bytes_written = 0;
  uint32_t bytes_needed = 0;
  uint32_t bytes_read = 0;  // a set: how much of the buffer was taken (BytesRead)
};

struct MiniportConfig {
  MacAddress mac;            // this node's NIC address (source of every frame)
  uint32_t mtu = 1500;       // Ethernet payload size; DATA payload <= mtu - 8
  uint32_t max_vcs = kMaxVcs;
  uint64_t link_speed_bps = 10'000'000'000;  // reported by OID_GEN_CO_LINK_SPEED
};

class Miniport {
 public:
  explicit Miniport(const MiniportConfig& cfg) : cfg_(cfg), vcs_(cfg.max_vcs) {}

  [[nodiscard]] VcTable& vcs() noexcept { return vcs_; }
  [[nodiscard]] const MiniportConfig& config() const noexcept { return cfg_; }
  [[nodiscard]] const MiniportCounters& counters() const noexcept { return c_; }
  // Largest DATA payload on this link.
  [[nodiscard]] uint32_t max_payload() const noexcept { return cfg_.mtu - static_cast<uint32_t>(kDataHeaderLen); }

  // I/O thread: sorts one received frame and counts it, except kData, which
  // the caller settles with rx_handed_over() (then vcs().rx_returned() when
  // the owner gives it back) or rx_drop_after_lookup().
  [[nodiscard]] RxVerdict classify(std::span<const uint8_t> frame) noexcept;
  void rx_handed_over(const RxVerdict& v) noexcept;
  // A kData frame that could not be handed to its owner (ring full, no
  // buffer). Returns a VC-scoped kVcReceiveError to indicate when the VC's
  // status is armed (VcTable::take_status): one per loss episode, not per frame.
  [[nodiscard]] std::optional<StatusIndication> rx_drop_after_lookup(const RxVerdict& v, bool pool_empty) noexcept;

  // Sender: writes the Ethernet and DATA headers for vc in front of a
  // payload already at buf[kFramePayloadOffset, +payload_len). On success the
  // send is in flight until complete_tx(). Errors: kVcNotActivated (R72:
  // nothing reaches the wire), kFailure for a stale VC handle, kNotSupported
  // for a receive-only VC, kInvalidLength for a payload over the VC's max SDU
  // or the link MTU, kBufferTooShort when buf cannot hold the padded frame.
  // What a send needs beyond its frame: a point-to-multipoint root's leaves
  // (its frame is written for the first; the caller sends one copy to each;
  // a root without leaves is kVcNotActivated) and the VC's shaping.
  struct TxInfo {
    std::span<LeafTarget> leaves = {};  // in: room for them
    size_t nleaves = 0;                 // out
    uint32_t shape_rate = 0, shape_bucket = 0;  // out: VcParams'
  };
  [[nodiscard]] Result<size_t> frame_tx(VcId vc, std::span<uint8_t> buf, size_t payload_len,
                                        TxInfo* info = nullptr) noexcept;
  // After the frame left (sent) or could not be written (!sent, tx_errors).
  void complete_tx(VcId vc, size_t frame_len, bool sent) noexcept;
  // Undoes frame_tx() for a frame that was never queued (the send ring was
  // full): the caller keeps the packet, nothing is counted as sent or failed.
  void cancel_tx(VcId vc, size_t frame_len) noexcept;
  void count_tx_ring_full() noexcept { c_.tx_ring_full.fetch_add(1, std::memory_order_relaxed); }
  void count_tx_pool_empty() noexcept { c_.tx_pool_empty.fetch_add(1, std::memory_order_relaxed); }

  // Carrier change from the device; an indication when the state changed (R85).
  [[nodiscard]] std::optional<StatusIndication> on_carrier(bool up) noexcept;
  [[nodiscard]] bool link_up() const noexcept { return link_up_.load(std::memory_order_relaxed); }

  // Query OID on the adapter (vc empty) or one VC (R80). Statistics follow
  // R82: the four 64-bit counters write 8 bytes, or the low 4 with
  // bytes_needed 8 when the buffer holds 4..7, or INVALID_LENGTH below 4.
  // Errors: kInvalidOid for an OID this miniport does not know;
  // kNotSupported for a known one not kept per VC; kInvalidLength.
  [[nodiscard]] OidResult query(uint32_t oid, std::optional<VcId> vc, std::span<uint8_t> out) const noexcept;

 private:
  MiniportConfig cfg_;
  VcTable vcs_;
  MiniportCounters c_;
  std::atomic<bool> link_up_{false};
};

}  // namespace miniport
