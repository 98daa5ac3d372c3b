// Two nodes on TAPs bridged in a namespace of the test's own, alpha calling
// and beta (SAP 42, accepting everything) answering: the rig of the tests of
// calls over the real stack.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <vector>

#include "emulator/link_events.h"
#include "emulator/node.h"
#include "emulator/route_netlink.h"
#include "emulator/tap_device.h"
#include "bridged_taps.h"
#include "net_test_util.h"
#include "node_pair.h"
#include "recording_client.h"

namespace emulator {

using coemu_test::wait_for;
using miniport::MacAddress;
using std::chrono::seconds;

inline const SapSpec kSap42{1, {0, 42}};

using Recorder = coemu_test::RecordingClient;
using Ev = ClientEvent::Kind;

// alpha's TAP is coet0, beta's coet1, on bridge coebr0.
class TapCalls : public ::testing::Test {
 protected:
  void SetUp() override {
    COEMU_REQUIRE(coemu_test::enter_fresh_netns());
    taps_ = coemu_test::bridged_taps({{.name = "coet0"}, {.name = "coet1"}});
    ASSERT_EQ(taps_.size(), 2u) << last_error();
    // alpha watches its TAP's carrier (R85); beta takes its link as up.
    auto w = LinkEventWatcher::open();
    ASSERT_TRUE(w) << last_error();
    events_ = std::move(*w);
    auto a = Node::start(*taps_[0], {.address = "alpha",
                                     .mac = MacAddress::local(0xa),
                                     .data = {.link_events = events_.get(), .ifname = "coet0"}});
    auto b = Node::start(*taps_[1], {.address = "beta", .mac = MacAddress::local(0xb)});
    ASSERT_TRUE(a && b) << last_error();
    alpha_ = std::move(*a);
    beta_ = std::move(*b);
    caller_.node = alpha_.get();
    listener_.node = beta_.get();
    listener_.accept = true;
    ca_ = alpha_->attach(&caller_);
    cb_ = beta_->attach(&listener_);
    af_a_ = *alpha_->open_af(ca_);
    af_b_ = *beta_->open_af(cb_);
    ASSERT_TRUE(beta_->register_sap(af_b_, kSap42));
    // Calls need the callee's HELLO first.
    ASSERT_TRUE(wait_for([&] { return alpha_->knows("beta") && beta_->knows("alpha"); }, seconds(10)));
  }
  // One call alpha -> beta:sap; returns alpha's VC once it is up (or failed).
  std::optional<ClientEvent> call(VcId vc, const SapSpec& sap) {
    const size_t before = caller_.count(Ev::kMakeCallComplete);
    EXPECT_EQ(alpha_->make_call(vc, "beta", sap), Status::kPending);
    if (!wait_for([&] { return caller_.count(Ev::kMakeCallComplete) > before; }, seconds(10))) return std::nullopt;
    return caller_.last(Ev::kMakeCallComplete);
  }
  void TearDown() override {
    alpha_.reset();
    beta_.reset();
    events_.reset();
  }

  std::vector<std::unique_ptr<TapDevice>> taps_;
  std::unique_ptr<LinkEventWatcher> events_;
  std::unique_ptr<Node> alpha_, beta_;
  Recorder caller_, listener_;
  ClientId ca_ = 0, cb_ = 0;
  AfOpenId af_a_, af_b_;
};

}  // namespace emulator
