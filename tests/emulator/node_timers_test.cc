// Every timer of PROTOCOL.md section 6, and the transport's give-up, driven by
// targeted faults (ImpairmentConfig faults: drop every message of one type)
// between two nodes on a memory wire, with 300 ms call timers. Each test
// asserts what the clients hear and that neither node keeps the call.
#include <gtest/gtest.h>

#include "emulator/mem_link.h"
#include "emulator/node.h"
#include "recording_client.h"

namespace emulator {
namespace {

using coemu_test::wait_for;
using miniport::MacAddress;
using Ev = ClientEvent::Kind;
using std::chrono::milliseconds;
using std::chrono::seconds;

const SapSpec kSap42{1, {0, 42}};
constexpr uint8_t kTimerExpiry = cm::cause::kRecoveryOnTimerExpiry;  // 102

class NodeTimers : public ::testing::Test {
 protected:
  // Short call timers; the transport keeps its defaults (it gives up after
  // ~7 s) unless a test says otherwise, so a call timer fires first.
  void start(const cm::TransportConfig& alpha_transport = {}) {
    auto pair = MemLink::make_pair({});
    ASSERT_TRUE(pair.has_value());
    links_ = std::move(*pair);
    const cm::CallTimers t{.t303 = milliseconds(300), .t310 = milliseconds(300), .t313 = milliseconds(300),
                           .t308 = milliseconds(300), .t322 = milliseconds(300)};
    auto a = Node::start(*links_.first, {.address = "alpha", .mac = MacAddress::local(0xa), .timers = t,
                                         .transport = alpha_transport});
    auto b = Node::start(*links_.second, {.address = "beta", .mac = MacAddress::local(0xb), .timers = t});
    ASSERT_TRUE(a && b) << last_error();
    alpha_ = std::move(*a);
    beta_ = std::move(*b);
    caller_.node = alpha_.get();
    listener_.node = beta_.get();
    listener_.accept = true;
    af_a_ = *alpha_->open_af(alpha_->attach(&caller_));
    af_b_ = *beta_->open_af(beta_->attach(&listener_));
    ASSERT_TRUE(beta_->register_sap(af_b_, kSap42));
    ASSERT_TRUE(wait_for([&] { return alpha_->knows("beta") && beta_->knows("alpha"); }, seconds(10)));
  }
  void TearDown() override {
    alpha_.reset();
    beta_.reset();
  }
  // What `side` sends from now on: a fault spec, or "none".
  void impair(bool beta_side, const char* spec) {
    auto cfg = ImpairmentConfig::parse(spec);
    ASSERT_TRUE(cfg) << last_error();
    ASSERT_TRUE((beta_side ? links_.second : links_.first)->set_impairment(*cfg));
  }
  std::optional<ClientEvent> make_call(VcId vc) {
    const size_t before = caller_.count(Ev::kMakeCallComplete);
    EXPECT_EQ(alpha_->make_call(vc, "beta", kSap42), Status::kPending);
    if (!wait_for([&] { return caller_.count(Ev::kMakeCallComplete) > before; }, seconds(10))) return std::nullopt;
    return caller_.last(Ev::kMakeCallComplete);
  }
  VcId call_up() {
    VcId vc = *alpha_->create_vc(af_a_);
    auto done = make_call(vc);
    EXPECT_TRUE(done && done->status == Status::kSuccess);
    EXPECT_TRUE(wait_for([&] { return listener_.count(Ev::kCallConnected) > 0; }, seconds(10)));
    return vc;
  }
  // Neither node keeps a call, and alpha's VC can go.
  void nothing_left(VcId vc) {
    EXPECT_TRUE(wait_for([&] { return alpha_->calls() == 0 && beta_->calls() == 0; }, seconds(10)))
        << alpha_->calls() << " / " << beta_->calls();
    EXPECT_TRUE(wait_for([&] { return alpha_->delete_vc(vc) == Status::kSuccess; }, seconds(10)));
  }

  std::pair<std::unique_ptr<MemLink>, std::unique_ptr<MemLink>> links_;
  coemu_test::RecordingClient caller_, listener_;  // outlive the nodes
  std::unique_ptr<Node> alpha_, beta_;
  AfOpenId af_a_, af_b_;
};

TEST_F(NodeTimers, T303_NoAnswerToSetupFailsTheCallWithCause102) {
  start();
  impair(false, "fault=drop:SETUP");
  VcId vc = *alpha_->create_vc(af_a_);
  auto done = make_call(vc);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, Status::kFailure);
  EXPECT_EQ(done->cause, kTimerExpiry);
  EXPECT_EQ(listener_.count(Ev::kIncomingCall), 0u);
  EXPECT_GT(links_.first->impairment_counters().faulted, 0u);
  nothing_left(vc);
}

TEST_F(NodeTimers, T310_ProceedingButNoConnectFailsTheCallAndTellsTheCallee) {
  start();
  listener_.accept = false;
  listener_.defer = true;  // CALL_PROCEEDING, then silence
  VcId vc = *alpha_->create_vc(af_a_);
  auto done = make_call(vc);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, Status::kFailure);
  EXPECT_EQ(done->cause, kTimerExpiry);
  ASSERT_TRUE(wait_for([&] { return listener_.count(Ev::kIncomingClose) == 1; }, seconds(10)));
  EXPECT_EQ(listener_.last(Ev::kIncomingClose)->cause, kTimerExpiry);
  nothing_left(vc);
}

TEST_F(NodeTimers, T313_NoConnectAckClearsTheCallAtBothEnds) {
  start();
  impair(false, "fault=drop:CONNECT_ACK");
  VcId vc = *alpha_->create_vc(af_a_);
  auto done = make_call(vc);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, Status::kSuccess) << "the caller is up once CONNECT arrives";
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kIncomingClose) == 1; }, seconds(10)));
  EXPECT_EQ(caller_.last(Ev::kIncomingClose)->cause, kTimerExpiry);
  EXPECT_EQ(listener_.count(Ev::kCallConnected), 0u);
  ASSERT_TRUE(wait_for([&] { return listener_.count(Ev::kIncomingClose) == 1; }, seconds(10)));
  EXPECT_EQ(listener_.last(Ev::kIncomingClose)->cause, kTimerExpiry);
  nothing_left(vc);
}

TEST_F(NodeTimers, T308_NoReleaseCompleteStillCompletesTheClose) {
  start();
  VcId vc = call_up();
  impair(true, "fault=drop:RELEASE_COMPLETE");
  ASSERT_EQ(alpha_->close_call(vc), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kCloseCallComplete) == 1; }, seconds(10)));
  EXPECT_EQ(caller_.last(Ev::kCloseCallComplete)->cause, kTimerExpiry) << "freed by T308, not by an answer";
  EXPECT_EQ(listener_.count(Ev::kIncomingClose), 1u);
  nothing_left(vc);
}

TEST_F(NodeTimers, T322_AnsweredEnquiryKeepsTheCallUnansweredOneClearsIt) {
  start();
  VcId vc = call_up();
  ASSERT_EQ(alpha_->enquire_call(vc), Status::kSuccess);
  auto t322_running = [&] {
    for (const auto& c : alpha_->snapshot().calls)
      for (const auto& t : c.timers)
        if (std::string_view(t.name) == "T322") return true;
    return false;
  };
  ASSERT_TRUE(wait_for([&] { return !t322_running(); }, seconds(10))) << "beta's STATUS stopped T322";
  EXPECT_EQ(caller_.count(Ev::kIncomingClose), 0u);
  EXPECT_EQ(alpha_->calls(), 1u);

  impair(true, "fault=drop:STATUS");
  ASSERT_EQ(alpha_->enquire_call(vc), Status::kSuccess);
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kIncomingClose) == 1; }, seconds(10)));
  EXPECT_EQ(caller_.last(Ev::kIncomingClose)->cause, kTimerExpiry);
  ASSERT_TRUE(wait_for([&] { return listener_.count(Ev::kIncomingClose) == 1; }, seconds(10)))
      << "the RELEASE_COMPLETE of the clearing reached beta";
  nothing_left(vc);
  EXPECT_EQ(alpha_->enquire_call(vc), Status::kFailure) << "no call on it";
}

TEST_F(NodeTimers, T399_T398_PartyTimersRefuseTheAddAndFreeTheDrop) {
  start();
  VcId vc = *alpha_->create_vc(af_a_);
  auto p1 = alpha_->make_multipoint_call(vc, "beta", kSap42);
  ASSERT_TRUE(p1);
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kMakeCallComplete) == 1; }, seconds(10)));
  ASSERT_EQ(caller_.last(Ev::kMakeCallComplete)->status, Status::kSuccess);

  impair(true, "fault=drop:ADD_PARTY_ACK");
  auto p2 = alpha_->add_party(vc, "beta", kSap42);
  ASSERT_TRUE(p2);
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kAddPartyComplete) == 1; }, seconds(10)));
  auto added = caller_.last(Ev::kAddPartyComplete);
  EXPECT_EQ(added->party, *p2);
  EXPECT_NE(added->status, Status::kSuccess);
  EXPECT_EQ(added->cause, kTimerExpiry);
  EXPECT_TRUE(wait_for([&] { return beta_->calls() == 1; }, seconds(10))) << "T399's DROP_PARTY freed beta's leaf";

  impair(true, "none");
  auto p3 = alpha_->add_party(vc, "beta", kSap42);
  ASSERT_TRUE(p3);
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kAddPartyComplete) == 2; }, seconds(10)));
  ASSERT_EQ(caller_.last(Ev::kAddPartyComplete)->status, Status::kSuccess);
  impair(true, "fault=drop:DROP_PARTY_ACK");
  ASSERT_EQ(alpha_->drop_party(*p3), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kDropPartyComplete) == 1; }, seconds(10)));
  EXPECT_EQ(caller_.last(Ev::kDropPartyComplete)->party, *p3);
  EXPECT_EQ(caller_.last(Ev::kDropPartyComplete)->cause, kTimerExpiry) << "freed by T398";
  EXPECT_TRUE(wait_for([&] { return alpha_->calls() == 1 && beta_->calls() == 1; }, seconds(10)));
  ASSERT_EQ(alpha_->close_call(vc), Status::kPending);
  nothing_left(vc);
}

TEST_F(NodeTimers, TransportGivesUpClearsBothEndsAndTheNextCallWorks) {
  // alpha resends at 20, 60, 140 ms and gives up at the 4th expiry (~220
  // ms); beta keeps the defaults (it would give up after ~7 s), so only
  // alpha's RESET can make beta drop its side that soon.
  start({.rto_initial = milliseconds(20), .rto_max = milliseconds(80), .max_retries = 4});
  VcId vc = call_up();
  impair(true, "loss=100%");  // beta hears alpha; alpha hears nothing, no ACK either
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(alpha_->enquire_call(vc), Status::kSuccess);
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kIncomingClose) == 1; }, seconds(10)));
  EXPECT_EQ(caller_.last(Ev::kIncomingClose)->cause, cm::cause::kTemporaryFailure);
  ASSERT_TRUE(wait_for([&] { return listener_.count(Ev::kIncomingClose) == 1; }, seconds(10)))
      << "alpha's RESET made beta drop its side too";
  EXPECT_EQ(listener_.last(Ev::kIncomingClose)->cause, cm::cause::kTemporaryFailure);
  EXPECT_LT(beta_->sig_counters().transport.retransmits, 7u) << "beta did not give up on its own";
  nothing_left(vc);

  impair(true, "none");
  VcId again = *alpha_->create_vc(af_a_);
  auto done = make_call(again);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, Status::kSuccess) << "a fresh association at both ends";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, seconds(7)) << "before beta's own give-up could have helped";
}

}  // namespace
}  // namespace emulator
