#include "emulator/data_path.h"

#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "emulator/clock.h"
#include "miniport/byte_order.h"

namespace emulator {

namespace {
// The worker whose I/O thread this is (none: nullptr).
thread_local const void* t_worker = nullptr;

// A spin-wait hint: the core saves power and a sibling hyperthread runs.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace

using miniport::kFramePayloadOffset;
using miniport::RxKind;

RxPacket& RxPacket::operator=(RxPacket&& o) noexcept {
  if (this != &o) {
    release();
    buf_ = std::move(o.buf_);
    table_ = std::exchange(o.table_, nullptr);
    vc_ = o.vc_;
    owner_ = o.owner_;
    off_ = o.off_;
    len_ = o.len_;
  }
  return *this;
}

void RxPacket::release() noexcept {
  buf_.reset();
  // After the buffer: a deactivation that sees the receive returned may
  // finish, and by then the buffer is back in the pool.
  if (table_) std::exchange(table_, nullptr)->rx_returned(vc_);
}

DataPath::DataPath(Link& link, miniport::Miniport& mp, DataPathHandler& h, const DataPathOptions& o)
    : link_(link), mp_(mp), h_(h), opts_(o) {}

DataPath::Worker::Worker(DataPath& dp, uint32_t q)
    : dp_(dp), q_(q), link_(dp.link_), mp_(dp.mp_), h_(dp.h_), opts_(dp.opts_), pool_(dp.pool_.get()) {}

Result<void> DataPath::Worker::init() {
  tx_ring_ = std::make_unique<miniport::MpscRing<TxItem>>(opts_.tx_ring);
  ring_reserve_ = std::clamp<size_t>(tx_ring_->capacity() / 8, 1, 64);
  done_ring_ = std::make_unique<miniport::MpscRing<TxCompletion>>(opts_.tx_ring);
  scratch_.resize(pool_->buffer_size());
  wake_fd_ = COEMU_TRY(UniqueFd::eventfd());
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return miniport::fail(record_errno("epoll_create1", errno));
  epoll_.reset(ep);
  auto add = [&](int fd, uint64_t tag) -> Result<void> {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return miniport::fail(record_errno("epoll_ctl", errno));
    return {};
  };
  tap_ = dynamic_cast<TapDevice*>(&link_);
  if (opts_.uring_rx && tap_ && tap_->io() == TapIo::kIoUring) {
    if (auto ring = TapRxRing::create(tap_->queue_fd(q_), opts_.batch)) {
      rx_ring_ = std::move(*ring);
      slot_scratch_.resize(size_t{opts_.batch} * pool_->buffer_size());
      for (uint32_t i = 0; i < opts_.batch; ++i) arm(i);
      COEMU_TRY(rx_ring_->submit());
    }  // else: io_uring refused for receiving; read() it is
  }
  COEMU_TRY(add(rx_ring_ ? rx_ring_->event_fd() : link_.rx_fd_on(q_), 0));
  COEMU_TRY(add(wake_fd_.get(), 1));
  // Carrier events are the first worker's job.
  if (q_ == 0 && opts_.link_events) {
    COEMU_TRY(add(opts_.link_events->fd(), 2));
    // The current state first (it arrives as events): a link that is up
    // when we start is reported up without waiting for a change.
    COEMU_TRY(opts_.link_events->request_dump());
  }
  reader_ = mp_.vcs().qsbr().register_reader();
  if (reader_ >= miniport::Qsbr::kMaxReaders) {
    set_last_error("too many I/O threads on one miniport");
    return miniport::fail(Status::kResources);
  }
  return {};
}

Result<std::unique_ptr<DataPath>> DataPath::start(Link& link, miniport::Miniport& mp, DataPathHandler& h,
                                                  const DataPathOptions& o) {
  if (o.batch == 0 || o.batch > kMaxBatch) {
    set_last_error("data path batch must be within 1..64");
    return miniport::fail(Status::kInvalidData);
  }
  if (o.tx_ring < 2 || o.pool_buffers < 2 * o.batch) {
    set_last_error("data path needs a send ring of 2+ slots and a pool of at least 2 batches");
    return miniport::fail(Status::kInvalidData);
  }
  std::unique_ptr<DataPath> dp(new DataPath(link, mp, h, o));
  uint32_t size = o.buffer_size ? o.buffer_size : link.mtu() + 14;
  size = (size + 63) & ~63u;
  if (size < link.mtu() + 14) {
    set_last_error("data path buffers of " + std::to_string(size) + " bytes cannot hold an MTU frame");
    return miniport::fail(Status::kInvalidData);
  }
  auto pool = miniport::PacketPool::create({.buffers = o.pool_buffers, .buffer_size = size});
  if (!pool) {
    set_last_error("cannot carve the packet pool");
    return miniport::fail(pool.error());
  }
  dp->pool_ = std::move(*pool);
  // What data leaves free for signaling: a node's own SETUPs, RELEASEs and
  // acks must not be dropped because a client filled the pool or the send
  // ring (they would then wait for a retransmission).
  dp->pool_reserve_ = std::clamp<uint32_t>(o.pool_buffers / 16, 1, 64);
  const uint32_t queues = std::max<uint32_t>(1, std::min(link.queues(), kMaxQueues));
  for (uint32_t q = 0; q < queues; ++q) {
    dp->workers_.push_back(std::make_unique<Worker>(*dp, q));
    COEMU_TRY(dp->workers_.back()->init());
  }
  for (auto& w : dp->workers_) w->start();
  return dp;
}

DataPath::~DataPath() { stop(); }

void DataPath::stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_.store(true, std::memory_order_seq_cst);
  for (auto& w : workers_) w->join();
  for (auto& w : workers_) w->drain_on_stop();
}

void DataPath::Worker::join() {
  if (!thread_.joinable()) return;
  wake();
  thread_.join();
}

void DataPath::Worker::drain_on_stop() noexcept {
  // The kernel lets go of the posted receive buffers first.
  rx_ring_.reset();
  for (auto& b : posted_) b.reset();
  for (auto& b : rx_bufs_) b.reset();
  rx_held_ = 0;
  rx_idle_bufs_.store(0, std::memory_order_release);
  // Whatever is still queued never reaches the wire.
  complete(std::span(tx_items_).first(tx_pending_), /*abort=*/true);
  tx_pending_ = 0;
  for (auto& [slot, s] : shapers_) {
    while (!s.queue.empty()) {
      complete(std::span(&s.queue.front(), 1), /*abort=*/true);
      s.queue.pop_front();
    }
  }
  shapers_.clear();
  for (;;) {
    const size_t n = tx_ring_->pop_burst(std::span(tx_items_));
    if (n == 0) break;
    complete(std::span(tx_items_).first(n), /*abort=*/true);
  }
  while (deliver_done()) {
  }
}

BufRef DataPath::alloc() noexcept {
  // Clients leave the last few buffers to signaling (send_frame).
  if (pool_->available() <= pool_reserve_) {
    mp_.count_tx_pool_empty();
    return {};
  }
  return pool_->try_get();
}

size_t DataPath::buffers_in_use() const noexcept {
  size_t idle = pool_->available();
  for (const auto& w : workers_) idle += w->idle_rx_buffers();
  return pool_->buffers() > idle ? pool_->buffers() - idle : 0;
}

uint32_t DataPath::max_payload() const noexcept {
  return std::min<uint32_t>(mp_.max_payload(), pool_->buffer_size() - kFramePayloadOffset);
}

void DataPath::Worker::wake() noexcept {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
}

size_t DataPath::send(VcId vc, std::span<TxPacket> packets) noexcept {
  // One worker per VC keeps the VC's frames in order.
  Worker& w = *workers_[workers_.size() == 1 ? 0 : vc.slot % workers_.size()];
  size_t taken = 0;
  std::array<TxItem, kMaxBatch> items;
  // Room for a multipoint root's leaves, made once per call rather than per
  // packet (its 64 targets are value-initialised).
  std::array<miniport::LeafTarget, miniport::kMaxLeaves> leaves;
  // Items [from, to) of this batch did not go: undo them, and the packets go
  // back to the caller untouched.
  auto give_back = [&](size_t from, size_t to) {
    for (size_t j = from; j < to; ++j) {
      TxItem& back = items[j];
      if (back.status == Status::kSuccess) mp_.cancel_tx(back.vc, back.len);
      packets[taken + j].buf = pool_->adopt(back.buf, packets[taken + j].buf.size());
    }
  };
  while (taken < packets.size()) {
    size_t chunk = std::min<size_t>(packets.size() - taken, kMaxBatch);
    // An empty buffer ends the batch: there is nothing to send or to free.
    bool hit_empty = false;
    for (size_t i = 0; i < chunk; ++i)
      if (!packets[taken + i].buf) {
        chunk = i;
        hit_empty = true;
        break;
      }
    if (chunk == 0) break;
    for (size_t i = 0; i < chunk; ++i) {
      TxPacket& p = packets[taken + i];
      TxItem& it = items[i];
      it.vc = vc;
      it.cookie = p.cookie;
      miniport::Miniport::TxInfo info{.leaves = leaves};
      auto n = mp_.frame_tx(vc, std::span(p.buf.data(), p.buf.capacity()), p.buf.size(), &info);
      it.shape_rate = info.shape_rate;
      it.shape_bucket = info.shape_bucket;
      const size_t nleaves = info.nleaves;
      if (n && nleaves > 0) {
        // A multipoint root: what is batched so far goes first, then this
        // packet with its copies as one group (their order kept).
        const size_t before = i ? w.send_items(std::span(items).first(i)) : 0;
        if (before < i || !send_multipoint(w, vc, p, std::span(leaves).first(nleaves), *n, info.shape_rate,
                                                info.shape_bucket)) {
          give_back(before, i);
          mp_.cancel_tx(vc, *n);  // this packet stays the caller's too
          mp_.count_tx_ring_full();
          return taken + before;
        }
        taken += i + 1;
        chunk = 0;
        hit_empty = false;
        break;
      }
      if (n) {
        it.len = static_cast<uint32_t>(*n);
        it.status = Status::kSuccess;
      } else {
        // R72 and friends: taken, never on the wire, completed with the reason.
        it.len = 0;
        it.status = n.error();
      }
      it.buf = p.buf.release();
    }
    if (chunk == 0) continue;  // a multipoint send went on its own
    const size_t pushed = w.send_items(std::span(items).first(chunk));
    give_back(pushed, chunk);  // ring full
    taken += pushed;
    if (pushed < chunk) {
      mp_.count_tx_ring_full();
      break;
    }
    if (hit_empty) break;
  }
  return taken;
}

bool DataPath::send_multipoint(Worker& w, VcId vc, TxPacket& p, std::span<const miniport::LeafTarget> leaves,
                               size_t frame_len, uint32_t shape_rate, uint32_t shape_bucket) noexcept {
  std::array<TxItem, miniport::kMaxLeaves> group;
  const uint32_t payload = p.buf.size();
  // Every frame of the group goes through the VC's shaper, in order.
  TxItem shaping;
  shaping.vc = vc;
  shaping.status = Status::kSuccess;
  shaping.shape_rate = shape_rate;
  shaping.shape_bucket = shape_bucket;
  size_t made = 0;
  for (size_t k = 1; k < leaves.size(); ++k) {
    BufRef b = pool_->available() > pool_reserve_ ? pool_->try_get() : BufRef{};
    if (!b) {
      mp_.count_tx_pool_empty();
      for (size_t j = 0; j < made; ++j) BufRef back = pool_->adopt(group[j].buf);
      return false;
    }
    // The copy differs from the first leaf's frame in its destination and label.
    std::memcpy(b.data(), p.buf.data(), frame_len);
    std::memcpy(b.data(), leaves[k].peer.bytes.data(), 6);
    miniport::store_be32(b.data() + miniport::kEthHeaderLen, leaves[k].tx_vci);
    TxItem& c = group[made++];
    c = shaping;
    c.len = static_cast<uint32_t>(frame_len);
    c.raw = true;  // no completion of its own: the original's stands for the send
    c.free_ride = made > 1;
    c.buf = b.release();
  }
  // The original last: its completion comes after every copy was written.
  TxItem& it = group[made++];
  it = shaping;
  it.cookie = p.cookie;
  it.len = static_cast<uint32_t>(frame_len);
  it.free_ride = made > 1;
  it.buf = p.buf.release();
  if (w.send_group(std::span(group).first(made))) return true;
  p.buf = pool_->adopt(it.buf, payload);
  for (size_t j = 0; j + 1 < made; ++j) BufRef back = pool_->adopt(group[j].buf);
  return false;
}

Result<void> DataPath::send_frame(std::span<const uint8_t> frame, bool write_now) noexcept {
  if (frame.empty() || frame.size() > size_t{link_.mtu()} + 14 || frame.size() > pool_->buffer_size())
    return miniport::fail(Status::kInvalidLength);
  BufRef b = pool_->try_get();
  if (!b) return miniport::fail(Status::kResources);
  std::memcpy(b.data(), frame.data(), frame.size());
  TxItem it;
  it.len = static_cast<uint32_t>(frame.size());
  it.raw = true;
  it.buf = b.release();
  if (workers_[0]->send_items(std::span(&it, 1), write_now, /*sig=*/true) != 1) {
    BufRef back = pool_->adopt(it.buf);
    return miniport::fail(Status::kResources);
  }
  return {};
}

size_t DataPath::Worker::ring_room(bool sig) const noexcept {
  // pushed_ is raised just after a push, so popped_ may be ahead for a moment.
  const uint64_t pushed = pushed_.load(std::memory_order_acquire), popped = popped_.load(std::memory_order_acquire);
  const uint64_t used = pushed > popped ? pushed - popped : 0;
  const uint64_t limit = tx_ring_->capacity() - (sig ? 0 : ring_reserve_);
  return used >= limit ? 0 : static_cast<size_t>(limit - used);
}

size_t DataPath::Worker::send_items(std::span<TxItem> items, bool write_now, bool sig) noexcept {
  // From this worker's own thread (a handler sending from an upcall) the
  // ring is the way: indicate() writes them in one burst when the upcall
  // returns. In busy-poll mode, where latency is the point, the thread writes
  // them at once instead when nothing is queued ahead.
  const bool own = t_worker == this;
  const bool write_self = own ? opts_.busy_poll : opts_.inline_tx || write_now;
  const size_t inlined = write_self ? send_inline(items, own) : 0;
  // Data leaves the ring's last slots to signaling (see pool_reserve_).
  const auto rest = items.subspan(inlined);
  const auto room = rest.first(std::min(rest.size(), ring_room(sig)));
  const size_t queued = room.empty() ? 0 : tx_ring_->push_burst(room);
  if (queued) {
    // Dekker with the I/O thread's sleep: publish, then look whether it sleeps.
    pushed_.fetch_add(queued, std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_seq_cst)) wake();
  }
  return inlined + queued;
}

bool DataPath::Worker::send_group(std::span<TxItem> items) noexcept {
  if (ring_room(false) < items.size() || tx_ring_->push_all(items) != items.size()) return false;
  pushed_.fetch_add(items.size(), std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_seq_cst)) wake();
  return true;
}

size_t DataPath::Worker::send_inline(std::span<TxItem> items, bool own) noexcept {
  if (!try_lock_tx()) return 0;
  // Only when nothing is queued ahead: a sender's frames never overtake its
  // own earlier frames still in the ring or pending in the I/O thread. The
  // I/O thread itself must also find room for the completions: it is the one
  // that drains that ring, so it cannot wait for room below.
  const uint64_t done_used = done_pushed_.load(std::memory_order_relaxed) - done_popped_.load(std::memory_order_relaxed);
  if (tx_pending_ != 0 || pushed_.load(std::memory_order_acquire) != popped_.load(std::memory_order_acquire) ||
      (own && done_used + items.size() > done_ring_->capacity())) {
    release_tx(tx_pending_ != 0);
    return 0;
  }
  std::array<std::span<const uint8_t>, kMaxBatch> spans;
  uint32_t wire = 0;
  for (const TxItem& it : items)
    if (it.status == Status::kSuccess) spans[wire++] = {pool_->buffer(it.buf), it.len};
  size_t sent = 0;
  Status err = Status::kSuccess;
  if (wire) {
    auto r = link_.send_burst_on(q_, std::span(spans).first(wire));
    if (r) sent = *r;
    else err = r.error(), sent = wire;
  }
  release_tx(false);
  // An impaired link may hold what we wrote until a deadline, and only the
  // I/O thread releases held frames: have it look at the new deadline.
  if (sent && link_.next_deadline() && sleeping_.load(std::memory_order_seq_cst)) wake();
  // Settle the prefix up to the last frame the link took; what it refused
  // (back-pressure) goes to the ring, in order, behind nothing.
  size_t settled = 0, wire_seen = 0;
  std::array<TxCompletion, kMaxBatch> done;
  size_t nd = 0;
  for (TxItem& it : items) {
    if (it.status == Status::kSuccess) {
      if (wire_seen == sent) break;
      ++wire_seen;
      if (it.raw) {
        BufRef back = pool_->adopt(it.buf);
        ++settled;
        continue;
      }
      if (err == Status::kSuccess) {
        mp_.complete_tx(it.vc, it.len, true);
      } else {
        mp_.complete_tx(it.vc, it.len, false);
        it.status = err;
      }
    }
    done[nd++] = TxCompletion{it.vc, it.cookie, it.status};
    { BufRef back = pool_->adopt(it.buf); }
    ++settled;
  }
  // R70: completions are never inline; the I/O thread delivers them.
  size_t off = 0;
  while (off < nd) {
    off += done_ring_->push_burst(std::span(done).subspan(off, nd - off));
    if (off < nd) {
      wake();
      std::this_thread::yield();
    }
  }
  if (nd) {
    done_pushed_.fetch_add(nd, std::memory_order_seq_cst);
    if (sleeping_.load(std::memory_order_seq_cst)) wake();
  }
  return settled;
}

void DataPath::Worker::release_tx(bool work_left) noexcept {
  // Dekker with the I/O thread's sleep, which looks at the lock after
  // announcing it sleeps: either it saw the lock free and carries on, or we
  // see it asleep here and wake it for what waits.
  tx_lock_.store(false, std::memory_order_seq_cst);
  if (!sleeping_.load(std::memory_order_seq_cst)) return;
  if (work_left || pushed_.load(std::memory_order_seq_cst) != popped_.load(std::memory_order_seq_cst)) wake();
}

bool DataPath::Worker::deliver_done() noexcept {
  const size_t n = done_ring_->pop_burst(std::span(completions_));
  if (n == 0) return false;
  done_popped_.fetch_add(n, std::memory_order_relaxed);
  h_.on_send_complete(std::span(completions_).first(n));
  return true;
}

void DataPath::Worker::complete(std::span<TxItem> items, bool abort) noexcept {
  size_t n = 0;
  for (TxItem& it : items) {
    if (it.raw) {
      BufRef back = pool_->adopt(it.buf);  // a SIG frame: no VC, no completion
      continue;
    }
    Status st = it.status;
    if (st == Status::kSuccess) {
      if (abort) {
        mp_.cancel_tx(it.vc, it.len);  // never reached the wire (R71: REQUEST_ABORTED)
        st = Status::kRequestAborted;
      } else {
        mp_.complete_tx(it.vc, it.len, true);
      }
    }
    { BufRef back = pool_->adopt(it.buf); }  // the buffer goes home
    completions_[n++] = TxCompletion{it.vc, it.cookie, st};
    if (n == completions_.size()) {
      h_.on_send_complete(std::span(completions_).first(n));
      n = 0;
    }
  }
  if (n) h_.on_send_complete(std::span(completions_).first(n));
}

void DataPath::Worker::shape_new(uint32_t from) noexcept {
  const miniport::Time now = steady_now();
  uint32_t kept = from;
  for (uint32_t i = from; i < tx_pending_; ++i) {
    TxItem& it = tx_items_[i];
    if (it.shape_rate == 0 || it.status != Status::kSuccess) {  // SIG frames have no rate
      tx_items_[kept++] = it;
      continue;
    }
    Shaper& s = shapers_[it.vc.slot];
    if (!(s.vc == it.vc) || s.rate != it.shape_rate || s.bucket != it.shape_bucket) {
      if (!(s.vc == it.vc)) s = Shaper{};  // a new VC in this slot
      s.vc = it.vc;
      s.rate = it.shape_rate;
      s.bucket = it.shape_bucket;
      s.tb.reset(s.rate, s.bucket, now);
    }
    if (!it.free_ride) s.refusing = false;  // a new send
    if (!s.refusing && s.queue.empty() && s.tb.take(it.free_ride ? 0 : it.len, now)) {
      tx_items_[kept++] = it;
    } else if (!s.refusing && (s.queue.size() < kShapeQueue || it.free_ride)) {
      s.queue.push_back(it);
    } else {
      // More than the shaper holds: refused, and said so in the completion
      // (a multipoint send's copies with it: no leaf gets it).
      s.refusing = true;
      if (!it.raw) mp_.cancel_tx(it.vc, it.len);
      it.status = Status::kResources;
      tx_items_[kept++] = it;
    }
  }
  tx_pending_ = kept;
}

std::optional<miniport::Time> DataPath::Worker::release_shaped() noexcept {
  if (shapers_.empty()) return std::nullopt;
  const miniport::Time now = steady_now();
  std::optional<miniport::Time> due;
  for (auto it = shapers_.begin(); it != shapers_.end();) {
    Shaper& s = it->second;
    while (!s.queue.empty() && tx_pending_ < opts_.batch) {
      TxItem& front = s.queue.front();
      if (!mp_.vcs().tx_active(s.vc)) {
        // Deactivated meanwhile: what waits never reaches the wire (R71).
        if (!front.raw) mp_.cancel_tx(front.vc, front.len);
        front.status = Status::kRequestAborted;
      } else if (!s.tb.take(front.free_ride ? 0 : front.len, now)) {
        break;
      }
      tx_items_[tx_pending_++] = front;
      s.queue.pop_front();
    }
    if (!s.queue.empty()) {
      const TxItem& front = s.queue.front();
      const miniport::Time t = s.tb.ready_at(front.free_ride ? 0 : front.len, now);
      if (!due || t < *due) due = t;
    } else if (!mp_.vcs().tx_active(s.vc)) {
      it = shapers_.erase(it);  // a VC that is gone keeps no shaper
      continue;
    }
    ++it;
  }
  return due;
}

bool DataPath::Worker::do_tx() noexcept {
  // A sender writing inline holds the link: it wakes us when it lets go if
  // work is waiting (release_tx), so there is nothing to spin for.
  if (!try_lock_tx()) return false;
  shape_due_ = release_shaped();
  if (tx_pending_ < opts_.batch) {
    const uint32_t before = tx_pending_;
    const size_t n = tx_ring_->pop_burst(std::span(tx_items_).subspan(tx_pending_, opts_.batch - tx_pending_));
    popped_.fetch_add(n, std::memory_order_release);
    tx_pending_ += static_cast<uint32_t>(n);
    shape_new(before);
    if (!shapers_.empty() && n) shape_due_ = release_shaped();
  }
  if (tx_pending_ == 0) {
    unlock_tx();
    return false;
  }
  // Items refused before the wire complete at once; the rest go in one burst.
  uint32_t wire = 0;
  for (uint32_t i = 0; i < tx_pending_; ++i) {
    const TxItem& it = tx_items_[i];
    if (it.status == Status::kSuccess) tx_spans_[wire++] = {pool_->buffer(it.buf), it.len};
  }
  size_t sent = 0;
  if (wire) {
    wrote_ = true;
    auto r = link_.send_burst_on(q_, std::span(tx_spans_).first(wire));
    if (r) {
      sent = *r;
      if (sent < wire) link_backpressure_.fetch_add(1, std::memory_order_relaxed);
    } else {
      // The device is gone or refused the burst: fail it rather than retry
      // for ever; each frame is counted as a transmit error.
      for (uint32_t i = 0; i < tx_pending_; ++i) {
        TxItem& it = tx_items_[i];
        if (it.status != Status::kSuccess) continue;
        if (!it.raw) mp_.complete_tx(it.vc, it.len, false);
        it.status = r.error();
      }
    }
  }
  tx_batches_.fetch_add(1, std::memory_order_relaxed);
  // Complete the refused items and the first `sent` wire items; keep the
  // other wire items, in order, for the next round (back-pressure, no loss).
  // (Kept items move down within tx_items_; finished ones go to a member
  // array rather than two 3 KB locals set up on every call.)
  uint32_t done = 0, kept = 0, wire_seen = 0;
  for (uint32_t i = 0; i < tx_pending_; ++i) {
    const TxItem& it = tx_items_[i];
    if (it.status == Status::kSuccess && wire_seen++ >= sent) tx_items_[kept++] = it;
    else tx_finished_[done++] = it;
  }
  tx_pending_ = kept;
  unlock_tx();
  complete(std::span(tx_finished_).first(done), /*abort=*/false);
  return true;
}

bool DataPath::Worker::arm(uint32_t i) noexcept {
  if (!posted_[i]) posted_[i] = pool_->try_get();
  // Pool empty: read into this slot's scratch, and drop (counted) what lands there.
  std::span<uint8_t> buf = posted_[i] ? std::span(posted_[i].data(), posted_[i].capacity())
                                      : std::span(&slot_scratch_[size_t{i} * pool_->buffer_size()],
                                                  pool_->buffer_size());
  armed_[i] = rx_ring_->post(i, buf);
  return armed_[i];
}

bool DataPath::Worker::do_rx_ring() noexcept {
  size_t out = 0, n = 0;
  rx_ring_->reap([&](uint64_t tag, int res) {
    const auto i = static_cast<uint32_t>(tag);
    armed_[i] = false;
    ++n;
    if (res <= 0) return;  // an error or a cancel: the slot is simply re-armed
    const bool scratch = !posted_[i];
    const uint8_t* data = scratch ? &slot_scratch_[size_t{i} * pool_->buffer_size()] : posted_[i].data();
    std::span<const uint8_t> frame(data, static_cast<size_t>(res));
    tap_->account_rx(q_, frame);
    sort(frame, scratch ? nullptr : &posted_[i], out);
  });
  // Re-arm every free slot with one submission.
  bool rearmed = false;
  for (uint32_t i = 0; i < opts_.batch; ++i)
    if (!armed_[i]) rearmed |= arm(i);
  if (rearmed) (void)rx_ring_->submit();
  indicate(out, n);
  return n > 0;
}

void DataPath::Worker::sort(std::span<const uint8_t> frame, BufRef* buf, size_t& out) noexcept {
  const miniport::RxVerdict v = mp_.classify(frame);
  switch (v.kind) {
    case RxKind::kSig:
      h_.on_signaling(frame);
      rx_sig_ = true;
      break;
    case RxKind::kDrop: break;
    case RxKind::kData:
      if (!buf) {
        if (auto ind = mp_.rx_drop_after_lookup(v, /*pool_empty=*/true)) h_.on_status(*ind);
        break;
      }
      mp_.rx_handed_over(v);
      RxPacket& p = rx_packets_[out++];
      p.buf_ = std::move(*buf);
      p.buf_.set_size(static_cast<uint32_t>(frame.size()));
      p.table_ = &mp_.vcs();
      p.vc_ = v.hit.id;
      p.owner_ = v.hit.owner;
      p.off_ = v.payload_off;
      p.len_ = v.payload_len;
      break;
  }
}

void DataPath::Worker::indicate(size_t out, size_t frames) noexcept {
  if (out) {
    h_.on_receive(std::span(rx_packets_).first(out));
    for (size_t i = 0; i < out; ++i) rx_packets_[i].release();
  }
  if (frames) rx_batches_.fetch_add(1, std::memory_order_relaxed);
  if (rx_sig_) {
    rx_sig_ = false;
    h_.on_signaling_done();
  }
  // What the handlers sent from these upcalls (answers, relayed packets,
  // signaling) goes out now, in one burst, not after the rest of the round.
  if (frames && pushed_.load(std::memory_order_relaxed) != popped_.load(std::memory_order_relaxed)) (void)do_tx();
}

bool DataPath::Worker::do_rx() noexcept {
  if (rx_ring_) return do_rx_ring();
  // Buffers a round did not fill stay for the next: an idle round costs one
  // read() and no pool traffic (a get and a put of 32 buffers each idle
  // round made the busy-poll round trip 2x the raw loop's).
  const uint32_t want = opts_.batch;
  if (rx_held_ < want) {
    rx_held_ += static_cast<uint32_t>(pool_->get_burst(std::span(rx_bufs_).subspan(rx_held_, want - rx_held_)));
    rx_idle_bufs_.store(rx_held_, std::memory_order_release);
  }
  // After an idle round, read one frame and hand it over before looking for
  // more: a lone frame (a request, a ping) is answered without first paying
  // for the read that finds the queue empty. A stream reads in batches.
  const size_t slots = rx_held_ && !rx_idle_ ? rx_held_ : 1;
  // Newest buffers first: the pool hands out the ones returned last, still
  // in cache, and those sit at the end.
  const auto held = [&](size_t i) -> BufRef& { return rx_bufs_[rx_held_ - 1 - i]; };
  for (size_t i = 0; i < slots; ++i) {
    if (rx_held_) rx_slots_[i] = RxFrame{{held(i).data(), held(i).capacity()}};
    else rx_slots_[i] = RxFrame{{scratch_.data(), scratch_.size()}};  // pool empty: read to drop
  }
  auto r = link_.recv_burst_on(q_, std::span(rx_slots_).first(slots));
  const size_t n = r ? *r : 0;
  // Buffers_in_use() may count the filled ones in use a moment too early,
  // never too late.
  if (rx_held_ && n) rx_idle_bufs_.store(rx_held_ - static_cast<uint32_t>(n), std::memory_order_release);
  size_t out = 0;
  for (size_t i = 0; i < n; ++i) {
    std::span<const uint8_t> frame(rx_slots_[i].buf.data(), rx_slots_[i].len);
    sort(frame, rx_held_ ? &held(i) : nullptr, out);
  }
  if (rx_held_ && n) {
    // Data frames took their buffers along: close the gaps.
    uint32_t kept = 0;
    for (uint32_t i = 0; i < rx_held_; ++i)
      if (rx_bufs_[i]) {
        if (i != kept) rx_bufs_[kept] = std::move(rx_bufs_[i]);
        ++kept;
      }
    rx_held_ = kept;
    rx_idle_bufs_.store(rx_held_, std::memory_order_release);
  }
  rx_idle_ = n == 0;
  indicate(out, n);
  return n > 0;
}

void DataPath::Worker::do_events() noexcept {
  if (!opts_.link_events) return;
  auto evs = opts_.link_events->poll(std::chrono::nanoseconds(0));
  if (!evs) return;
  for (const LinkEvent& e : *evs) {
    if (e.name != opts_.ifname) continue;
    if (auto ind = mp_.on_carrier(e.up && e.carrier)) h_.on_status(*ind);
  }
}

void DataPath::indicate_carrier(bool up) {
  if (auto ind = mp_.on_carrier(up)) h_.on_status(*ind);
}

void DataPath::Worker::run() noexcept {
  t_worker = this;
  const std::string name = "coemu-io" + std::to_string(q_);  // for top -H, perf and gdb
  pthread_setname_np(pthread_self(), name.c_str());
  if (opts_.cpu >= 0) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET((static_cast<unsigned>(opts_.cpu) + q_) % cores, &set);
    // Best effort: a refused pin (a cpuset without that core) leaves the thread where it is.
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  auto& qsbr = mp_.vcs().qsbr();
  qsbr.online(reader_);
  epoll_event evs[4];
  const bool poll = opts_.poll_window.count() > 0;
  miniport::Time last_busy{}, last_wrote{};
  while (!dp_.stop_.load(std::memory_order_acquire)) {
    loops_.fetch_add(1, std::memory_order_relaxed);
    wrote_ = false;
    bool busy = do_tx();
    busy |= do_rx();
    busy |= deliver_done();
    if (q_ == 0)
      if (auto d = link_.next_deadline(); d && *d <= steady_now()) link_.flush_due();
    qsbr.quiescent(reader_);  // no VC pointer is held past here
    if (busy) {
      last_busy = steady_now();
      if (wrote_) last_wrote = last_busy;
      continue;
    }
    if (opts_.busy_poll) {
      if (opts_.link_events) do_events();
      // Spinning, not working: now and then a thread ready on this core (a
      // client, another node's I/O thread on a small machine) runs first.
      // Not every round: the syscall would double an idle round's cost.
      if ((++idle_rounds_ & 15) == 0) sched_yield();
      continue;
    }
    if (const miniport::Time now = steady_now(); poll && now - last_busy < opts_.poll_window) {
      // Polling, not working: any other thread ready on this core (a client
      // about to send, the control thread) goes first.
      sched_yield();
      // A thread that wrote nothing lately is taking in a stream, not waiting
      // for an answer: it looks about once a microsecond, not back to back.
      // Reading an empty TAP queue again and again pulls the slot the sender
      // writes next over to this core (64 B throughput fell 5% with it).
      if (now - last_wrote >= opts_.poll_window) {
        const miniport::Time until = now + std::chrono::microseconds(1);
        while (steady_now() < until) cpu_relax();
      }
      continue;
    }
    // Going to sleep: announce it, then look once more for sends published
    // before the announcement (Dekker with send()).
    // Sends waiting behind a sender that holds the link are its to hand
    // back (release_tx wakes us): spinning for them here would keep that
    // sender off a shared core until the next tick.
    sleeping_.store(true, std::memory_order_seq_cst);
    const bool tx_work =
        pushed_.load(std::memory_order_seq_cst) != popped_.load(std::memory_order_relaxed) || tx_pending_;
    if ((tx_work && !tx_lock_.load(std::memory_order_seq_cst)) ||
        done_pushed_.load(std::memory_order_seq_cst) != done_popped_.load(std::memory_order_relaxed)) {
      sleeping_.store(false, std::memory_order_relaxed);
      continue;
    }
    // Sleep until the link's next held frame or the next shaped one is due
    // (nanosecond timeout: a shaper releases frames microseconds apart).
    std::optional<miniport::Time> due = q_ == 0 ? link_.next_deadline() : std::nullopt;
    if (shape_due_ && (!due || *shape_due_ < *due)) due = shape_due_;
    timespec ts{};
    if (due) {
      const int64_t left = std::max<int64_t>(0, (*due - steady_now()).count());
      ts.tv_sec = left / 1'000'000'000;
      ts.tv_nsec = left % 1'000'000'000;
    }
    qsbr.offline(reader_);
    sleeps_.fetch_add(1, std::memory_order_relaxed);
    const int n = ::epoll_pwait2(epoll_.get(), evs, 4, due ? &ts : nullptr, nullptr);
    sleeping_.store(false, std::memory_order_relaxed);
    qsbr.online(reader_);
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == 1) {
        uint64_t v;
        [[maybe_unused]] ssize_t r = ::read(wake_fd_.get(), &v, sizeof v);
      } else if (evs[i].data.u64 == 2) {
        do_events();
      }
    }
  }
  qsbr.offline(reader_);
}

void DataPath::Worker::add(DataPathCounters& c) const noexcept {
  c.loops += loops_.load(std::memory_order_relaxed);
  c.sleeps += sleeps_.load(std::memory_order_relaxed);
  c.tx_batches += tx_batches_.load(std::memory_order_relaxed);
  c.rx_batches += rx_batches_.load(std::memory_order_relaxed);
  c.link_backpressure += link_backpressure_.load(std::memory_order_relaxed);
}

uint32_t DataPath::uring_receivers() const noexcept {
  uint32_t n = 0;
  for (const auto& w : workers_) n += w->uring_rx();
  return n;
}

DataPathCounters DataPath::counters() const noexcept {
  DataPathCounters c;
  for (const auto& w : workers_) w->add(c);
  return c;
}

}  // namespace emulator
