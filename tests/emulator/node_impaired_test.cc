// Many calls between two nodes on a memory wire that loses, reorders and
// duplicates frames (seeded): every call completes, and afterwards calls,
// VCs, SAPs and pool buffers are all back where they started.
#include <gtest/gtest.h>

#include <mutex>

#include "emulator/mem_link.h"
#include "emulator/node.h"
#include "node_pair.h"

namespace emulator {
namespace {

using coemu_test::wait_for;
using miniport::MacAddress;
using Ev = ClientEvent::Kind;
using std::chrono::seconds;

const SapSpec kSap42{1, {0, 42}};

// Issue 4's 10,000 calls take ~45 s here: at 10% loss the time goes to
// repairing lost MSGs (the receiver delivers in order, so a loss stalls every
// call behind it until the resend arrives). Sanitizer builds do 2,000.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kCalls = 2000;
#else
constexpr int kCalls = 10000;
#endif
constexpr int kInFlight = 128;

// Accepts every call and closes every call the peer closes.
class Listener : public NodeClient {
 public:
  Node* node = nullptr;
  void on_event(const ClientEvent& e) override {
    if (e.kind == Ev::kIncomingCall) (void)node->incoming_call_complete(e.vc, Status::kSuccess);
    if (e.kind == Ev::kIncomingClose) (void)node->close_call(e.vc);
  }
};

// Places calls, sends one packet on each, closes it, deletes the VC, and
// keeps kInFlight calls going until kCalls are done; all from on_event.
class Caller : public NodeClient {
 public:
  Node* node = nullptr;
  AfOpenId af;
  std::mutex mu;  // guards to_delete; never held while calling into the node from another thread
  std::atomic<int> started{0};
  std::atomic<int> finished{0}, failed{0};
  std::vector<VcId> to_delete;

  void place() {
    if (started.fetch_add(1) >= kCalls) return;
    auto vc = node->create_vc(af);
    if (!vc || node->make_call(*vc, "beta", kSap42) != Status::kPending) {
      failed.fetch_add(1);
      finished.fetch_add(1);
    }
  }
  void on_event(const ClientEvent& e) override {
    std::lock_guard lock(mu);
    switch (e.kind) {
      case Ev::kMakeCallComplete:
        if (e.status != Status::kSuccess) {
          failed.fetch_add(1);
          to_delete.push_back(e.vc);
          finished.fetch_add(1);
          place();
          break;
        }
        (void)coemu_test::send_seq(node->data(), e.vc, 0, 1, seconds(5));
        (void)node->close_call(e.vc);
        break;
      case Ev::kIncomingClose:
        (void)node->close_call(e.vc);
        break;
      case Ev::kCloseCallComplete:
        to_delete.push_back(e.vc);
        finished.fetch_add(1);
        place();
        break;
      default:
        break;
    }
    // VCs go once their deactivation has drained.
    std::erase_if(to_delete, [&](VcId vc) { return node->delete_vc(vc) == Status::kSuccess; });
  }
};

TEST(NodeImpaired, ManyCallsOverALossyReorderingDuplicatingWire) {
  auto pair = MemLink::make_pair({});
  ASSERT_TRUE(pair.has_value());
  for (auto* l : {pair->first.get(), pair->second.get()})
    ASSERT_TRUE(l->set_impairment(*ImpairmentConfig::parse("loss=10%,delay=1ms,jitter=500us,reorder=10%,duplicate=5%,seed=3")));
  Listener listener;  // the clients outlive the nodes, whose threads call them
  Caller caller;
  auto alpha = Node::start(*pair->first, {.address = "alpha", .mac = MacAddress::local(0xa)});
  auto beta = Node::start(*pair->second, {.address = "beta", .mac = MacAddress::local(0xb)});
  ASSERT_TRUE(alpha && beta) << last_error();
  listener.node = beta->get();
  AfOpenId af_b = *(*beta)->open_af((*beta)->attach(&listener));
  SapId sap = *(*beta)->register_sap(af_b, kSap42);
  caller.node = alpha->get();
  caller.af = *(*alpha)->open_af((*alpha)->attach(&caller));
  ASSERT_TRUE(wait_for([&] { return (*alpha)->knows("beta"); }, seconds(10)));
  // From the test thread, without the client's lock: the control thread
  // takes that lock inside on_event while this thread waits for it.
  for (int i = 0; i < kInFlight; ++i) caller.place();
  ASSERT_TRUE(wait_for([&] { return caller.finished.load() >= kCalls; }, seconds(600)))
      << caller.finished.load() << " of " << kCalls;
  EXPECT_EQ(caller.failed.load(), 0);
  // Never call into the node while holding the client's lock: the control
  // thread may be waiting for that lock inside on_event.
  std::vector<VcId> left;
  {
    std::lock_guard lock(caller.mu);
    left.swap(caller.to_delete);
  }
  ASSERT_TRUE(wait_for([&] {
    std::erase_if(left, [&](VcId vc) { return (*alpha)->delete_vc(vc) == Status::kSuccess; });
    return left.empty();
  }, seconds(10)));
  EXPECT_TRUE(wait_for([&] { return (*alpha)->calls() == 0 && (*beta)->calls() == 0; }, seconds(10)));
  EXPECT_EQ((*alpha)->vcs_in_use(), 0u);
  EXPECT_TRUE(wait_for([&] { return (*beta)->vcs_in_use() == 0; }, seconds(10)));
  EXPECT_EQ((*beta)->deregister_sap(sap), Status::kPending);
  // Every buffer is back (a HELLO or ACK on its way out holds one briefly).
  for (Node* n : {alpha->get(), beta->get()}) {
    auto& dp = n->data();
    EXPECT_TRUE(wait_for([&] { return dp.buffers_in_use() == 0; }, seconds(10)))
        << n->config().address << ": " << dp.buffers_in_use() << " of " << dp.pool().buffers() << " buffers still out";
  }
  EXPECT_GT(pair->first->impairment_counters().dropped_loss, 0u) << "the wire really lost frames";
  for (Node* n : {alpha->get(), beta->get()}) {
    const auto c = n->sig_counters().transport;
    EXPECT_GT(c.retransmits, 0u);
    EXPECT_GT(c.fast_retransmits, 0u) << "losses repaired before the RTO";
    EXPECT_GT(c.duplicates, 0u) << "the wire duplicated MSGs and they were dropped";
  }
}

}  // namespace
}  // namespace emulator
