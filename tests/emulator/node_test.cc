// Two nodes on the memory wire: real control threads, call managers and data
// paths. A client on beta listens; a client on alpha calls, sends data on
// the call, and closes it.
#include "emulator/node.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <thread>

#include "emulator/mem_link.h"
#include "node_pair.h"
#include "recording_client.h"

namespace emulator {
namespace {

using coemu_test::wait_for;
using miniport::MacAddress;
using Ev = ClientEvent::Kind;

const SapSpec kSap42{1, {0, 42}};

using Client = coemu_test::RecordingClient;

TEST(Node, CallAcrossTheMemoryWireCarriesDataAndClosesCleanly) {
  auto pair = MemLink::make_pair({});
  ASSERT_TRUE(pair.has_value());
  Client caller, listener;  // outlive the nodes, whose threads call them
  auto alpha = Node::start(*pair->first, {.address = "alpha", .mac = MacAddress::local(0xa)});
  auto beta = Node::start(*pair->second, {.address = "beta", .mac = MacAddress::local(0xb)});
  ASSERT_TRUE(alpha && beta) << last_error();
  caller.node = alpha->get();
  listener.node = beta->get();
  listener.accept = true;
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

// A pair of nodes on the memory wire that know each other, with a caller
// client on alpha and a listener on beta.
struct Pair {
  explicit Pair(NodeConfig beta_cfg = {}) {
    link = *MemLink::make_pair({});
    alpha = std::move(*Node::start(*link.first, {.address = "alpha", .mac = MacAddress::local(0xa)}));
    beta_cfg.address = "beta";
    beta_cfg.mac = MacAddress::local(0xb);
    beta = std::move(*Node::start(*link.second, beta_cfg));
    caller.node = alpha.get();
    listener.node = beta.get();
    listener.accept = true;
    ca = alpha->attach(&caller);
    cb = beta->attach(&listener);
    EXPECT_TRUE(wait_for([&] { return alpha->knows("beta"); }, std::chrono::seconds(10)));
  }
  // Clients first: members go in reverse, so the nodes (whose threads call
  // the clients) stop before the clients are destroyed.
  Client caller, listener;
  std::pair<std::unique_ptr<Link>, std::unique_ptr<Link>> link;
  std::unique_ptr<Node> alpha, beta;
  ClientId ca = 0, cb = 0;
};

std::vector<Ev> kinds(Client& c) {
  std::lock_guard lock(c.mu);
  std::vector<Ev> k;
  for (const auto& e : c.events) k.push_back(e.kind);
  return k;
}

TEST(Node, R10_EveryClientHearsOfTheAddressFamilyAlsoOnesAttachingLater) {
  Client late;  // outlives the nodes
  Pair p;
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kAfRegistered).has_value(); }, std::chrono::seconds(5)));
  EXPECT_EQ(p.listener.find(Ev::kAfRegistered)->address_family, cm::kCoemuAf);
  late.node = p.beta.get();
  const ClientId id = p.beta->attach(&late);
  ASSERT_TRUE(wait_for([&] { return late.find(Ev::kAfRegistered).has_value(); }, std::chrono::seconds(5)));
  EXPECT_EQ(late.find(Ev::kAfRegistered)->client, id);
  EXPECT_EQ(late.find(Ev::kAfRegistered)->address_family, cm::kCoemuAf);
}

TEST(Node, R11_R12_PendedOpenCompletesThroughTheNode) {
  Pair p({.open_af_pends = std::chrono::milliseconds(20)});
  auto af = p.beta->open_af(p.cb);
  ASSERT_TRUE(af);
  EXPECT_TRUE(af->pending);
  EXPECT_EQ(p.beta->create_vc(*af).error(), Status::kFailure) << "R12: nothing before the completion";
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kOpenAfComplete).has_value(); }, std::chrono::seconds(5)));
  EXPECT_EQ(p.listener.find(Ev::kOpenAfComplete)->af, AfOpenId(*af));
  EXPECT_EQ(p.listener.find(Ev::kOpenAfComplete)->status, Status::kSuccess);
  EXPECT_TRUE(p.beta->create_vc(*af));
}

TEST(Node, R23_ACallArrivesOnASapWhoseRegistrationStillPends) {
  // The registration completes only in an hour: the call is dispatched,
  // accepted and connected long before.
  Pair p({.register_sap_pends = std::chrono::hours(1)});
  AfOpenId af_b = *p.beta->open_af(p.cb);
  auto sap = p.beta->register_sap(af_b, kSap42);
  ASSERT_TRUE(sap);
  EXPECT_TRUE(sap->pending);
  VcId vc = *p.alpha->create_vc(*p.alpha->open_af(p.ca));
  ASSERT_EQ(p.alpha->make_call(vc, "beta", kSap42), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kCallConnected).has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(p.listener.find(Ev::kIncomingCall)->sap, SapId(*sap));
  EXPECT_EQ(p.caller.find(Ev::kMakeCallComplete)->status, Status::kSuccess);
  EXPECT_FALSE(p.listener.find(Ev::kRegisterSapComplete).has_value());
  EXPECT_EQ(p.beta->deregister_sap(*sap), Status::kFailure) << "R22: not the client's handle yet";
}

// On kNotifyCloseAf it tears everything down from inside the callback:
// closes its calls, deregisters its SAP, closes the AF (which pends until
// the calls are gone: R17).
class Closer : public Client {
 public:
  AfOpenId af;
  SapId sap;
  std::vector<VcId> vcs;
  void on_event(const ClientEvent& e) override {
    if (e.kind == Ev::kIncomingCall) vcs.push_back(e.vc);
    if (e.kind == Ev::kNotifyCloseAf) {
      for (VcId vc : vcs) EXPECT_EQ(node->close_call(vc), Status::kPending);
      EXPECT_EQ(node->deregister_sap(sap), Status::kPending);
      EXPECT_EQ(node->close_af(e.af), Status::kPending);
      std::lock_guard lock(mu);
      events.clear();  // the sequence from here is the one under test
    }
    Client::on_event(e);
  }
};

TEST(Node, R16_R17_R19_NodeShutdownClosesTheAfThroughItsClientsWithoutDeadlock) {
  Client caller;  // declared before the nodes, so they outlive the nodes' threads
  Closer closer;
  auto link = *MemLink::make_pair({});
  auto alpha = std::move(*Node::start(*link.first, {.address = "alpha", .mac = MacAddress::local(0xa)}));
  auto beta = std::move(*Node::start(*link.second, {.address = "beta", .mac = MacAddress::local(0xb)}));
  caller.node = alpha.get();
  closer.node = beta.get();
  closer.accept = true;
  const ClientId ca = alpha->attach(&caller);
  closer.af = *beta->open_af(beta->attach(&closer));
  closer.sap = *beta->register_sap(closer.af, kSap42);
  ASSERT_TRUE(wait_for([&] { return alpha->knows("beta"); }, std::chrono::seconds(10)));
  VcId vc = *alpha->create_vc(*alpha->open_af(ca));
  ASSERT_EQ(alpha->make_call(vc, "beta", kSap42), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return closer.find(Ev::kCallConnected).has_value(); }, std::chrono::seconds(10)));

  ASSERT_EQ(beta->close_address_families(std::chrono::seconds(10)), Status::kSuccess) << last_error();
  EXPECT_EQ(kinds(closer), (std::vector<Ev>{Ev::kNotifyCloseAf, Ev::kDeregisterSapComplete, Ev::kCloseCallComplete,
                                            Ev::kDeleteVc, Ev::kCloseAfComplete}));
  EXPECT_EQ(beta->open_af(closer.find(Ev::kNotifyCloseAf)->client).error(), Status::kFailure) << "no new opens";
  ASSERT_TRUE(wait_for([&] { return caller.find(Ev::kIncomingClose).has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(caller.find(Ev::kIncomingClose)->cause, cm::cause::kNormalClearing);
  EXPECT_EQ(beta->calls(), 0u);
}

TEST(Node, R84_R85_LinkStateReachesEveryClientAndADownLinkClearsTheCalls) {
  Client bystander;  // attached, no AF: still hears the link state (R84); outlives the nodes
  Pair p;
  bystander.node = p.alpha.get();
  (void)p.alpha->attach(&bystander);
  AfOpenId af_b = *p.beta->open_af(p.cb);
  ASSERT_TRUE(p.beta->register_sap(af_b, kSap42));
  VcId vc = *p.alpha->create_vc(*p.alpha->open_af(p.ca));
  ASSERT_EQ(p.alpha->make_call(vc, "beta", kSap42), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kCallConnected).has_value(); }, std::chrono::seconds(10)));

  p.alpha->data().indicate_carrier(false);
  ASSERT_TRUE(wait_for([&] { return p.caller.find(Ev::kIncomingClose).has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(p.caller.find(Ev::kIncomingClose)->cause, cm::cause::kDestinationOutOfOrder);
  auto down_at = [](Client& c) {
    std::lock_guard lock(c.mu);
    return std::find_if(c.events.begin(), c.events.end(),
                        [](const ClientEvent& e) { return e.kind == Ev::kLinkStatus && !e.link_up; }) -
           c.events.begin();
  };
  {
    auto k = kinds(p.caller);
    const auto down = down_at(p.caller);
    ASSERT_LT(static_cast<size_t>(down), k.size()) << "the caller heard the link go down";
    EXPECT_LT(down, std::find(k.begin(), k.end(), Ev::kIncomingClose) - k.begin())
        << "the status first, then the close it caused";
  }
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(bystander.mu);
    return !bystander.events.empty() && bystander.events.back().kind == Ev::kLinkStatus &&
           !bystander.events.back().link_up;
  }, std::chrono::seconds(5))) << "a client without an AF hears it too";
  ASSERT_TRUE(wait_for([&] { return p.caller.find(Ev::kCloseCallComplete).has_value(); }, std::chrono::seconds(10)));

  // Up again: beta is told to clear its side, and calls work again.
  p.alpha->data().indicate_carrier(true);
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kIncomingClose).has_value(); }, std::chrono::seconds(10)));
  EXPECT_TRUE(wait_for([&] { return p.beta->calls() == 0; }, std::chrono::seconds(10)));
  ASSERT_TRUE(wait_for([&] { return p.alpha->delete_vc(vc) == Status::kSuccess; }, std::chrono::seconds(10)));
  VcId again = *p.alpha->create_vc(*p.alpha->open_af(p.ca));
  ASSERT_EQ(p.alpha->make_call(again, "beta", kSap42), Status::kPending);
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(p.caller.mu);
    return std::count_if(p.caller.events.begin(), p.caller.events.end(),
                         [](const ClientEvent& e) { return e.kind == Ev::kMakeCallComplete; }) == 2;
  }, std::chrono::seconds(10)));
  std::lock_guard lock(p.caller.mu);
  auto it = std::find_if(p.caller.events.rbegin(), p.caller.events.rend(),
                         [](const ClientEvent& e) { return e.kind == Ev::kMakeCallComplete; });
  EXPECT_EQ(it->status, Status::kSuccess);
}

// Keeps every packet it receives (as a slow client would) until told to let go.
class Hoarder : public Client {
 public:
  void on_receive(std::span<RxPacket> pkts) override {
    std::lock_guard lock(held_mu);
    for (auto& p : pkts) held.push_back(std::move(p));
  }
  void let_go() {
    std::lock_guard lock(held_mu);
    held.clear();
  }
  std::mutex held_mu;
  std::vector<RxPacket> held;
};

TEST(Node, R84_AVcsReceiveLossesReachOnlyThatVcsClientAndTheCm) {
  Hoarder hoarder;  // a second client on beta; outlives the nodes
  Pair p({.data = {.pool_buffers = 256}});
  hoarder.node = p.beta.get();
  hoarder.accept = true;
  const SapSpec kSap43{1, {0, 43}};
  ASSERT_TRUE(p.beta->register_sap(*p.beta->open_af(p.cb), kSap42));
  ASSERT_TRUE(p.beta->register_sap(*p.beta->open_af(p.beta->attach(&hoarder)), kSap43));
  AfOpenId af_a = *p.alpha->open_af(p.ca);
  VcId to_listener = *p.alpha->create_vc(af_a), to_hoarder = *p.alpha->create_vc(af_a);
  ASSERT_EQ(p.alpha->make_call(to_listener, "beta", kSap42), Status::kPending);
  ASSERT_EQ(p.alpha->make_call(to_hoarder, "beta", kSap43), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kCallConnected) && hoarder.find(Ev::kCallConnected); },
                       std::chrono::seconds(10)));
  const VcId hoarded = hoarder.find(Ev::kIncomingCall)->vc;

  // The hoarder keeps every buffer, so beta's pool runs dry and frames for
  // its VC are lost: its client hears of it, with the VC's handle.
  ASSERT_EQ(coemu_test::send_seq(p.alpha->data(), to_hoarder, 0, 1000), 1000u);
  ASSERT_TRUE(wait_for([&] { return hoarder.find(Ev::kVcStatus).has_value(); }, std::chrono::seconds(10)));
  const ClientEvent e = *hoarder.find(Ev::kVcStatus);
  EXPECT_EQ(e.vc, hoarded);
  EXPECT_EQ(e.indication, static_cast<uint32_t>(miniport::Indication::kVcReceiveError));
  EXPECT_EQ(e.errors, miniport::vc_error::kBufferOverrun);
  EXPECT_GE(e.dropped, 1u);
  auto lost = [&] {
    uint8_t out[8] = {};
    EXPECT_EQ(p.beta->query_miniport(miniport::oid::kRcvPdusNoBuffer, hoarded, out).status, Status::kSuccess);
    uint32_t n = 0;
    std::memcpy(&n, out, 4);
    return n;
  };
  auto held = [&] {
    std::lock_guard lock(hoarder.held_mu);
    return hoarder.held.size();
  };
  EXPECT_TRUE(wait_for([&] { return held() + lost() == 1000; }, std::chrono::seconds(10)))
      << "each frame kept or counted lost: " << held() << " + " << lost();
  EXPECT_GE(lost(), e.dropped) << "the OID counts every loss the indications told of";
  EXPECT_TRUE(wait_for([&] { return p.beta->sig_counters().cm.vc_indications == hoarder.count(Ev::kVcStatus); },
                       std::chrono::seconds(10)))
      << "the CM shares the VC and heard each one";
  EXPECT_EQ(p.listener.count(Ev::kVcStatus), 0u) << "another client on the node hears nothing";
  EXPECT_EQ(p.caller.count(Ev::kVcStatus), 0u);

  // Once the buffers come back the other call is untouched and loses nothing.
  hoarder.let_go();
  ASSERT_EQ(coemu_test::send_seq(p.alpha->data(), to_listener, 0, 200), 200u);
  ASSERT_TRUE(wait_for([&] { return p.listener.received.load() >= 200; }, std::chrono::seconds(10)));
  EXPECT_EQ(p.listener.bad.load(), 0u);
  EXPECT_EQ(p.listener.count(Ev::kVcStatus), 0u);
}

// R76/R80/R82: statistics OIDs to the miniport count what the fast path
// moved, per VC and adapter-wide.
TEST(Node, R76_R80_R82_StatisticsOidsCountTheCallsPackets) {
  Pair p;
  AfOpenId af_b = *p.beta->open_af(p.cb);
  ASSERT_TRUE(p.beta->register_sap(af_b, kSap42));
  VcId vc = *p.alpha->create_vc(*p.alpha->open_af(p.ca));
  ASSERT_EQ(p.alpha->make_call(vc, "beta", kSap42), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kCallConnected).has_value(); }, std::chrono::seconds(10)));
  const VcId vc_b = p.listener.find(Ev::kIncomingCall)->vc;
  constexpr uint64_t kPackets = 300;
  ASSERT_EQ(coemu_test::send_seq(p.alpha->data(), vc, 0, kPackets), kPackets);
  ASSERT_TRUE(wait_for([&] { return p.listener.received.load() >= kPackets; }, std::chrono::seconds(10)));
  ASSERT_TRUE(wait_for([&] { return p.caller.completed.load() >= kPackets; }, std::chrono::seconds(10)));
  auto u64 = [](const std::array<uint8_t, 8>& b) {
    uint64_t v;
    std::memcpy(&v, b.data(), 8);
    return v;
  };
  std::array<uint8_t, 8> buf{};
  auto r = p.alpha->query_miniport(miniport::oid::kXmitPdusOk, vc, buf);
  ASSERT_EQ(r.status, Status::kSuccess);
  EXPECT_EQ(r.bytes_written, 8u);
  EXPECT_EQ(u64(buf), kPackets) << "this VC's sends";
  r = p.beta->query_miniport(miniport::oid::kRcvPdusOk, vc_b, buf);
  ASSERT_EQ(r.status, Status::kSuccess);
  EXPECT_EQ(u64(buf), kPackets) << "the callee's VC received them all";
  r = p.alpha->query_miniport(miniport::oid::kXmitPdusOk, std::nullopt, buf);
  ASSERT_EQ(r.status, Status::kSuccess);
  EXPECT_GE(u64(buf), kPackets) << "adapter-wide";
  std::array<uint8_t, 4> small{};
  r = p.alpha->query_miniport(miniport::oid::kXmitPdusOk, vc, small);
  EXPECT_EQ(r.status, Status::kSuccess) << "R82: 4 bytes get the low 32 bits";
  EXPECT_EQ(r.bytes_written, 4u);
  EXPECT_EQ(r.bytes_needed, 8u);
  EXPECT_EQ(p.alpha->query_miniport(miniport::oid::kXmitPdusOk, VcId{12345, 9}, buf).status, Status::kInvalidData)
      << "a VC handle that was never issued";
  // R76: with the AF handle the query goes to the CM instead.
  std::array<uint8_t, 64> list{};
  const AfOpenId af_a = *p.alpha->open_af(p.ca);
  r = p.alpha->query_cm(af_a, cm::co_oid::kGetAddresses, list);
  ASSERT_EQ(r.status, Status::kSuccess);
  EXPECT_EQ(std::string(list.begin() + 12, list.begin() + r.bytes_written), "alpha");
}

// Leader/follower: while beta's control thread sleeps, the I/O thread that
// receives a SETUP runs the call manager and indicates the call itself (one
// wake-up per signaling hop). With io_thread_signals off it never does.
void incoming_call_threads(bool io_thread_signals, size_t& on_io, size_t& calls) {
  Pair p({.io_thread_signals = io_thread_signals});
  AfOpenId af_b = *p.beta->open_af(p.cb);
  ASSERT_TRUE(p.beta->register_sap(af_b, kSap42));
  AfOpenId af_a = *p.alpha->open_af(p.ca);
  for (int i = 0; i < 20; ++i) {
    VcId vc = *p.alpha->create_vc(af_a);
    ASSERT_EQ(p.alpha->make_call(vc, "beta", kSap42), Status::kPending);
    ASSERT_TRUE(wait_for([&] { return p.caller.count(Ev::kMakeCallComplete) == size_t(i) + 1; },
                         std::chrono::seconds(10)));
    if (i == 0) {  // one packet shows which thread is beta's I/O thread
      ASSERT_EQ(coemu_test::send_seq(p.alpha->data(), vc, 0, 1), 1u);
      ASSERT_TRUE(wait_for([&] { return p.listener.received.load() == 1; }, std::chrono::seconds(10)));
    }
    ASSERT_EQ(p.alpha->close_call(vc), Status::kPending);
    ASSERT_TRUE(wait_for([&] { return p.caller.count(Ev::kCloseCallComplete) == size_t(i) + 1; },
                         std::chrono::seconds(10)));
    ASSERT_TRUE(wait_for([&] { return p.alpha->delete_vc(vc) == Status::kSuccess; }, std::chrono::seconds(10)));
  }
  const std::thread::id io = p.listener.rx_thread.load();
  std::lock_guard lock(p.listener.mu);
  on_io = calls = 0;
  for (size_t i = 0; i < p.listener.events.size(); ++i) {
    if (p.listener.events[i].kind != Ev::kIncomingCall) continue;
    ++calls;
    on_io += p.listener.event_threads[i] == io;
  }
}

TEST(Node, SignalingRunsOnTheReceivingIoThreadWhileTheControlThreadSleeps) {
  size_t on_io = 0, calls = 0;
  incoming_call_threads(true, on_io, calls);
  EXPECT_EQ(calls, 20u);
  EXPECT_GT(on_io, 0u) << "every incoming call waited for the control thread";
}

TEST(Node, WithoutIoThreadSignalsOnlyTheControlThreadIndicates) {
  size_t on_io = 0, calls = 0;
  incoming_call_threads(false, on_io, calls);
  EXPECT_EQ(calls, 20u);
  EXPECT_EQ(on_io, 0u);
}

// R68 end to end: each node's client configures its end of a PVC with
// OID_CO_ADD_PVC and makes a PERMANENT_VC call on it (no signaling); data
// flows both ways; deleting beta's PVC under the call closes it there and
// beta stops taking alpha's frames.
TEST(Node, R68_PvcConfiguredByEachNodesClientCarriesDataAndDeletingItClosesTheCall) {
  Pair p;
  AfOpenId af_a = *p.alpha->open_af(p.ca);
  AfOpenId af_b = *p.beta->open_af(p.cb);
  const auto pvc_a = cm::encode_co_pvc({.rx_vci = 100, .tx_vci = 200, .peer = MacAddress::local(0xb)});
  const auto pvc_b = cm::encode_co_pvc({.rx_vci = 200, .tx_vci = 100, .peer = MacAddress::local(0xa)});
  ASSERT_EQ(p.alpha->set_cm(af_a, cm::co_oid::kAddPvc, pvc_a).status, Status::kSuccess);
  ASSERT_EQ(p.beta->set_cm(af_b, cm::co_oid::kAddPvc, pvc_b).status, Status::kSuccess);
  VcId va = *p.alpha->create_vc(af_a);
  VcId vb = *p.beta->create_vc(af_b);
  const auto sig_before = p.alpha->sig_counters().transport;
  ASSERT_EQ(p.alpha->make_pvc_call(va, 100), Status::kPending);
  ASSERT_EQ(p.beta->make_pvc_call(vb, 200), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return p.caller.find(Ev::kMakeCallComplete) && p.listener.find(Ev::kMakeCallComplete); },
                       std::chrono::seconds(10)));
  EXPECT_EQ(p.caller.find(Ev::kMakeCallComplete)->status, Status::kSuccess);

  constexpr uint64_t kPackets = 500;
  EXPECT_EQ(coemu_test::send_seq(p.alpha->data(), va, 0, kPackets), kPackets);
  EXPECT_EQ(coemu_test::send_seq(p.beta->data(), vb, 0, kPackets), kPackets);
  ASSERT_TRUE(wait_for([&] { return p.listener.received.load() == kPackets && p.caller.received.load() == kPackets; },
                       std::chrono::seconds(20)));
  EXPECT_EQ(p.listener.bad.load(), 0u);
  EXPECT_EQ(p.caller.bad.load(), 0u);
  EXPECT_EQ(p.alpha->sig_counters().transport.msgs_sent, sig_before.msgs_sent) << "a PVC needs no signaling";

  ASSERT_EQ(p.beta->set_cm(af_b, cm::co_oid::kDeletePvc, pvc_b).status, Status::kSuccess);
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kIncomingClose).has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(p.listener.find(Ev::kIncomingClose)->cause, cm::cause::kDestinationOutOfOrder);
  auto refused = [&] {  // not activated while it drains, unknown after
    const auto& c = p.beta->miniport().counters();
    return c.rx_unknown_vci.load() + c.rx_not_activated.load();
  };
  const uint64_t before = refused();
  EXPECT_EQ(coemu_test::send_seq(p.alpha->data(), va, kPackets, 10), 10u);
  EXPECT_TRUE(wait_for([&] { return refused() >= before + 10; }, std::chrono::seconds(10)))
      << "beta no longer takes frames on label 200";
  EXPECT_EQ(p.listener.received.load(), kPackets);
  // The recording client answers the incoming close with its close_call.
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kCloseCallComplete).has_value(); }, std::chrono::seconds(10)));
  EXPECT_EQ(p.beta->close_call(vb), Status::kFailure) << "closed already";
  EXPECT_TRUE(wait_for([&] { return p.beta->delete_vc(vb) == Status::kSuccess; }, std::chrono::seconds(10)));
  ASSERT_EQ(p.alpha->close_call(va), Status::kPending);
  EXPECT_TRUE(wait_for([&] { return p.alpha->delete_vc(va) == Status::kSuccess; }, std::chrono::seconds(10)));
}

// R78: OID requests are not serialized for the caller: many threads query
// the CM and the miniport at once, and each gets its own complete answer.
TEST(Node, R78_OverlappingOidRequestsFromManyThreadsEachCompleteWhole) {
  Pair p;
  AfOpenId af = *p.alpha->open_af(p.ca);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 300; ++i) {
        std::array<uint8_t, 64> buf{};
        auto r = p.alpha->query_cm(af, cm::co_oid::kGetAddresses, buf);
        if (r.status != Status::kSuccess || r.bytes_written != 17 ||
            std::string(buf.begin() + 12, buf.begin() + 17) != "alpha")
          bad.fetch_add(1);
        std::array<uint8_t, 8> c{};
        if (p.alpha->query_miniport(miniport::oid::kXmitPdusOk, std::nullopt, c).status != Status::kSuccess)
          bad.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  // The CM's own request of this client (R13) was answered by it (R77).
  EXPECT_TRUE(wait_for([&] { return p.alpha->sig_counters().cm.client_oids_completed >= 1; }, std::chrono::seconds(10)));
}

// QoS end to end: a call asking a guaranteed FLOWSPEC gets its VC shaped
// to it: the data never arrives faster than the token bucket allows.
TEST(Node, GuaranteedCallIsShapedToItsFlowspec) {
  Pair p;
  AfOpenId af_b = *p.beta->open_af(p.cb);
  ASSERT_TRUE(p.beta->register_sap(af_b, kSap42));
  AfOpenId af_a = *p.alpha->open_af(p.ca);
  VcId vc = *p.alpha->create_vc(af_a);
  cm::Traffic t;
  t.transmit.service_type = 3;
  t.transmit.token_rate = 200'000;
  t.transmit.bucket = 1500;
  ASSERT_EQ(p.alpha->make_call(vc, "beta", kSap42, t), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return p.caller.find(Ev::kMakeCallComplete).has_value(); }, std::chrono::seconds(10)));
  ASSERT_EQ(p.caller.find(Ev::kMakeCallComplete)->status, Status::kSuccess);
  EXPECT_EQ(p.caller.find(Ev::kMakeCallComplete)->traffic, t);
  EXPECT_EQ(p.listener.find(Ev::kIncomingCall)->traffic.receive, t.transmit);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(coemu_test::send_seq(p.alpha->data(), vc, 0, 100), 100u);
  ASSERT_TRUE(wait_for([&] { return p.listener.received.load() == 100; }, std::chrono::seconds(20)));
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t wire = 0;
  for (uint32_t seq = 0; seq < 100; ++seq) wire += std::max<size_t>(22 + coemu_test::Checker::expected_len(seq), 60);
  EXPECT_GE(took, static_cast<double>(wire - 1500) / 200'000) << "faster than its token rate";
  EXPECT_EQ(p.listener.bad.load(), 0u);
}

TEST(Node, CloseAddressFamiliesReportsAClientThatNeverCloses) {
  Pair p;
  (void)*p.beta->open_af(p.cb);  // the listener ignores kNotifyCloseAf
  EXPECT_EQ(p.beta->close_address_families(std::chrono::milliseconds(50)), Status::kFailure);
  ASSERT_TRUE(p.listener.find(Ev::kNotifyCloseAf).has_value());
}

TEST(Node, BadNodeAddressIsRefused) {
  auto pair = MemLink::make_pair({});
  EXPECT_EQ(Node::start(*pair->first, {.address = "no spaces", .mac = MacAddress::local(1)}).error(),
            Status::kInvalidData);
  EXPECT_NE(last_error().find("no spaces"), std::string::npos);
}

// What `coemu show` reads of a node: one consistent picture.
TEST(Node, SnapshotShowsCallsSapsPeersAndEachVcsCounters) {
  Pair p;
  AfOpenId af_b = *p.beta->open_af(p.cb);
  ASSERT_TRUE(p.beta->register_sap(af_b, kSap42));
  VcId vc = *p.alpha->create_vc(*p.alpha->open_af(p.ca));
  ASSERT_EQ(p.alpha->make_call(vc, "beta", kSap42), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return p.listener.find(Ev::kCallConnected).has_value(); }, std::chrono::seconds(10)));
  constexpr uint64_t kPackets = 50;
  ASSERT_EQ(coemu_test::send_seq(p.alpha->data(), vc, 0, kPackets), kPackets);
  ASSERT_TRUE(wait_for([&] { return p.listener.received.load() >= kPackets; }, std::chrono::seconds(10)));

  const Node::Snapshot b = p.beta->snapshot();
  EXPECT_EQ(b.address, "beta");
  EXPECT_EQ(b.mac, MacAddress::local(0xb));
  ASSERT_EQ(b.calls.size(), 1u);
  EXPECT_EQ(b.calls[0].peer_address, "alpha");
  EXPECT_FALSE(b.calls[0].originated);
  EXPECT_EQ(b.calls[0].state, cm::CallState::kActive);
  ASSERT_EQ(b.saps.size(), 1u);
  EXPECT_EQ(b.saps[0].spec, kSap42);
  EXPECT_EQ(b.saps[0].state, cm::SapState::kRegistered);
  ASSERT_EQ(b.peers.size(), 1u);
  EXPECT_EQ(b.peers[0].neighbor.address, "alpha");
  EXPECT_LT(b.peers[0].since_heard, std::chrono::seconds(5));
  ASSERT_EQ(b.vcs.size(), 1u);
  EXPECT_EQ(b.vcs[0].view.vc, b.calls[0].vc);
  EXPECT_EQ(b.vcs[0].state, miniport::VcState::kActive);
  EXPECT_EQ(b.vcs[0].counters.rx_frames, kPackets);
  EXPECT_GT(b.sig.transport.delivered, 0u);

  const Node::Snapshot a = p.alpha->snapshot();
  ASSERT_EQ(a.vcs.size(), 1u);
  EXPECT_EQ(a.vcs[0].view.vc, vc);
  EXPECT_TRUE(wait_for([&] { return p.alpha->snapshot().vcs[0].counters.tx_frames == kPackets; },
                       std::chrono::seconds(10)));
  ASSERT_EQ(p.alpha->close_call(vc), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return p.caller.find(Ev::kCloseCallComplete).has_value(); }, std::chrono::seconds(10)));
  EXPECT_TRUE(wait_for([&] { return p.beta->snapshot().calls.empty(); }, std::chrono::seconds(10)));
}

TEST(Node, AFullVcTableIsAClearStatusAtBothEnds) {
  // beta holds at most 2 VCs: its third incoming call is refused with cause
  // 47 (alpha's client hears RESOURCES), and its own create_vc answers
  // RESOURCES; nothing aborts, and room comes back when a call goes.
  auto pair = MemLink::make_pair({});
  ASSERT_TRUE(pair.has_value());
  coemu_test::RecordingClient caller, listener;
  auto alpha = Node::start(*pair->first, {.address = "alpha", .mac = MacAddress::local(0xa)});
  auto beta = Node::start(*pair->second, {.address = "beta", .mac = MacAddress::local(0xb), .max_vcs = 2});
  ASSERT_TRUE(alpha && beta) << last_error();
  caller.node = alpha->get();
  listener.node = beta->get();
  listener.accept = true;
  AfOpenId af_a = *(*alpha)->open_af((*alpha)->attach(&caller));
  AfOpenId af_b = *(*beta)->open_af((*beta)->attach(&listener));
  ASSERT_TRUE((*beta)->register_sap(af_b, kSap42));
  ASSERT_TRUE(wait_for([&] { return (*alpha)->knows("beta"); }, std::chrono::seconds(10)));
  std::vector<VcId> vcs;
  for (int i = 0; i < 3; ++i) {
    vcs.push_back(*(*alpha)->create_vc(af_a));
    ASSERT_EQ((*alpha)->make_call(vcs.back(), "beta", kSap42), Status::kPending);
    ASSERT_TRUE(wait_for([&] { return caller.count(Ev::kMakeCallComplete) == static_cast<size_t>(i + 1); },
                         std::chrono::seconds(10)));
  }
  std::vector<ClientEvent> done;
  {
    std::lock_guard lock(caller.mu);
    for (const auto& e : caller.events)
      if (e.kind == Ev::kMakeCallComplete) done.push_back(e);
  }
  EXPECT_EQ(done[0].status, Status::kSuccess);
  EXPECT_EQ(done[1].status, Status::kSuccess);
  EXPECT_EQ(done[2].status, Status::kResources);
  EXPECT_EQ(done[2].cause, cm::cause::kResourceUnavailable);
  auto own = (*beta)->create_vc(af_b);
  ASSERT_FALSE(own);
  EXPECT_EQ(own.error(), Status::kResources);
  // A call goes, and its VC with it once the data path has let go of the
  // slot (a grace period): then a call fits again.
  ASSERT_EQ((*alpha)->close_call(vcs[0]), Status::kPending);
  ASSERT_TRUE(wait_for([&] { return (*beta)->vcs_in_use() == 1; }, std::chrono::seconds(10)));
  VcId again = vcs[2];
  EXPECT_TRUE(wait_for([&] {
    const size_t n = caller.count(Ev::kMakeCallComplete);
    if ((*alpha)->make_call(again, "beta", kSap42) != Status::kPending) return false;
    if (!wait_for([&] { return caller.count(Ev::kMakeCallComplete) > n; }, std::chrono::seconds(10))) return false;
    return caller.last(Ev::kMakeCallComplete)->status == Status::kSuccess;
  }, std::chrono::seconds(10))) << "beta never had room again";
}

}  // namespace
}  // namespace emulator
