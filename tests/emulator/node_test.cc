// Two nodes on the memory wire: real control threads, call managers and data
// paths. A client on beta listens; a client on alpha calls, sends data on
// the call, and closes it.
#include "emulator/node.h"

#include <gtest/gtest.h>

#include "emulator/mem_link.h"
#include "node_pair.h"

namespace emulator {
namespace {

using coemu_test::wait_for;
using miniport::MacAddress;
using Ev = ClientEvent::Kind;

const SapSpec kSap42{1, {0, 42}};

// Records events; as a listener it accepts every call and answers every
// incoming close with its own close, from inside on_event (inline requests).
class Client : public NodeClient {
 public:
  Node* node = nullptr;
  bool listener = false;
  std::mutex mu;
  std::vector<ClientEvent> events;
  std::atomic<uint64_t> received{0}, bad{0}, completed{0};
  std::atomic<uint32_t> next{0};

  void on_event(const ClientEvent& e) override {
    if (listener && e.kind == Ev::kIncomingCall) {
      EXPECT_EQ(node->incoming_call_complete(e.vc, Status::kSuccess), Status::kSuccess);
    }
    if (e.kind == Ev::kIncomingClose) {
      EXPECT_EQ(node->close_call(e.vc), Status::kPending);
    }
    std::lock_guard lock(mu);
    events.push_back(e);
  }
  void on_receive(std::span<RxPacket> pkts) override {
    for (auto& p : pkts) {
      if (coemu_test::payload_ok(p.payload(), next.load())) next.fetch_add(1);
      else bad.fetch_add(1);
    }
    received.fetch_add(pkts.size());
  }
  void on_send_complete(std::span<const TxCompletion> done) override { completed.fetch_add(done.size()); }

  std::optional<ClientEvent> find(Ev k) {
    std::lock_guard lock(mu);
    for (auto& e : events)
      if (e.kind == k) return e;
    return std::nullopt;
  }
};

TEST(Node, CallAcrossTheMemoryWireCarriesDataAndClosesCleanly) {
  auto pair = MemLink::make_pair({});
  ASSERT_TRUE(pair.has_value());
  auto alpha = Node::start(*pair->first, {.address = "alpha", .mac = MacAddress::local(0xa)});
  auto beta = Node::start(*pair->second, {.address = "beta", .mac = MacAddress::local(0xb)});
  ASSERT_TRUE(alpha && beta) << last_error();
  Client caller, listener;
  caller.node = alpha->get();
  listener.node = beta->get();
  listener.listener = true;
  const ClientId ca = (*alpha)->attach(&caller);
  const ClientId cb = (*beta)->attach(&listener);
  AfOpenId af_b = *(*beta)->open_af(cb);
  ASSERT_TRUE((*beta)->register_sap(af_b, kSap42));
  AfOpenId af_a = *(*alpha)->open_af(ca);
  VcId vc = *(*alpha)->create_vc(af_a);

  // The nodes learn of each other from HELLOs; until then "beta" is unknown.
  ASSERT_TRUE(wait_for([&] { return (*alpha)->knows("beta"); }, std::chrono::seconds(10)));
  ASSERT_EQ((*alpha)->make_call(vc, "beta", kSap42), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return caller.find(Ev::kMakeCallComplete).has_value(); }, std::chrono::seconds(10)));
  ASSERT_EQ(caller.find(Ev::kMakeCallComplete)->status, Status::kSuccess);
  ASSERT_TRUE(wait_for([&] { return listener.find(Ev::kCallConnected).has_value(); }, std::chrono::seconds(10)));

  constexpr uint64_t kPackets = 2000;
  EXPECT_EQ(coemu_test::send_seq((*alpha)->data(), vc, 0, kPackets), kPackets);
  ASSERT_TRUE(wait_for([&] { return listener.received.load() >= kPackets; }, std::chrono::seconds(20)));
  EXPECT_EQ(listener.bad.load(), 0u);
  EXPECT_EQ(listener.next.load(), kPackets);
  ASSERT_TRUE(wait_for([&] { return caller.completed.load() >= kPackets; }, std::chrono::seconds(10)));

  ASSERT_EQ((*alpha)->close_call(vc), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return caller.find(Ev::kCloseCallComplete).has_value(); }, std::chrono::seconds(10)));
  ASSERT_TRUE(wait_for([&] { return listener.find(Ev::kCloseCallComplete).has_value(); }, std::chrono::seconds(10)));
  EXPECT_TRUE(wait_for([&] { return (*alpha)->calls() == 0 && (*beta)->calls() == 0; }, std::chrono::seconds(10)));
  EXPECT_TRUE(wait_for([&] { return (*alpha)->delete_vc(vc) == Status::kSuccess; }, std::chrono::seconds(10)));
  EXPECT_TRUE(wait_for([&] { return (*beta)->vcs_in_use() == 0; }, std::chrono::seconds(10)))
      << "beta's VC for the incoming call is gone";
}

TEST(Node, BadNodeAddressIsRefused) {
  auto pair = MemLink::make_pair({});
  EXPECT_EQ(Node::start(*pair->first, {.address = "no spaces", .mac = MacAddress::local(1)}).error(),
            Status::kInvalidData);
  EXPECT_NE(last_error().find("no spaces"), std::string::npos);
}

}  // namespace
}  // namespace emulator
