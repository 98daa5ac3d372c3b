// A forged peer on the wire (an AF_PACKET socket on beta's TAP) sends beta
// broken and hostile frames while alpha's call to beta is up: random bytes
// under both EtherTypes, truncated, oversized and lying headers, wrong
// versions and kinds, IEs past the end, unknown message types, messages for
// unknown calls, a duplicate SETUP, a RELEASE for alpha's call, and a flood
// of SETUPs. Beta must count each by its reason, answer as PROTOCOL.md 4.2
// says, and keep alpha's call.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "cm/sig_codec.h"
#include "frame_injector.h"
#include "miniport/byte_order.h"
#include "tap_calls.h"

namespace emulator {
namespace {

using cm::MsgType;
using coemu_test::FrameInjector;
using std::chrono::milliseconds;

const MacAddress kBeta = MacAddress::local(0xb);

// A peer that never said HELLO: its own MAC and incarnation, numbering its
// MSGs and acking beta's answers in order.
struct Forger {
  MacAddress mac = MacAddress::local(0xf);
  uint32_t inc = 0xF00D;
  uint32_t seq = 0;
  uint32_t ack = 0;

  std::vector<uint8_t> sig(const cm::SigHeader& h, std::span<const uint8_t> body) const {
    std::vector<uint8_t> p(cm::kSigHeaderLen + body.size());
    EXPECT_TRUE(cm::encode_sig(h, body, p));
    return FrameInjector::frame(kBeta, mac, miniport::kEtherTypeSig, p);
  }
  std::vector<uint8_t> msg(std::span<const uint8_t> body) {
    return sig({cm::SigKind::kMsg, inc, 0, ++seq, ack}, body);
  }
  std::vector<uint8_t> bare_ack() const { return sig({cm::SigKind::kAck, inc, 0, 0, ack}, {}); }
};

std::vector<uint8_t> encode(const cm::Message& m) {
  std::vector<uint8_t> b(cm::kMaxMessageBody);
  auto n = cm::encode_message(m, b);
  EXPECT_TRUE(n);
  b.resize(n ? *n : 0);
  return b;
}

cm::Message message(MsgType t, uint32_t ref) {
  cm::Message m;
  m.type = t;
  m.call_ref = ref;
  return m;
}

// What beta answered: the fields the tests look at.
struct Answer {
  MsgType type;
  uint32_t call_ref;
  std::optional<uint8_t> cause;
  std::optional<uint8_t> call_state;
};

class HostileFrames : public TapCalls {
 protected:
  void SetUp() override {
    TapCalls::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto inj = FrameInjector::open("coet1");
    ASSERT_TRUE(inj) << "AF_PACKET on coet1: " << std::strerror(errno);
    inj_.emplace(std::move(*inj));
  }

  void send(std::span<const uint8_t> frame) { ASSERT_TRUE(inj_->send(frame)) << std::strerror(errno); }

  // The next MSG beta sends the forger whose message is of type `want`;
  // MSGs before it are acked and skipped (retransmissions among them).
  std::optional<Answer> answer(MsgType want) {
    const auto deadline = std::chrono::steady_clock::now() + seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      auto p = inj_->receive(kBeta, miniport::kEtherTypeSig, milliseconds(500));
      if (!p) continue;
      auto f = cm::decode_sig(*p);
      if (!f || f->hdr.kind != cm::SigKind::kMsg || f->hdr.peer_incarnation != forger_.inc) continue;
      if (f->hdr.seq == forger_.ack + 1) {
        ++forger_.ack;
        send(forger_.bare_ack());
      }
      const cm::Decoded d = cm::decode_message(f->body);
      if (d.verdict != cm::Verdict::kOk || d.msg.type != want) continue;
      return Answer{d.msg.type, d.msg.call_ref, d.msg.cause ? std::optional(d.msg.cause->cause) : std::nullopt,
                    d.msg.call_state};
    }
    return std::nullopt;
  }

  cm::CmCounters cm_counters() { return beta_->sig_counters().cm; }

  std::optional<FrameInjector> inj_;
  Forger forger_;
};

TEST_F(HostileFrames, BrokenSigHeadersAreDroppedAndCountedByReason) {
  const auto before = cm_counters();
  std::vector<uint8_t> hdr(cm::kSigHeaderLen + 10);
  ASSERT_TRUE(cm::encode_sig({cm::SigKind::kMsg, 1, 0, 1, 0}, std::vector<uint8_t>(10, 0), hdr));
  auto sig = [&](std::vector<uint8_t> p) {
    send(FrameInjector::frame(kBeta, forger_.mac, miniport::kEtherTypeSig, p));
  };
  sig(std::vector<uint8_t>(hdr.begin(), hdr.begin() + 10));  // truncated header
  auto v2 = hdr;
  v2[0] = 2;  // version 2
  sig(v2);
  auto kind9 = hdr;
  kind9[1] = 9;
  sig(kind9);
  auto lying = hdr;
  miniport::store_be16(lying.data() + 4, 100);  // body_len 100, 10 bytes follow
  sig(lying);
  auto short_hdr = hdr;
  miniport::store_be16(short_hdr.data() + 2, 20);  // hdr_len under 24
  sig(short_hdr);
  // Larger than the MTU beta was started with (the device's MTU raised
  // under it, so the kernel lets the frame through): the TAP read cuts it
  // (counted by the link), and what is left lies about its length.
  auto nl = RouteNetlink::open();
  ASSERT_TRUE(nl && nl->set_mtu("coet1", 4000)) << last_error();
  const uint64_t truncated = taps_[1]->counters().rx_truncated;
  std::vector<uint8_t> huge(4000, 0);
  ASSERT_TRUE(cm::encode_sig({cm::SigKind::kMsg, 1, 0, 1, 0}, std::vector<uint8_t>(4000 - 24, 0), huge));
  sig(huge);

  ASSERT_TRUE(wait_for([&] { return cm_counters().frames_malformed == before.frames_malformed + 6; }, seconds(10)))
      << cm_counters().frames_malformed - before.frames_malformed;
  const auto after = cm_counters();
  EXPECT_EQ(after.sig_short, before.sig_short + 1);
  EXPECT_EQ(after.sig_bad_version, before.sig_bad_version + 1);
  EXPECT_EQ(after.sig_bad_kind, before.sig_bad_kind + 1);
  EXPECT_EQ(after.sig_bad_length, before.sig_bad_length + 3);
  EXPECT_EQ(taps_[1]->counters().rx_truncated, truncated + 1);
}

TEST_F(HostileFrames, BadMessagesAreAnsweredAsTheProtocolSaysAndTheCallStaysUp) {
  VcId vc = *alpha_->create_vc(af_a_);
  auto up = call(vc, kSap42);
  ASSERT_TRUE(up && up->status == Status::kSuccess);
  const auto snap = beta_->snapshot();
  ASSERT_EQ(snap.calls.size(), 1u);
  const uint32_t alphas_ref = snap.calls[0].call_ref;
  const auto before = cm_counters();

  // A message whose length disagrees with its MSG's body_len: malformed,
  // dropped unanswered (4.2 step 1).
  auto lying = encode(message(MsgType::kConnect, 0x80000005));
  miniport::store_be16(lying.data() + 2, 6);
  ASSERT_EQ(cm::decode_message(lying).verdict, cm::Verdict::kMalformed) << "the test's own frame";
  send(forger_.msg(lying));
  ASSERT_TRUE(wait_for([&] { return cm_counters().msg_malformed == before.msg_malformed + 1; }, seconds(10)));

  // An unknown message type: STATUS, cause 97 (4.2 step 2).
  auto unknown = encode(message(MsgType::kConnect, 0x80000005));
  unknown[0] = 0x33;
  send(forger_.msg(unknown));
  auto a = answer(MsgType::kStatus);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cause, cm::cause::kMessageTypeNonExistent);

  // A message for a call that does not exist: RELEASE_COMPLETE, cause 81.
  cm::Message stray = message(MsgType::kConnect, 0x80001234);
  stray.vci = 5;
  send(forger_.msg(encode(stray)));
  a = answer(MsgType::kReleaseComplete);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cause, cm::cause::kInvalidCallRef);
  EXPECT_EQ(a->call_ref, 0x00001234u);

  // A RELEASE naming alpha's call, from another MAC: not its call, so it
  // is an unknown call here too (81), and alpha's call is untouched.
  cm::Message rel = message(MsgType::kRelease, alphas_ref);
  rel.cause = cm::CauseIe{cm::cause::kNormalClearing, 0};
  send(forger_.msg(encode(rel)));
  a = answer(MsgType::kReleaseComplete);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cause, cm::cause::kInvalidCallRef);

  // A SETUP beta accepts, then the same SETUP again: STATUS, cause 101.
  cm::Message setup = message(MsgType::kSetup, 9);
  const uint8_t called[] = {'b', 'e', 't', 'a'};
  const uint8_t sap42[] = {0, 42};
  setup.called_party = std::span<const uint8_t>(called);
  setup.sap = cm::SapValue{1, sap42};
  setup.vci = 77;
  const auto setup_body = encode(setup);
  send(forger_.msg(setup_body));
  a = answer(MsgType::kConnect);
  ASSERT_TRUE(a) << "beta's listener accepts every call";
  send(forger_.msg(setup_body));
  a = answer(MsgType::kStatus);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cause, cm::cause::kMessageNotCompatibleWithState);
  // The forger ends its call; beta answers and frees it.
  cm::Message end = message(MsgType::kRelease, 9);
  end.cause = cm::CauseIe{cm::cause::kNormalClearing, 0};
  send(forger_.msg(encode(end)));
  ASSERT_TRUE(answer(MsgType::kReleaseComplete));

  // A SETUP with an invalid IE (VCI 0): refused with cause 100.
  cm::Message bad = setup;
  bad.call_ref = 10;
  auto bad_body = encode(bad);
  // VCI is the IE with code 0x05: zero its value in place.
  for (size_t i = 8; i + 8 <= bad_body.size(); i += 4 + miniport::load_be16(bad_body.data() + i + 2)) {
    if (bad_body[i] == 0x05) std::memset(bad_body.data() + i + 4, 0, 4);
  }
  ASSERT_EQ(cm::decode_message(bad_body).verdict, cm::Verdict::kBadIe) << "the test's own frame";
  send(forger_.msg(bad_body));
  a = answer(MsgType::kReleaseComplete);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cause, cm::cause::kInvalidIeContents);

  // A SETUP whose last IE runs past the end of the message: cause 100.
  bad = setup;
  bad.call_ref = 11;
  auto past_end = encode(bad);
  past_end.insert(past_end.end(), {0x0A, 0x00, 0x00, 0x10, 0x01, 0x02});  // USER_DATA: 16 bytes, 2 there
  miniport::store_be16(past_end.data() + 2, static_cast<uint16_t>(past_end.size() - 8));
  ASSERT_EQ(cm::decode_message(past_end).verdict, cm::Verdict::kBadIe) << "the test's own frame";
  send(forger_.msg(past_end));
  a = answer(MsgType::kReleaseComplete);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->cause, cm::cause::kInvalidIeContents);
  EXPECT_EQ(a->call_ref, 0x8000000Bu);

  const auto after = cm_counters();
  EXPECT_EQ(after.msg_unknown_type, before.msg_unknown_type + 1);
  EXPECT_EQ(after.msg_unknown_call, before.msg_unknown_call + 2);
  EXPECT_EQ(after.msg_wrong_state, before.msg_wrong_state + 1);
  EXPECT_EQ(after.msg_bad_ie, before.msg_bad_ie + 2);

  // Alpha's call is still up and carries data.
  EXPECT_EQ(caller_.count(Ev::kIncomingClose), 0u);
  EXPECT_EQ(coemu_test::send_seq(alpha_->data(), vc, 0, 3), 3u);
  EXPECT_TRUE(wait_for([&] { return listener_.received.load() >= 3; }, seconds(10)));
  EXPECT_TRUE(wait_for([&] { return beta_->calls() == 1; }, seconds(10))) << "the forger's call is gone";
  ASSERT_EQ(alpha_->close_call(vc), Status::kPending);
  EXPECT_TRUE(wait_for([&] { return caller_.count(Ev::kCloseCallComplete) == 1; }, seconds(10)));
}

TEST_F(HostileFrames, RandomBytesUnderBothEtherTypesAreEachCountedOnce) {
  VcId vc = *alpha_->create_vc(af_a_);
  auto up = call(vc, kSap42);
  ASSERT_TRUE(up && up->status == Status::kSuccess);
  std::mt19937 rng(42);
  const auto cm_before = cm_counters();
  const auto& mc = beta_->miniport().counters();
  auto data_drops = [&] {
    return mc.rx_malformed.load() + mc.rx_bad_vci.load() + mc.rx_unknown_vci.load() + mc.rx_not_activated.load() +
           mc.rx_foreign.load();
  };
  const uint64_t data_before = data_drops();
  const uint64_t delivered_before = listener_.received.load();
  uint64_t sig_rejected = 0;
  constexpr int kFrames = 300;
  for (int i = 0; i < kFrames; ++i) {
    std::vector<uint8_t> p(rng() % 200);
    for (auto& b : p) b = static_cast<uint8_t>(rng());
    // The rare one that is a well-formed SIG frame is not sent: each sent
    // must be dropped and counted exactly once.
    if (!cm::decode_sig(p)) {
      ++sig_rejected;
      send(FrameInjector::frame(kBeta, forger_.mac, miniport::kEtherTypeSig, p));
    }
    // DATA: labels with the top bit set, which beta never hands out.
    if (p.size() >= 1) p[0] |= 0x80;
    send(FrameInjector::frame(kBeta, forger_.mac, miniport::kEtherTypeData, p));
  }
  EXPECT_TRUE(wait_for([&] { return data_drops() == data_before + kFrames; }, seconds(10)))
      << data_drops() - data_before;
  EXPECT_TRUE(wait_for([&] { return cm_counters().frames_malformed == cm_before.frames_malformed + sig_rejected; },
                       seconds(10)))
      << cm_counters().frames_malformed - cm_before.frames_malformed << " of " << sig_rejected;
  EXPECT_EQ(listener_.received.load(), delivered_before) << "no forged DATA reached the client";
  // The call survived it all.
  EXPECT_EQ(caller_.count(Ev::kIncomingClose), 0u);
  EXPECT_EQ(coemu_test::send_seq(alpha_->data(), vc, 0, 3), 3u);
  EXPECT_TRUE(wait_for([&] { return listener_.received.load() >= delivered_before + 3; }, seconds(10)));
}

TEST_F(HostileFrames, SetupFloodFromOneForgedPeerIsRefusedWith47WhileAlphaCompletesItsCalls) {
  // 20,000 SETUPs a second for 1 s from the forger, each a new call to
  // beta's SAP 42 (which accepts everything); beta's default limits
  // (1,024 half-open calls and 10,000 SETUPs a second per peer) refuse the
  // excess with cause 47. A reader acks beta's answers, as a peer would.
  std::atomic<uint32_t> ack{0};         // beta's MSGs we took, in order
  std::atomic<uint32_t> beta_acked{0};  // our MSGs beta took, in order
  std::atomic<bool> flooding{true}, reading{true};
  std::atomic<uint64_t> refused47{0}, connects{0}, sent{0};
  std::atomic<int64_t> flood_ns{0};  // how long the 20,000 took to send
  std::thread reader([&] {
    while (reading.load()) {
      auto p = inj_->receive(kBeta, miniport::kEtherTypeSig, milliseconds(100));
      if (!p) continue;
      auto f = cm::decode_sig(*p);
      if (!f || f->hdr.peer_incarnation != forger_.inc) continue;
      if (f->hdr.ack > beta_acked.load()) beta_acked.store(f->hdr.ack);
      if (f->hdr.kind != cm::SigKind::kMsg) continue;
      if (f->hdr.seq != ack.load() + 1) continue;  // a resend, or one lost on our socket: beta resends
      ack.store(f->hdr.seq);
      (void)inj_->send(forger_.sig({cm::SigKind::kAck, forger_.inc, 0, 0, f->hdr.seq}, {}));
      const cm::Decoded d = cm::decode_message(f->body);
      if (d.verdict != cm::Verdict::kOk) continue;
      if (d.msg.type == MsgType::kReleaseComplete && d.msg.cause &&
          d.msg.cause->cause == cm::cause::kResourceUnavailable)
        refused47.fetch_add(1);
      if (d.msg.type == MsgType::kConnect) connects.fetch_add(1);
    }
  });
  std::thread flood([&] {
    cm::Message setup = message(MsgType::kSetup, 0);
    const uint8_t called[] = {'b', 'e', 't', 'a'};
    const uint8_t sap42[] = {0, 42};
    setup.called_party = std::span<const uint8_t>(called);
    setup.sap = cm::SapValue{1, sap42};
    const auto start = std::chrono::steady_clock::now();
    auto next = start;
    const auto end = next + seconds(1);
    std::vector<std::vector<uint8_t>> frames;  // frames[seq - 1], for resending
    uint32_t acked = 0;
    size_t resent = 0;  // after the flood: frames before this went out again already
    auto acked_at = next;
    // Like any peer's transport, the forger resends from beta's ack when it
    // stalls (a frame the kernel's TAP queue dropped while beta was busy
    // would otherwise hold back every later SETUP past beta's window).
    while (flooding.load()) {
      const auto now = std::chrono::steady_clock::now();
      if (now < end) {
        flood_ns.store((now - start).count() + 1'000'000);
        for (int i = 0; i < 20; ++i) {  // 20 a millisecond
          const auto seq = static_cast<uint32_t>(frames.size() + 1);
          setup.call_ref = seq;
          setup.vci = 1000 + seq;
          frames.push_back(forger_.sig({cm::SigKind::kMsg, forger_.inc, 0, seq, ack.load()}, encode(setup)));
          if (inj_->send(frames.back())) sent.fetch_add(1);
        }
      } else if (beta_acked.load() >= frames.size() || now > end + seconds(20)) {
        break;
      }
      if (const uint32_t a = beta_acked.load(); a != acked) {
        acked = a;
        acked_at = now;
      } else if (acked < frames.size() && now - acked_at > milliseconds(50)) {
        resent = acked;  // stalled: the window again, from beta's ack
        acked_at = now;
      }
      if (now >= end) {  // keep beta's window (64) full from its ack on
        resent = std::max<size_t>(resent, acked);
        for (; resent < std::min<size_t>(acked + 64, frames.size()); ++resent) (void)inj_->send(frames[resent]);
      }
      next += milliseconds(1);
      std::this_thread::sleep_until(next);
    }
  });
  struct Join {  // the threads end even when an assertion returns early
    std::atomic<bool>& a;
    std::atomic<bool>& b;
    std::thread& t1;
    std::thread& t2;
    ~Join() {
      a.store(false);
      b.store(false);
      t1.join();
      t2.join();
    }
  } join{flooding, reading, flood, reader};

  // alpha, on the same link, keeps making and closing calls meanwhile.
  const auto t0 = std::chrono::steady_clock::now();
  int made = 0;
  size_t most_calls = 0;  // at beta, sampled: the forger's half-open calls and alpha's one
  while (std::chrono::steady_clock::now() - t0 < seconds(2) || made < 10) {
    most_calls = std::max(most_calls, beta_->calls());
    VcId vc = *alpha_->create_vc(af_a_);
    auto done = call(vc, kSap42);
    ASSERT_TRUE(done.has_value()) << "call " << made << " never completed";
    ASSERT_EQ(done->status, Status::kSuccess) << "call " << made << ", cause " << int{done->cause};
    const size_t closed = caller_.count(Ev::kCloseCallComplete);
    ASSERT_EQ(alpha_->close_call(vc), Status::kPending);
    ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kCloseCallComplete) > closed; }, seconds(10)));
    ASSERT_TRUE(wait_for([&] { return alpha_->delete_vc(vc) == Status::kSuccess; }, seconds(10)));
    ++made;
  }
  // beta takes every SETUP in the end (the forger resends what was lost),
  // and each is taken or refused; give the answers time to land.
  EXPECT_TRUE(wait_for([&] {
    most_calls = std::max(most_calls, beta_->calls());
    return beta_acked.load() >= sent.load();
  }, seconds(60))) << "beta acked " << beta_acked.load() << " of " << sent.load();
  const auto& c = [&] { return beta_->sig_counters().cm; };
  EXPECT_TRUE(wait_for([&] { return refused47.load() > 0 && refused47.load() >= c().setups_limited * 9 / 10; },
                       seconds(10)))
      << refused47.load() << " answers with cause 47 seen, beta refused " << c().setups_limited;
  std::printf("flood: %llu SETUPs sent (%.0f/s); beta refused %llu with cause 47, took %llu; alpha made %d calls\n",
              static_cast<unsigned long long>(sent.load()), static_cast<double>(sent.load()) * 1e9 / flood_ns.load(),
              static_cast<unsigned long long>(c().setups_limited), static_cast<unsigned long long>(connects.load()),
              made);
  EXPECT_GT(c().setups_limited, 0u);
  EXPECT_LE(most_calls, 1024u + 1) << "no more half-open calls than the limit";
  // The forged calls end by T313 and T308 (4 s each): nothing is left.
  EXPECT_TRUE(wait_for([&] { return beta_->calls() == 0 && beta_->vcs_in_use() == 0; }, seconds(20)))
      << beta_->calls() << " calls left";
}

}  // namespace
}  // namespace emulator
