// DataPath: the I/O engine that drives a Miniport over a Link. One I/O thread
// per link queue (a multi-queue TAP gets several; a VC's sends always use the
// same one, so they stay in order) reads frames in batches into pool
// buffers, sorts them (SIG up unparsed, DATA to its VC's owner, the rest
// counted), drains its lock-free send ring and writes in batches, and turns
// carrier changes into status indications.
//
//   DataPath::start(link, miniport, handler, {});
//   TxPacket p{dp->alloc(), cookie};                       // any thread
//   std::memcpy(p.buf.data() + kFramePayloadOffset, data, n);
//   p.buf.set_size(n);
//   size_t taken = dp->send(vc, std::span(&p, 1));         // 0 = ring full: RESOURCES
//   ... handler.on_send_complete({vc, cookie, SUCCESS})    // I/O thread, later
//
// Rules kept (condis-spec section 11): every taken send completes exactly once
// and asynchronously (R70); a send on an inactive VC is taken, never reaches
// the wire and completes with VC_NOT_ACTIVATED (R72); receives are indicated
// in batches and stay the owner's until it drops the RxPacket (R73), which a
// deactivation waits for (R75); a full send ring is back-pressure reported to
// the sender, never a silent drop. In steady state nothing here allocates.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <deque>
#include <thread>
#include <unordered_map>
#include <vector>

#include "emulator/link.h"
#include "emulator/link_events.h"
#include "emulator/tap_device.h"
#include "emulator/tap_rx_ring.h"
#include "miniport/miniport.h"
#include "miniport/packet_pool.h"
#include "miniport/ring.h"
#include "miniport/token_bucket.h"

namespace emulator {

using miniport::BufRef;
using miniport::VcId;

// A received DATA frame on loan to its VC's owner. Dropping it returns the
// buffer to the pool and the receive to the VC (NdisReturnNetBufferLists).
class RxPacket {
 public:
  RxPacket() noexcept = default;
  RxPacket(RxPacket&& o) noexcept { *this = std::move(o); }
  RxPacket& operator=(RxPacket&& o) noexcept;
  RxPacket(const RxPacket&) = delete;
  RxPacket& operator=(const RxPacket&) = delete;
  ~RxPacket() { release(); }

  [[nodiscard]] std::span<const uint8_t> payload() const noexcept { return {buf_.data() + off_, len_}; }
  [[nodiscard]] VcId vc() const noexcept { return vc_; }
  [[nodiscard]] uint64_t owner() const noexcept { return owner_; }
  [[nodiscard]] explicit operator bool() const noexcept { return static_cast<bool>(buf_); }
  void release() noexcept;

 private:
  friend class DataPath;
  BufRef buf_;
  miniport::VcTable* table_ = nullptr;
  VcId vc_;
  uint64_t owner_ = 0;
  uint16_t off_ = 0;
  uint16_t len_ = 0;
};

// A send: a pool buffer whose payload starts at miniport::kFramePayloadOffset
// and whose size() is the payload length, plus the caller's cookie.
struct TxPacket {
  BufRef buf;
  uint64_t cookie = 0;
};

struct TxCompletion {
  VcId vc;
  uint64_t cookie = 0;
  Status status = Status::kSuccess;
};

// The VC owners' upcalls. They run on the I/O thread and must not block.
class DataPathHandler {
 public:
  virtual ~DataPathHandler() = default;
  // R73: a batch of receives, possibly for several VCs. Move out the packets
  // to keep; the rest are returned when this returns.
  virtual void on_receive(std::span<RxPacket> packets) = 0;
  // R70: completions, possibly merged across VCs, in no promised order.
  virtual void on_send_complete(std::span<const TxCompletion> done) = 0;
  // A SIG frame, unparsed (the call manager's business).
  virtual void on_signaling(std::span<const uint8_t> frame) { (void)frame; }
  // After a receive batch that held SIG frames, once its DATA frames have
  // been indicated: the handler may do the signaling work here.
  virtual void on_signaling_done() {}
  // R84/R85: link state changes (no VC), and VC-scoped indications such as
  // a VC's receive losses (for its owner and call manager only). A VC
  // indicates again only after vcs().rearm_status(vc): call it once the
  // indication has been delivered.
  virtual void on_status(const miniport::StatusIndication& ind) { (void)ind; }
};

struct DataPathOptions {
  uint32_t pool_buffers = 8192;
  uint32_t buffer_size = 0;     // 0 = link MTU + 14, rounded up to 64
  uint32_t tx_ring = 4096;      // send ring slots (power of two)
  uint32_t batch = 32;          // frames per read/write batch (1..64)
  // Never block: lowest latency, one core spent. A send from the I/O
  // thread's own upcall is then written at once when nothing is queued ahead.
  bool busy_poll = false;
  // After a round that moved frames, keep polling this long before blocking:
  // an answer that comes back within it (a signaling hop, a round trip) is
  // picked up without a wake-up, which costs ~30 us on an idle vCPU. An idle
  // node spins for no longer than this after its last frame. 0 = block at once.
  std::chrono::microseconds poll_window{50};
  // A sender finding the I/O thread with nothing queued writes its frames to
  // the link itself (completions still arrive asynchronously from the I/O
  // thread): one thread hop less per frame. Off by default: on the 2-core
  // development VM it bought no throughput and doubled the round trip (the
  // I/O thread must still wake for the completion); see bench --inline-tx.
  bool inline_tx = false;
  // On a TAP that transmits through io_uring, receive through it too: reads
  // stay posted in pool buffers and a burst costs one syscall to re-arm. Off
  // by default: on the development VM it was slower than read() (64 B: 0.64x
  // raw against 1.0-1.2x; round trip 2.7x), because a posted read completes
  // through task work that needs the I/O thread woken, then the eventfd
  // wakes epoll again. See bench --uring-rx.
  bool uring_rx = false;
  // Pin worker q's thread to CPU (cpu + q) % cores; -1 leaves placement to
  // the scheduler. Benchmarks pin to keep nodes off each other's core.
  int cpu = -1;
  // Carrier source for a TAP: events for `ifname` become status indications.
  LinkEventWatcher* link_events = nullptr;
  std::string ifname = {};
};

struct DataPathCounters {
  uint64_t loops = 0;
  uint64_t sleeps = 0;
  uint64_t tx_batches = 0;
  uint64_t rx_batches = 0;
  uint64_t link_backpressure = 0;  // the link took fewer frames than offered
};

class DataPath {
 public:
  // Starts the I/O thread. Errors: kInvalidData for bad options; kResources
  // when the pool, rings or epoll cannot be made.
  [[nodiscard]] static Result<std::unique_ptr<DataPath>> start(Link& link, miniport::Miniport& mp,
                                                               DataPathHandler& handler, const DataPathOptions& opts);
  // Stops and joins the I/O thread; sends still queued complete with
  // REQUEST_ABORTED (on the calling thread).
  ~DataPath();
  void stop();

  // A buffer for a send, or an empty BufRef when the pool is exhausted (the
  // last 1/16 of the pool, up to 64 buffers, is kept for signaling).
  [[nodiscard]] BufRef alloc() noexcept;
  [[nodiscard]] uint32_t max_payload() const noexcept;
  // Any thread. Takes packets from the front and returns how many; each taken
  // one completes once through on_send_complete. Fewer than given means the
  // send ring is full (NDIS_STATUS_RESOURCES): the rest stay with the caller.
  // An empty buffer ends the batch (it and what follows are not taken).
  size_t send(VcId vc, std::span<TxPacket> packets) noexcept;

  // Any thread: a whole Ethernet frame (the call manager's SIG frames) is
  // copied into a pool buffer and queued on the first worker's ring; it gets
  // no completion. With write_now the caller writes it to the link itself
  // when nothing is queued ahead of it (saving the I/O thread a wake-up),
  // whatever inline_tx says. Signaling goes before data runs out: clients
  // cannot take the pool's or the send ring's last slots (1/16 and 1/8, up
  // to 64 each). Errors: kResources when even those are full;
  // kInvalidLength for a frame that does not fit the link.
  [[nodiscard]] Result<void> send_frame(std::span<const uint8_t> frame, bool write_now = false) noexcept;

  // For links without a carrier source (the memory wire): report link state.
  void indicate_carrier(bool up);

  [[nodiscard]] const miniport::PacketPool& pool() const noexcept { return *pool_; }
  // Pool buffers held by clients, rings, the wire and upcalls: not in the
  // pool and not among the I/O threads' idle receive buffers (0 at rest).
  [[nodiscard]] size_t buffers_in_use() const noexcept;
  // How many workers receive through an io_uring ring (the rest use read()).
  [[nodiscard]] uint32_t uring_receivers() const noexcept;
  [[nodiscard]] DataPathCounters counters() const noexcept;

 private:
  struct TxItem {
    uint32_t buf = 0;
    uint32_t len = 0;  // frame length; 0 when status is not SUCCESS
    VcId vc;
    uint64_t cookie = 0;
    Status status = Status::kSuccess;
    bool raw = false;  // a whole frame from send_frame(): no VC, no completion
    uint32_t shape_rate = 0, shape_bucket = 0;  // the VC's token bucket at send time (0: not shaped)
    // A multipoint send is one group: its first frame pays the tokens and the
    // rest follow it (each leaf gets the VC's rate; the link carries one
    // copy per leaf, which admission reserved per party).
    bool free_ride = false;
  };
  static constexpr uint32_t kMaxBatch = 64;

  // One I/O thread and everything it owns: a link queue, its send ring and
  // its batch arrays (nothing allocated after start).
  class Worker {
   public:
    Worker(DataPath& dp, uint32_t q);
    Result<void> init();
    void start() { thread_ = std::jthread([this] { run(); }); }
    void join();
    void drain_on_stop() noexcept;
    // Returns how many were taken; sig: signaling, which may use the ring's
    // reserved slots.
    size_t send_items(std::span<TxItem> items, bool write_now = false, bool sig = false) noexcept;
    [[nodiscard]] size_t ring_room(bool sig) const noexcept;  // free ring slots for data or signaling
    bool send_group(std::span<TxItem> items) noexcept;  // all of them through the ring, or none
    void add(DataPathCounters& c) const noexcept;
    uint32_t idle_rx_buffers() const noexcept { return rx_idle_bufs_.load(std::memory_order_acquire); }
    [[nodiscard]] bool uring_rx() const noexcept { return rx_ring_ != nullptr; }

   private:
    void run() noexcept;
    bool do_tx() noexcept;
    bool do_rx() noexcept;
    bool do_rx_ring() noexcept;
    // Sorts one received frame; a DATA frame for an owner takes *buf (none:
    // dropped as pool-empty) into the next RxPacket.
    void sort(std::span<const uint8_t> frame, BufRef* buf, size_t& out) noexcept;
    // Hands the batch's packets to the handler and takes back what it left.
    void indicate(size_t out, size_t frames) noexcept;
    bool arm(uint32_t slot) noexcept;
    void do_events() noexcept;
    // Completes items to the handler; abort = they never reached the wire.
    void complete(std::span<TxItem> items, bool abort) noexcept;
    // Sender side of inline transmit; returns how many of items it settled.
    size_t send_inline(std::span<TxItem> items, bool own) noexcept;
    bool deliver_done() noexcept;
    bool try_lock_tx() noexcept { return !tx_lock_.exchange(true, std::memory_order_acquire); }
    void unlock_tx() noexcept { tx_lock_.store(false, std::memory_order_release); }
    // A sender lets go of the link; wakes the sleeping I/O thread when sends
    // wait in the ring or (work_left) in its pending batch.
    void release_tx(bool work_left) noexcept;
    void wake() noexcept;
    // Shaping (guaranteed / controlled-load VCs): new items of a shaped VC
    // go now if its bucket allows and nothing of it waits, else wait in its
    // queue; queued items go out as tokens come. Returns the earliest time
    // a queued item can go (none: nothing waits).
    void shape_new(uint32_t from) noexcept;
    std::optional<miniport::Time> release_shaped() noexcept;
    static constexpr size_t kShapeQueue = 1024;  // frames a shaped VC may hold here; more complete with RESOURCES
    struct Shaper {
      VcId vc;
      uint32_t rate = 0, bucket = 0;
      miniport::TokenBucket tb;
      std::deque<TxItem> queue;
      bool refusing = false;  // the group under way was refused: so are its followers
    };
    std::unordered_map<uint32_t, Shaper> shapers_;  // by VC slot
    std::optional<miniport::Time> shape_due_;       // when release_shaped() has work next

    DataPath& dp_;
    const uint32_t q_;
    Link& link_;
    miniport::Miniport& mp_;
    DataPathHandler& h_;
    const DataPathOptions& opts_;
    miniport::PacketPool* pool_;
    std::unique_ptr<miniport::MpscRing<TxItem>> tx_ring_;
    size_t ring_reserve_ = 1;  // slots only signaling may take
    uint32_t idle_rounds_ = 0;  // busy poll: rounds that found nothing to do
    bool wrote_ = false;        // this round wrote frames to the link
    UniqueFd epoll_;
    UniqueFd wake_fd_;
    uint32_t reader_ = 0;

    std::array<TxItem, kMaxBatch> tx_items_{};
    uint32_t tx_pending_ = 0;  // items in tx_items_ the link has not taken yet
    std::array<TxItem, kMaxBatch> tx_finished_{};  // do_tx's items to complete
    std::array<std::span<const uint8_t>, kMaxBatch> tx_spans_{};
    std::array<TxCompletion, kMaxBatch> completions_{};
    std::array<BufRef, kMaxBatch> rx_bufs_{};
    uint32_t rx_held_ = 0;  // rx_bufs_[0, rx_held_) hold pool buffers
    bool rx_idle_ = true;   // the last round read nothing
    std::atomic<uint32_t> rx_idle_bufs_{0};  // rx_held_ for buffers_in_use()
    std::array<RxFrame, kMaxBatch> rx_slots_{};
    std::array<RxPacket, kMaxBatch> rx_packets_{};
    bool rx_sig_ = false;  // this batch handed up SIG frames
    std::vector<uint8_t> scratch_;  // receive target when the pool is empty
    // io_uring receive (TAP only): one posted read per slot.
    // Declared before the ring, so the ring (which cancels and waits for its
    // posted reads) is destroyed before the buffers they write into.
    TapDevice* tap_ = nullptr;
    std::array<BufRef, kMaxBatch> posted_{};
    std::array<bool, kMaxBatch> armed_{};
    std::vector<uint8_t> slot_scratch_;  // per slot, when the pool was empty at arming
    std::unique_ptr<TapRxRing> rx_ring_;
    std::atomic<uint64_t> popped_{0};
    std::unique_ptr<miniport::MpscRing<TxCompletion>> done_ring_;  // inline sends' completions
    std::atomic<uint64_t> done_popped_{0};

    alignas(miniport::kCacheLine) std::atomic<bool> tx_lock_{false};  // who writes to the link now
    alignas(miniport::kCacheLine) std::atomic<uint64_t> pushed_{0};
    std::atomic<uint64_t> done_pushed_{0};
    std::atomic<bool> sleeping_{false};
    std::atomic<uint64_t> loops_{0}, sleeps_{0}, tx_batches_{0}, rx_batches_{0}, link_backpressure_{0};
    std::jthread thread_;
  };

  DataPath(Link& link, miniport::Miniport& mp, DataPathHandler& h, const DataPathOptions& o);
  // One send on a point-to-multipoint root: the frame for its first leaf
  // plus a copy per further leaf, queued together. False: back-pressure
  // (ring or pool full), the packet stays with the caller. A shaped VC
  // shapes the group as one send: each leaf gets the VC's rate.
  bool send_multipoint(Worker& w, VcId vc, TxPacket& p, std::span<const miniport::LeafTarget> leaves,
                       size_t frame_len, uint32_t shape_rate, uint32_t shape_bucket) noexcept;

  Link& link_;
  miniport::Miniport& mp_;
  DataPathHandler& h_;
  DataPathOptions opts_;
  std::unique_ptr<miniport::PacketPool> pool_;
  uint32_t pool_reserve_ = 1;  // buffers only signaling may take (alloc() leaves them)
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
};

}  // namespace emulator
