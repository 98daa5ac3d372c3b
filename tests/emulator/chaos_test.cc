// Chaos: three nodes on TAPs bridged in a namespace of the test's own, each
// sending through 20% loss, 25% reorder, 5% duplicates and 20 ms +- 10 ms of
// delay, while every node keeps calls to the other two being set up, used
// and torn down, and one point-to-multipoint call whose second party comes
// and goes. Checked: every call and party completes or fails with a cause;
// the calls left up agree at both ends and survive STATUS_ENQUIRY; and at
// the end no call, party, VC, timer or pool buffer is left on any node.
// COEMU_CHAOS_SECONDS sets the churn (default 50 s; the whole test takes
// about a minute).
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>

#include "bridged_taps.h"
#include "emulator/node.h"
#include "net_test_util.h"
#include "node_pair.h"

namespace emulator {
namespace {

using coemu_test::wait_for;
using miniport::MacAddress;
using Ev = ClientEvent::Kind;
using std::chrono::seconds;

const SapSpec kSap42{1, {0, 42}};
const char* const kNames[3] = {"alpha", "beta", "gamma"};
constexpr int kInFlight = 4;

// One node's client: answers every call, and keeps kInFlight calls of its
// own going to the other two nodes: up, two packets, close, delete, again.
// Beside them it runs one point-to-multipoint cycle after another: a call
// to the next node, a party added at the one after, two packets to both,
// that party dropped, the call closed. In `hold` mode it starts no more
// calls and keeps the point-to-point ones that come up.
class ChaosClient : public NodeClient {
 public:
  Node* node = nullptr;
  AfOpenId af;
  int self = 0;
  std::atomic<bool> hold{false};
  std::mutex mu;  // guards what follows; never held while calling the node
  std::mt19937 rng{1};
  std::vector<VcId> open;  // our calls placed and not finished (failed, or closed)
  std::vector<VcId> held;  // ... of them, up and kept up (hold mode)
  std::vector<VcId> to_delete;
  uint64_t started = 0, up = 0, failed = 0, failed_without_cause = 0, closed_by_peer = 0;
  std::map<uint8_t, uint64_t> causes;
  // The point-to-multipoint cycle: busy from placing its call until that
  // call's close completes (or it failed at once).
  bool mp_busy = false;
  std::optional<VcId> mp_vc;
  uint64_t mp_started = 0, mp_up = 0, mp_failed = 0, mp_closed = 0;
  uint64_t parties_started = 0, parties_up = 0, parties_failed = 0, parties_dropped = 0;

  // Every call placed has an outcome: failed, closed, or up and held.
  bool settled() {
    std::lock_guard lock(mu);
    return open.size() == held.size() && !mp_busy;
  }
  void failure(uint8_t cause) {  // under mu
    ++causes[cause];
    if (cause == 0) ++failed_without_cause;
  }
  // The peer or the network ended a call or a party: that names a cause too.
  void ended_by_peer(uint8_t cause) {
    std::lock_guard lock(mu);
    ++closed_by_peer;
    if (cause == 0) ++failed_without_cause;
  }

  void place_mp() {
    {
      std::lock_guard lock(mu);
      if (hold.load() || mp_busy) return;
      mp_busy = true;
      ++mp_started;
    }
    auto vc = node->create_vc(af);
    if (vc) {
      {
        std::lock_guard lock(mu);  // before any event of the call can come
        mp_vc = *vc;
      }
      if (node->make_multipoint_call(*vc, kNames[(self + 1) % 3], kSap42)) return;
    }
    std::lock_guard lock(mu);
    mp_vc.reset();
    ++mp_failed;
    ++causes[0];  // refused at once: a status
    mp_busy = false;
    if (vc) to_delete.push_back(*vc);
  }

  // The events of our own point-to-multipoint call; false for any other.
  bool on_mp_event(const ClientEvent& e) {
    {
      std::lock_guard lock(mu);
      if (!mp_vc || !(*mp_vc == e.vc)) return false;
    }
    switch (e.kind) {
      case Ev::kMakeCallComplete: {
        if (e.status != Status::kSuccess) {
          std::lock_guard lock(mu);
          ++mp_failed;
          failure(e.cause);
          to_delete.push_back(e.vc);
          mp_vc.reset();
          mp_busy = false;
          return true;
        }
        {
          std::lock_guard lock(mu);
          ++mp_up;
          ++parties_started;
        }
        if (!node->add_party(e.vc, kNames[(self + 2) % 3], kSap42)) {
          {
            std::lock_guard lock(mu);
            ++parties_failed;
            ++causes[0];
          }
          (void)node->close_call(e.vc);
        }
        return true;
      }
      case Ev::kAddPartyComplete:
        if (e.status != Status::kSuccess) {
          {
            std::lock_guard lock(mu);
            ++parties_failed;
            failure(e.cause);
          }
          (void)node->close_call(e.vc);
          return true;
        }
        {
          std::lock_guard lock(mu);
          ++parties_up;
        }
        (void)coemu_test::send_seq(node->data(), e.vc, 0, 2, seconds(5));
        if (node->drop_party(e.party) != Status::kPending) (void)node->close_call(e.vc);
        return true;
      case Ev::kIncomingDropParty:  // a leaf left (R60): answer with our drop
        ended_by_peer(e.cause);
        if (node->drop_party(e.party) != Status::kPending) (void)node->close_call(e.vc);
        return true;
      case Ev::kDropPartyComplete:
        {
          std::lock_guard lock(mu);
          ++parties_dropped;
        }
        (void)node->close_call(e.vc);  // the cycle ends with the call
        return true;
      case Ev::kIncomingClose:
        ended_by_peer(e.cause);
        (void)node->close_call(e.vc);
        return true;
      case Ev::kCloseCallComplete: {
        std::lock_guard lock(mu);
        ++mp_closed;
        to_delete.push_back(e.vc);
        mp_vc.reset();
        mp_busy = false;
        return true;
      }
      default:
        return true;
    }
  }
  void place() {
    int peer;
    {
      std::lock_guard lock(mu);
      if (hold.load() || open.size() - held.size() >= kInFlight) return;
      ++started;
      peer = (self + 1 + static_cast<int>(rng() % 2)) % 3;
    }
    auto vc = node->create_vc(af);
    const Status s = vc ? node->make_call(*vc, kNames[peer], kSap42) : vc.error();
    std::lock_guard lock(mu);
    if (s == Status::kPending) {
      open.push_back(*vc);
      return;
    }
    // Refused at once (the peer is down for now): a status, not a hang.
    ++failed;
    ++causes[0];
    if (vc) to_delete.push_back(*vc);
  }

  void on_event(const ClientEvent& e) override {
    if (on_mp_event(e)) {
      delete_finished();
      place_mp();
      return;
    }
    switch (e.kind) {
      case Ev::kIncomingCall:
        (void)node->incoming_call_complete(e.vc, Status::kSuccess);
        return;
      case Ev::kMakeCallComplete:
        if (e.status != Status::kSuccess) {
          std::lock_guard lock(mu);
          ++failed;
          failure(e.cause);
          std::erase(open, e.vc);
          to_delete.push_back(e.vc);
          break;
        }
        {
          std::lock_guard lock(mu);
          ++up;
        }
        (void)coemu_test::send_seq(node->data(), e.vc, 0, 2, seconds(5));
        if (hold.load()) {
          std::lock_guard lock(mu);
          held.push_back(e.vc);
          return;
        }
        (void)node->close_call(e.vc);
        return;
      case Ev::kIncomingClose: {
        // The network or the peer ended it: answer with our close.
        (void)node->close_call(e.vc);
        ended_by_peer(e.cause);
        return;
      }
      case Ev::kCloseCallComplete: {
        std::lock_guard lock(mu);
        std::erase(held, e.vc);
        // Our own VCs are ours to delete; an incoming call's is the CM's.
        if (std::erase(open, e.vc) != 0) to_delete.push_back(e.vc);
        break;
      }
      default:
        return;
    }
    delete_finished();
    place();
    place_mp();
  }
  // Deletes the VCs of finished calls; one still draining waits for the next try.
  bool delete_finished() {
    std::vector<VcId> del;
    {
      std::lock_guard lock(mu);
      del.swap(to_delete);
    }
    std::vector<VcId> keep;
    for (VcId vc : del)
      if (node->delete_vc(vc) != Status::kSuccess) keep.push_back(vc);
    std::lock_guard lock(mu);
    to_delete.insert(to_delete.end(), keep.begin(), keep.end());
    return to_delete.empty();
  }
  void on_receive(std::span<RxPacket>) override {}
};

class Chaos : public ::testing::Test {
 protected:
  void SetUp() override {
    COEMU_REQUIRE(coemu_test::enter_fresh_netns());
    taps_ = coemu_test::bridged_taps({{.name = "coet0"}, {.name = "coet1"}, {.name = "coet2"}});
    ASSERT_EQ(taps_.size(), 3u) << last_error();
    for (int i = 0; i < 3; ++i) {
      auto cfg = ImpairmentConfig::parse("loss=20%,reorder=25%,duplicate=5%,delay=20ms,jitter=10ms,seed=" +
                                         std::to_string(11 + i));
      ASSERT_TRUE(cfg) << last_error();
      ASSERT_TRUE(taps_[i]->set_impairment(*cfg));
      auto n = Node::start(*taps_[i], {.address = kNames[i], .mac = MacAddress::local(0xa + i)});
      ASSERT_TRUE(n) << last_error();
      nodes_[i] = std::move(*n);
      clients_[i].node = nodes_[i].get();
      clients_[i].self = i;
      clients_[i].rng.seed(100 + i);
      clients_[i].af = *nodes_[i]->open_af(nodes_[i]->attach(&clients_[i]));
      ASSERT_TRUE(nodes_[i]->register_sap(clients_[i].af, kSap42));
    }
    ASSERT_TRUE(wait_for([&] {
      for (auto& n : nodes_)
        for (const char* name : kNames)
          if (name != n->config().address && !n->knows(name)) return false;
      return true;
    }, seconds(20)));
  }
  void TearDown() override {
    for (auto& n : nodes_) n.reset();
  }

  std::vector<std::unique_ptr<TapDevice>> taps_;
  ChaosClient clients_[3];  // outlive the nodes
  std::unique_ptr<Node> nodes_[3];
};

// Every call at `a` with `b` has its other end at `b`, and the reverse.
std::string disagreements(Node& a, Node& b) {
  auto key = [](const cm::CallView& c, bool flip) { return std::make_pair(c.call_ref, c.originated != flip); };
  std::set<std::pair<uint32_t, bool>> at_a, at_b;
  for (const auto& c : a.snapshot().calls)
    if (c.peer == b.config().mac) at_a.insert(key(c, false));
  for (const auto& c : b.snapshot().calls)
    if (c.peer == a.config().mac) at_b.insert(key(c, true));
  std::string why;
  for (auto& k : at_a)
    if (!at_b.count(k)) why += " " + a.config().address + " has ref " + std::to_string(k.first) + " alone;";
  for (auto& k : at_b)
    if (!at_a.count(k)) why += " " + b.config().address + " has ref " + std::to_string(k.first) + " alone;";
  return why;
}

TEST_F(Chaos, CallsChurnOverABadWireAndNothingIsLeftBehind) {
  const char* env = std::getenv("COEMU_CHAOS_SECONDS");
  const int churn = env ? std::max(1, std::atoi(env)) : 50;
  for (auto& c : clients_) {
    for (int i = 0; i < kInFlight; ++i) c.place();
    c.place_mp();
  }
  std::this_thread::sleep_for(seconds(churn));  // the churn runs on the nodes' threads meanwhile

  // Hold: no new calls; those that come up stay up. Wait until every call
  // placed has an outcome.
  for (auto& c : clients_) c.hold.store(true);
  ASSERT_TRUE(wait_for([&] {
    for (auto& c : clients_)
      if (!c.settled()) return false;
    return true;
  }, seconds(60))) << "a call neither came up nor failed";
  // Closes under way finish; what is left is the held calls, at both ends.
  ASSERT_TRUE(wait_for([&] {
    for (int i = 0; i < 3; ++i)
      for (int j = i + 1; j < 3; ++j)
        if (!disagreements(*nodes_[i], *nodes_[j]).empty()) return false;
    return true;
  }, seconds(60))) << disagreements(*nodes_[0], *nodes_[1]) << disagreements(*nodes_[0], *nodes_[2])
                   << disagreements(*nodes_[1], *nodes_[2]);
  // Each caller asks the callee about every call it holds: all are confirmed
  // (a call the callee did not know would be cleared, at both ends).
  size_t held = 0;
  uint64_t closes_before[3];
  size_t held_before[3];
  for (auto& c : clients_) {
    std::vector<VcId> vcs;
    {
      std::lock_guard lock(c.mu);
      vcs = c.held;
      closes_before[c.self] = c.closed_by_peer;
      held_before[c.self] = c.held.size();
    }
    held += vcs.size();
    for (VcId vc : vcs) EXPECT_EQ(c.node->enquire_call(vc), Status::kSuccess);
  }
  auto enquiring = [&] {
    for (auto& n : nodes_)
      for (const auto& call : n->snapshot().calls)
        for (const auto& t : call.timers)
          if (std::string_view(t.name) == "T322") return true;
    return false;
  };
  EXPECT_TRUE(wait_for([&] { return !enquiring(); }, seconds(30)));
  for (int i = 0; i < 3; ++i)
    for (int j = i + 1; j < 3; ++j) EXPECT_EQ(disagreements(*nodes_[i], *nodes_[j]), "");
  for (auto& c : clients_) {
    std::lock_guard lock(c.mu);
    EXPECT_EQ(c.held.size(), held_before[c.self]) << kNames[c.self] << ": an enquiry ended a held call";
    EXPECT_EQ(c.closed_by_peer, closes_before[c.self]) << kNames[c.self] << ": a call was cleared meanwhile";
  }

  // Close every held call; then nothing may be left anywhere.
  for (auto& c : clients_) {
    std::vector<VcId> vcs;
    {
      std::lock_guard lock(c.mu);
      vcs.swap(c.held);
    }
    for (VcId vc : vcs) (void)c.node->close_call(vc);
  }
  for (auto& n : nodes_) {
    EXPECT_TRUE(wait_for([&] { return n->calls() == 0; }, seconds(60)))
        << n->config().address << ": " << n->calls() << " calls left";
  }
  for (auto& c : clients_) {
    // The last CloseCallComplete's VC may still be draining: delete from here.
    EXPECT_TRUE(wait_for([&] { return c.delete_finished() && c.node->vcs_in_use() == 0; }, seconds(30)))
        << c.node->config().address << ": " << c.node->vcs_in_use() << " VCs left";
  }
  for (auto& n : nodes_) {
    EXPECT_TRUE(n->snapshot().calls.empty()) << "no call, so no timer";
    auto& dp = n->data();
    EXPECT_TRUE(wait_for([&] { return dp.buffers_in_use() == 0; }, seconds(10)))
        << n->config().address << ": " << dp.buffers_in_use() << " buffers out";
  }

  uint64_t started = 0, up = 0, failed = 0, mp_up = 0, parties_up = 0;
  for (auto& c : clients_) {
    std::lock_guard lock(c.mu);
    EXPECT_EQ(c.failed_without_cause, 0u) << kNames[c.self] << ": a call ended without a cause";
    EXPECT_EQ(c.mp_started, c.mp_up + c.mp_failed) << kNames[c.self] << ": every multipoint call came up or failed";
    EXPECT_EQ(c.mp_closed, c.mp_up) << kNames[c.self] << ": every multipoint call that came up was closed";
    EXPECT_EQ(c.parties_started, c.parties_up + c.parties_failed)
        << kNames[c.self] << ": every party added joined or failed";
    mp_up += c.mp_up;
    parties_up += c.parties_up;
    std::printf("chaos %s multipoint: %llu placed, %llu up, %llu failed; %llu parties added, %llu joined, "
                "%llu failed, %llu dropped\n",
                kNames[c.self], static_cast<unsigned long long>(c.mp_started),
                static_cast<unsigned long long>(c.mp_up), static_cast<unsigned long long>(c.mp_failed),
                static_cast<unsigned long long>(c.parties_started), static_cast<unsigned long long>(c.parties_up),
                static_cast<unsigned long long>(c.parties_failed), static_cast<unsigned long long>(c.parties_dropped));
    started += c.started;
    up += c.up;
    failed += c.failed;
    std::string causes;
    for (auto [cause, n] : c.causes) causes += " " + std::to_string(cause) + "x" + std::to_string(n);
    std::printf("chaos %s: %llu placed, %llu up, %llu failed (causes:%s), %llu closed by the peer or the network\n",
                kNames[c.self], static_cast<unsigned long long>(c.started), static_cast<unsigned long long>(c.up),
                static_cast<unsigned long long>(c.failed), causes.c_str(), static_cast<unsigned long long>(c.closed_by_peer));
  }
  std::printf("chaos: %d s of churn, %llu calls placed, %llu up, %llu failed, %zu held and confirmed\n", churn,
              static_cast<unsigned long long>(started), static_cast<unsigned long long>(up),
              static_cast<unsigned long long>(failed), held);
  EXPECT_EQ(started, up + failed) << "every call came up or failed";
  EXPECT_GT(up, 100u) << "the wire is bad, not dead";
  EXPECT_GT(mp_up, 10u);
  EXPECT_GT(parties_up, 10u);
  EXPECT_GT(nodes_[0]->sig_counters().transport.retransmits, 0u);
}

}  // namespace
}  // namespace emulator
