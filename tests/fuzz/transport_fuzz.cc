// libFuzzer target for the reliable signaling transport (PROTOCOL.md 3.2).
// Two transports, A and B, talk over a channel the input controls (it
// delivers, drops, duplicates and reorders frames, and moves the clock),
// while a third MAC forges arbitrary MSG/ACK/RESET frames at both. Checked:
// each side delivers the other's messages in order and exactly once while
// neither reports the other down, restarted or reset; forged frames never
// touch the A-B association; and once the channel turns perfect, everything
// sent is delivered and acknowledged in bounded time.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

#include "cm/transport.h"
#include "tests/fuzz/fuzz_input.h"

using namespace cm;

namespace {

const MacAddress kMac[2] = {MacAddress::local(0xA), MacAddress::local(0xB)};
const MacAddress kForger = MacAddress::local(0xC);
constexpr uint32_t kInc[2] = {0x1111, 0x2222};

struct Side {
  Transport t;
  uint32_t sent = 0;      // messages handed to send(), numbered from 0
  uint32_t expected = 0;  // the next number due from the other side
};

struct Harness {
  std::array<Side, 2> side;
  std::array<std::deque<std::vector<uint8_t>>, 2> wire;  // wire[i]: frames from side i to the other
  Time now{};
  bool broken = false;  // an event ended the association: order is no longer promised

  explicit Harness(const TransportConfig& cfg) : side{Side{Transport(kInc[0], cfg)}, Side{Transport(kInc[1], cfg)}} {}

  void handle(int i, Actions& a) {
    for (OutFrame& f : a.frames) {
      if (f.peer == kMac[1 - i]) wire[i].push_back(std::move(f.frame));
      else if (!(f.peer == kForger)) std::abort();  // only the two peers are ever addressed
    }
    for (const Delivered& d : a.delivered) {
      if (d.peer == kForger) continue;
      if (!(d.peer == kMac[1 - i]) || d.body().size() < 4) std::abort();
      uint32_t n;
      std::memcpy(&n, d.body().data(), 4);
      if (!broken && n != side[i].expected) std::abort();  // out of order, lost or twice
      side[i].expected = n + 1;
    }
    for (const PeerEvent& e : a.events)
      if (!(e.peer == kForger)) broken = true;
    a.clear();
  }

  void send(int i, fuzz::Input& in) {
    std::vector<uint8_t> body(4 + in.u8() % 8, 0x5A);
    std::memcpy(body.data(), &side[i].sent, 4);
    Actions a;
    if (side[i].t.send(kMac[1 - i], body, now, a)) ++side[i].sent;
    handle(i, a);
  }

  void arrive(int to, std::span<const uint8_t> frame, const MacAddress& from) {
    auto f = decode_sig(frame);
    if (!f) return;
    Actions a;
    side[to].t.on_frame(from, *f, now, a);
    handle(to, a);
  }

  void tick() {
    for (int i = 0; i < 2; ++i) {
      Actions a;
      side[i].t.on_timer(now, a);
      handle(i, a);
    }
  }

  std::optional<Time> deadline() const {
    auto a = side[0].t.next_deadline(), b = side[1].t.next_deadline();
    if (!a) return b;
    if (!b) return a;
    return std::min(*a, *b);
  }

  void forge(fuzz::Input& in) {
    const int to = in.u8() & 1;
    SigHeader h;
    h.kind = static_cast<SigKind>(2 + in.u8() % 3);
    h.incarnation = in.u8() % 3;
    const uint8_t pi = in.u8() % 3;
    h.peer_incarnation = pi == 2 ? kInc[to] : pi;
    h.seq = in.u8() % 8;
    h.ack = in.u8() % 8;
    auto body = in.bytes(in.u8() % 16);
    std::vector<uint8_t> frame(kSigHeaderLen + body.size());
    if (!encode_sig(h, body, frame)) std::abort();
    arrive(to, frame, kForger);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::Input in(data, size);
  TransportConfig cfg;
  const uint8_t c = in.u8();
  cfg.window = 1 + (c & 7);
  cfg.fast_retransmit_acks = (c >> 3) & 1;
  cfg.max_queued = 16;
  Harness h(cfg);

  for (int steps = 0; !in.empty() && steps < 4096; ++steps) {
    switch (in.u8() % 8) {
      case 0:
      case 1:
        h.send(in.u8() & 1, in);
        break;
      case 2:
      case 3: {  // the channel: deliver, drop or duplicate a frame, in any order
        const int from = in.u8() & 1;
        auto& q = h.wire[from];
        if (q.empty()) break;
        const size_t k = in.u8() % q.size();
        const uint8_t what = in.u8() % 4;
        std::vector<uint8_t> frame = q[k];
        if (what != 2) q.erase(q.begin() + static_cast<long>(k));  // 2 duplicates: a copy stays
        if (what != 1) h.arrive(1 - from, frame, kMac[from]);      // 1 drops it
        break;
      }
      case 4:
        h.now += std::chrono::milliseconds(in.u8() * 4);
        h.tick();
        break;
      case 5:
        h.forge(in);
        break;
      case 6: {  // raw bytes as a frame from the forger
        const int to = in.u8() & 1;
        h.arrive(to, in.bytes(in.u8()), kForger);
        break;
      }
      case 7: {  // a HELLO from the true peer restates its incarnation: nothing happens
        const int i = in.u8() & 1;
        Actions a;
        h.side[i].t.peer_incarnation(kMac[1 - i], kInc[1 - i], a);
        if (!a.events.empty()) std::abort();
        h.handle(i, a);
        break;
      }
    }
  }

  // The channel turns perfect: everything must get through and be acked.
  for (int round = 0; round < 10000 && !h.broken; ++round) {
    bool moved = false;
    for (int from = 0; from < 2; ++from) {
      while (!h.wire[from].empty()) {
        std::vector<uint8_t> frame = std::move(h.wire[from].front());
        h.wire[from].pop_front();
        h.arrive(1 - from, frame, kMac[from]);
        moved = true;
      }
    }
    if (moved) continue;
    auto d = h.deadline();
    if (!d) break;
    h.now = std::max(h.now, *d);
    h.tick();
  }
  if (!h.broken) {
    for (int i = 0; i < 2; ++i) {
      if (h.side[1 - i].expected != h.side[i].sent) std::abort();  // a message never arrived
      if (h.side[i].t.unacked(kMac[1 - i]) != 0) std::abort();
    }
    if (h.deadline()) std::abort();  // nothing left to do, nothing may stay armed
  }
  return 0;
}
