// CmLimits: a SETUP flood from one peer is refused with cause 47 past its
// pending and rate limits while another peer is still served; calls per peer
// and SAPs per client are capped with a clear status.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>

#include "cm_lab.h"

namespace cm {
namespace {

// A peer that never said HELLO, talking to beta by hand: it numbers its
// MSGs, acks beta's in order and keeps what beta answered it.
struct ForgedPeer {
  MacAddress mac = MacAddress::local(0xf);
  uint32_t inc = 0xF0F0, seq = 0, ack = 0;
  struct Answer {
    MsgType type;
    uint32_t call_ref;
    uint8_t cause;
  };
  std::vector<Answer> answers;

  void send(Lab& l, const Message& m) {
    std::array<uint8_t, kMaxMessageBody> body;
    auto n = encode_message(m, body);
    ASSERT_TRUE(n);
    std::vector<uint8_t> f(kSigHeaderLen + *n);
    ASSERT_TRUE(encode_sig({SigKind::kMsg, inc, 0, ++seq, ack}, std::span(body).first(*n), f));
    CmOutput out;
    l.b.on_sig_frame(mac, f, l.now, out);
    collect(out);
    l.take(kMacB, out);
  }
  void setup(Lab& l, uint32_t ref) {
    Message m;
    m.type = MsgType::kSetup;
    m.call_ref = ref;
    static const uint8_t called[] = {'b', 'e', 't', 'a'};
    m.called_party = std::span<const uint8_t>(called);
    m.sap = SapValue{kSap42.type, kSap42.value};
    m.vci = 1000 + ref;
    send(l, m);
  }
  // Takes beta's frames to us out of `out`.
  void collect(CmOutput& out) {
    std::erase_if(out.frames, [&](const SigOut& f) {
      if (f.dst != mac) return false;
      auto s = decode_sig(f.payload);
      if (s && s->hdr.kind == SigKind::kMsg) {
        if (s->hdr.seq == ack + 1) ++ack;
        const Decoded d = decode_message(s->body);
        if (d.verdict == Verdict::kOk)
          answers.push_back({d.msg.type, d.msg.call_ref, d.msg.cause ? d.msg.cause->cause : uint8_t{0}});
      }
      return true;
    });
  }
  size_t refused(uint8_t cause) const {
    return static_cast<size_t>(std::count_if(answers.begin(), answers.end(), [&](const Answer& a) {
      return a.type == MsgType::kReleaseComplete && a.cause == cause;
    }));
  }
};

CmConfig limited(CmLimits lim) {
  CmConfig c;
  c.limits = lim;
  return c;
}

size_t count(const std::vector<ClientEvent>& ev, Ev k) {
  return static_cast<size_t>(std::count_if(ev.begin(), ev.end(), [&](const ClientEvent& e) { return e.kind == k; }));
}

TEST(Limits, PendingCallsFromOnePeerAreCappedWithCause47AndAnotherPeerIsServed) {
  Lab l({}, limited({.pending_per_peer = 3, .setups_per_second = 0}));
  l.start();
  (void)*l.b.register_sap(l.b.open_af(2, kCoemuAf)->id, kSap42);
  ForgedPeer f;
  for (uint32_t ref = 1; ref <= 5; ++ref) f.setup(l, ref);
  EXPECT_EQ(count(l.ev_b, Ev::kIncomingCall), 3u);
  EXPECT_EQ(f.refused(cause::kResourceUnavailable), 2u);
  EXPECT_EQ(l.b.counters().setups_limited, 2u);

  // alpha is another peer: its call is offered and completes.
  auto [vc_a, vc_b] = l.offer();
  ASSERT_TRUE(vc_b.valid());
  l.answer(vc_b, Status::kSuccess);
  const ClientEvent* done = l.last(l.ev_a, Ev::kMakeCallComplete);
  ASSERT_NE(done, nullptr);
  EXPECT_EQ(done->status, Status::kSuccess);

  // An answered call waits for CONNECT_ACK: still half-open, still held.
  std::vector<VcId> forged;
  for (const auto& e : l.ev_b)
    if (e.kind == Ev::kIncomingCall && e.vc != vc_b) forged.push_back(e.vc);
  ASSERT_EQ(forged.size(), 3u);
  CmOutput out;
  ASSERT_EQ(l.b.incoming_call_complete(forged[0], Status::kSuccess, l.now, out), Status::kSuccess);
  f.collect(out);
  l.take(kMacB, out);
  f.setup(l, 6);
  EXPECT_EQ(f.refused(cause::kResourceUnavailable), 3u);
  // A refused one is gone, and makes room for one more.
  ASSERT_EQ(l.b.incoming_call_complete(forged[1], Status::kNotAccepted, l.now, out), Status::kSuccess);
  f.collect(out);
  l.take(kMacB, out);
  const size_t offered = count(l.ev_b, Ev::kIncomingCall);
  f.setup(l, 7);
  EXPECT_EQ(count(l.ev_b, Ev::kIncomingCall), offered + 1);
  EXPECT_EQ(f.refused(cause::kResourceUnavailable), 3u);
  f.setup(l, 8);  // three half-open again
  EXPECT_EQ(f.refused(cause::kResourceUnavailable), 4u);
  // CONNECT_ACK makes the answered call active: no longer half-open.
  const size_t connected = count(l.ev_b, Ev::kCallConnected);  // alpha's call's
  Message ack;
  ack.type = MsgType::kConnectAck;
  ack.call_ref = 1;
  f.send(l, ack);
  EXPECT_EQ(count(l.ev_b, Ev::kCallConnected), connected + 1);
  f.setup(l, 9);
  EXPECT_EQ(count(l.ev_b, Ev::kIncomingCall), offered + 2);
  EXPECT_EQ(f.refused(cause::kResourceUnavailable), 4u);
}

TEST(Limits, SetupsFromOnePeerAreRateLimitedPerSecond) {
  Lab l({}, limited({.pending_per_peer = 0, .setups_per_second = 50}));
  l.start();
  (void)*l.b.register_sap(l.b.open_af(2, kCoemuAf)->id, kSap42);
  ForgedPeer f;
  for (uint32_t ref = 1; ref <= 80; ++ref) f.setup(l, ref);
  EXPECT_EQ(count(l.ev_b, Ev::kIncomingCall), 50u);
  EXPECT_EQ(f.refused(cause::kResourceUnavailable), 30u);
  l.now += seconds(1);  // the bucket refills at 50 a second
  for (uint32_t ref = 81; ref <= 160; ++ref) f.setup(l, ref);
  EXPECT_EQ(count(l.ev_b, Ev::kIncomingCall), 100u);
  EXPECT_EQ(f.refused(cause::kResourceUnavailable), 60u);
  EXPECT_EQ(l.b.counters().setups_limited, 60u);
}

TEST(Limits, CallsPerPeerAreCappedOnBothSides) {
  // beta takes two calls from alpha; the third is refused with cause 47.
  Lab l({}, limited({.calls_per_peer = 2, .pending_per_peer = 0, .setups_per_second = 0}));
  l.start();
  for (int i = 0; i < 2; ++i) {
    auto [vc_a, vc_b] = l.offer();
    ASSERT_TRUE(vc_b.valid()) << i;
    l.answer(vc_b, Status::kSuccess);
  }
  const VcId vc_a = l.offer().first;
  EXPECT_EQ(count(l.ev_b, Ev::kIncomingCall), 2u) << "the third was never offered";
  const ClientEvent* done = l.last(l.ev_a, Ev::kMakeCallComplete);
  ASSERT_NE(done, nullptr);
  EXPECT_EQ(done->vc, vc_a);
  EXPECT_EQ(done->cause, cause::kResourceUnavailable);
  EXPECT_EQ(done->status, Status::kResources);

  // alpha with the same limit refuses the third call itself, at once.
  Lab m(limited({.calls_per_peer = 2, .pending_per_peer = 0, .setups_per_second = 0}));
  m.start();
  for (int i = 0; i < 2; ++i) {
    auto [a, b] = m.offer();
    m.answer(b, Status::kSuccess);
  }
  VcId third = *m.a.create_vc(m.a.open_af(1, kCoemuAf)->id);
  CmOutput out;
  EXPECT_EQ(m.a.make_call(third, "beta", kSap42, m.now, out), Status::kResources);
  EXPECT_TRUE(out.frames.empty());
}

TEST(Limits, SapsPerClientAreCapped) {
  Lab l({}, limited({.saps_per_client = 2}));
  const AfOpenId af = l.b.open_af(2, kCoemuAf)->id;
  EXPECT_TRUE(l.b.register_sap(af, SapSpec{1, {0, 1}}));
  EXPECT_TRUE(l.b.register_sap(af, SapSpec{1, {0, 2}}));
  auto third = l.b.register_sap(af, SapSpec{1, {0, 3}});
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error(), Status::kResources);
  // Another client has its own allowance.
  EXPECT_TRUE(l.b.register_sap(l.b.open_af(3, kCoemuAf)->id, SapSpec{1, {0, 3}}));
}

}  // namespace
}  // namespace cm
