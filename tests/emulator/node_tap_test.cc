// Two nodes on TAPs bridged in a namespace of the test's own: calls over the
// real stack, refusals by cause, a peer that dies, and a flapping carrier.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "tap_calls.h"

namespace emulator {
namespace {

using coemu_test::wait_for;
using miniport::MacAddress;
using Ev = ClientEvent::Kind;
using std::chrono::seconds;

TEST_F(TapCalls, ThousandCallsSetUpUsedAndTornDown) {
  for (int i = 0; i < 1000; ++i) {
    VcId vc = *alpha_->create_vc(af_a_);
    auto done = call(vc, kSap42);
    ASSERT_TRUE(done.has_value()) << "call " << i;
    ASSERT_EQ(done->status, Status::kSuccess) << "call " << i;
    EXPECT_EQ(coemu_test::send_seq(alpha_->data(), vc, 0, 3), 3u);
    const size_t closed = caller_.count(Ev::kCloseCallComplete);
    ASSERT_EQ(alpha_->close_call(vc), Status::kPending);
    ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kCloseCallComplete) > closed; }, seconds(10))) << i;
    ASSERT_TRUE(wait_for([&] { return alpha_->delete_vc(vc) == Status::kSuccess; }, seconds(10))) << i;
  }
  EXPECT_TRUE(wait_for([&] { return alpha_->calls() == 0 && beta_->calls() == 0; }, seconds(10)));
  EXPECT_TRUE(wait_for([&] { return beta_->vcs_in_use() == 0; }, seconds(10)));
  EXPECT_EQ(alpha_->vcs_in_use(), 0u);
}

TEST_F(TapCalls, CallToAnUnregisteredSapIsRefusedWithCause88) {
  VcId vc = *alpha_->create_vc(af_a_);
  auto done = call(vc, SapSpec{1, {0, 7}});
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->status, Status::kNotAccepted);
  EXPECT_EQ(done->cause, cm::cause::kIncompatibleDestination);
}

TEST_F(TapCalls, CallToAnUnknownNodeIsRefusedAtOnce) {
  VcId vc = *alpha_->create_vc(af_a_);
  EXPECT_EQ(alpha_->make_call(vc, "gamma", kSap42), Status::kInvalidAddress);
}

TEST_F(TapCalls, DuplicateSapAcrossTwoClientsIsSapInUse) {
  Recorder other;
  other.node = beta_.get();
  AfOpenId af = *beta_->open_af(beta_->attach(&other));
  auto r = beta_->register_sap(af, kSap42);
  EXPECT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status::kSapInUse);
  beta_.reset();  // its threads call `other`: stop them before it goes
}

// The TAP loses its carrier (the NIC's cable is pulled): the clients hear the
// link go down, the call is cleared with cause 27; carrier back: beta is told
// to clear its side, and new calls succeed.
TEST_F(TapCalls, R84_R85_CarrierLossClearsCallsAndCarrierBackRestoresService) {
  VcId vc = *alpha_->create_vc(af_a_);
  auto up = call(vc, kSap42);
  ASSERT_TRUE(up && up->status == Status::kSuccess);
  ASSERT_TRUE(taps_[0]->set_carrier(false));
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kIncomingClose) == 1; }, seconds(10)));
  EXPECT_EQ(caller_.last(Ev::kIncomingClose)->cause, cm::cause::kDestinationOutOfOrder);
  ASSERT_TRUE(caller_.last(Ev::kLinkStatus).has_value());
  EXPECT_FALSE(caller_.last(Ev::kLinkStatus)->link_up);
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kCloseCallComplete) == 1; }, seconds(10)));
  EXPECT_EQ(listener_.count(Ev::kIncomingClose), 0u) << "beta cannot hear of it while the link is down";

  ASSERT_TRUE(taps_[0]->set_carrier(true));
  ASSERT_TRUE(wait_for([&] { return caller_.last(Ev::kLinkStatus)->link_up; }, seconds(10)));
  ASSERT_TRUE(wait_for([&] { return listener_.count(Ev::kIncomingClose) == 1; }, seconds(10)))
      << "RESTART from alpha cleared beta's side";
  EXPECT_TRUE(wait_for([&] { return beta_->calls() == 0; }, seconds(10)));
  ASSERT_TRUE(wait_for([&] { return alpha_->delete_vc(vc) == Status::kSuccess; }, seconds(10)));
  VcId again = *alpha_->create_vc(af_a_);
  auto second = call(again, kSap42);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->status, Status::kSuccess);
}

TEST_F(TapCalls, KillingThePeerClearsItsCallsWithinTheDeadInterval) {
  VcId vc = *alpha_->create_vc(af_a_);
  auto done = call(vc, kSap42);
  ASSERT_TRUE(done && done->status == Status::kSuccess);
  const auto t0 = std::chrono::steady_clock::now();
  beta_.reset();  // the peer node dies: no RELEASE, no more HELLOs
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kIncomingClose) > 0; }, seconds(10)));
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_LE(waited, std::chrono::milliseconds(3500 + 1500)) << "dead interval 3.5 s plus one check";
  EXPECT_EQ(caller_.last(Ev::kIncomingClose)->cause, cm::cause::kTemporaryFailure);
}

TEST_F(TapCalls, CarrierFlappingEvery200msForTenSecondsLeavesNothingAndCallsResume) {
  VcId vc = *alpha_->create_vc(af_a_);
  auto up = call(vc, kSap42);
  ASSERT_TRUE(up && up->status == Status::kSuccess);
  // The stimulus runs on a schedule; what the nodes do about it is waited for below.
  auto next = std::chrono::steady_clock::now();
  bool carrier = true;
  for (int i = 0; i < 50; ++i) {
    carrier = !carrier;
    ASSERT_TRUE(taps_[0]->set_carrier(carrier));
    next += std::chrono::milliseconds(200);
    std::this_thread::sleep_until(next);
  }
  ASSERT_TRUE(carrier) << "50 flips end with the carrier up";
  ASSERT_TRUE(wait_for([&] { return caller_.last(Ev::kLinkStatus) && caller_.last(Ev::kLinkStatus)->link_up; },
                       seconds(10)));
  ASSERT_TRUE(wait_for([&] { return caller_.count(Ev::kCloseCallComplete) >= 1; }, seconds(10)))
      << "the first flap cleared the call (cause 27) and the client closed it";
  EXPECT_EQ(caller_.find(Ev::kIncomingClose)->cause, cm::cause::kDestinationOutOfOrder);
  ASSERT_TRUE(wait_for([&] { return alpha_->delete_vc(vc) == Status::kSuccess; }, seconds(10)));
  EXPECT_TRUE(wait_for([&] { return alpha_->calls() == 0 && beta_->calls() == 0; }, seconds(10)))
      << "RESTART after the link came back cleared beta's side";

  ASSERT_TRUE(wait_for([&] { return alpha_->knows("beta"); }, seconds(10)));
  VcId again = *alpha_->create_vc(af_a_);
  auto resumed = call(again, kSap42);
  ASSERT_TRUE(resumed.has_value());
  EXPECT_EQ(resumed->status, Status::kSuccess);
  EXPECT_EQ(coemu_test::send_seq(alpha_->data(), again, 0, 3), 3u);
  EXPECT_TRUE(wait_for([&] { return listener_.received.load() >= 3; }, seconds(10)));
  ASSERT_EQ(alpha_->close_call(again), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return alpha_->delete_vc(again) == Status::kSuccess; }, seconds(10)));
  EXPECT_TRUE(wait_for([&] { return alpha_->calls() == 0 && beta_->calls() == 0; }, seconds(10)));
  EXPECT_EQ(alpha_->vcs_in_use(), 0u);
  EXPECT_TRUE(wait_for([&] { return beta_->vcs_in_use() == 0; }, seconds(10)));
  for (Node* n : {alpha_.get(), beta_.get()})
    EXPECT_TRUE(wait_for([&] { return n->data().buffers_in_use() == 0; }, seconds(10)))
        << n->config().address << ": " << n->data().buffers_in_use() << " buffers out";
}

}  // namespace
}  // namespace emulator
