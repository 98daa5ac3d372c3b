// coemu_trace_gen OUT.pcap: writes a capture with one of each signaling
// exchange, for the dissector and decode tests. Two nodes on the memory
// wire, alpha (02:00:00:00:00:0a) and beta (:0b), recorded at alpha: HELLOs;
// a guaranteed-QoS call to beta:42 with DATA both ways, a QoS modification
// and a release; a call to an unregistered SERVICE SAP refused with cause 88;
// a point-to-multipoint call with a second party added and dropped. Then
// hand-made frames that a decoder must flag or decline: a SIG frame of
// version 2, one with hdr_len 20, body_len past the end, an unknown message
// type, an IE past the end of its message, an unknown comprehension-required
// IE, a RESET, a DATA frame whose len lies, one for VCI 0, and a resent MSG.
// Exit 0 when every step happened as expected, else 1 with the step named.
#include <fmt/core.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <vector>

#include "cm/sig_codec.h"
#include "emulator/mem_link.h"
#include "emulator/node.h"
#include "emulator/pcap_recorder.h"
#include "miniport/byte_order.h"
#include "miniport/frame.h"

namespace {

using cm::ClientEvent;
using emulator::Node;
using miniport::MacAddress;
using miniport::Status;
using miniport::VcId;
using Ev = ClientEvent::Kind;

constexpr auto kLimit = std::chrono::seconds(10);

// Records events; as a listener it accepts calls and echoes what it receives.
class Client : public emulator::NodeClient {
 public:
  Node* node = nullptr;
  bool listener = false;

  void on_event(const ClientEvent& e) override {
    if (listener && e.kind == Ev::kIncomingCall) (void)node->incoming_call_complete(e.vc, Status::kSuccess);
    if (e.kind == Ev::kIncomingClose) (void)node->close_call(e.vc);
    if (e.kind == Ev::kIncomingDropParty) (void)node->drop_party(e.party);
    if (e.kind == Ev::kOidRequest) (void)node->oid_request_complete(e.request, Status::kSuccess);
    std::lock_guard lock(mu_);
    events_.push_back(e);
    cv_.notify_all();
  }
  void on_receive(std::span<emulator::RxPacket> pkts) override {
    std::lock_guard lock(mu_);
    received_ += pkts.size();
    if (listener) echo_.insert(echo_.end(), pkts.size(), pkts.empty() ? VcId{} : pkts[0].vc());
    cv_.notify_all();
  }

  // The first event of kind `k` after the `skip`-th, waited for.
  std::optional<ClientEvent> wait(Ev k, size_t skip = 0) {
    std::unique_lock lock(mu_);
    std::optional<ClientEvent> found;
    cv_.wait_for(lock, kLimit, [&] {
      size_t seen = 0;
      for (const auto& e : events_)
        if (e.kind == k && seen++ == skip) {
          found = e;
          return true;
        }
      return false;
    });
    return found;
  }
  bool wait_received(uint64_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kLimit, [&] { return received_ >= n; });
  }
  std::vector<VcId> take_echo() {
    std::lock_guard lock(mu_);
    return std::exchange(echo_, {});
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ClientEvent> events_;
  uint64_t received_ = 0;
  std::vector<VcId> echo_;
};

bool send_data(Node& node, VcId vc, uint32_t count, uint32_t size) {
  for (uint32_t i = 0; i < count; ++i) {
    emulator::TxPacket p{node.data().alloc(), i};
    if (!p.buf) return false;
    std::memset(p.buf.data() + miniport::kFramePayloadOffset, 'a' + static_cast<int>(i % 26), size);
    p.buf.set_size(size);
    if (node.data().send(vc, std::span(&p, 1)) != 1) return false;
  }
  return true;
}

[[noreturn]] void fail(const char* step) {
  fmt::print(stderr, "coemu_trace_gen: {} did not happen as expected\n", step);
  std::exit(1);
}

void expect(bool ok, const char* step) {
  if (!ok) fail(step);
}

cm::Traffic guaranteed(uint32_t rate) {
  cm::Traffic t;
  t.transmit = {.token_rate = rate, .bucket = 65536, .peak = rate, .latency = 0, .delay_variation = 0,
                .service_type = 3, .max_sdu = 1500, .min_policed = 64};
  t.receive = t.transmit;
  return t;
}

// ---- hand-made frames ----

using Bytes = std::vector<uint8_t>;

Bytes eth(uint16_t type) {
  Bytes f(14);
  const uint8_t dst[6] = {2, 0, 0, 0, 0, 0x0a}, src[6] = {2, 0, 0, 0, 0, 0x0b};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  miniport::store_be16(f.data() + 12, type);
  return f;
}

void put16(Bytes& b, uint16_t v) {
  b.resize(b.size() + 2);
  miniport::store_be16(b.data() + b.size() - 2, v);
}
void put32(Bytes& b, uint32_t v) {
  b.resize(b.size() + 4);
  miniport::store_be32(b.data() + b.size() - 4, v);
}

// A SIG header as the wire has it, with every field ours to choose.
Bytes sig(uint8_t ver, uint8_t kind, uint16_t hdr_len, uint16_t body_len, uint32_t seq, const Bytes& body) {
  Bytes f = eth(miniport::kEtherTypeSig);
  f.push_back(ver);
  f.push_back(kind);
  put16(f, hdr_len);
  put16(f, body_len);
  put16(f, 0);
  put32(f, 0xbad0bad0);  // incarnation: another life than the nodes'
  put32(f, 0);
  put32(f, seq);
  put32(f, 0);
  f.insert(f.end(), body.begin(), body.end());
  if (f.size() < 60) f.resize(60);
  return f;
}

// A message body: type, rsvd, length, call_ref, then raw IE bytes.
Bytes msg(uint8_t type, uint32_t call_ref, const Bytes& ies, int length_delta = 0) {
  Bytes b{type, 0};
  put16(b, static_cast<uint16_t>(static_cast<int>(ies.size()) + length_delta));
  put32(b, call_ref);
  b.insert(b.end(), ies.begin(), ies.end());
  return b;
}

Bytes data_frame(uint32_t vci, uint16_t len, size_t carried) {
  Bytes f = eth(miniport::kEtherTypeData);
  put32(f, vci);
  put16(f, len);
  put16(f, 0);
  f.resize(f.size() + carried, 0x5a);
  if (f.size() < 60) f.resize(60);
  return f;
}

std::vector<Bytes> broken_frames() {
  std::vector<Bytes> out;
  const Bytes cause_ie{0x06, 0x00, 0x00, 0x02, 16, 1};
  const Bytes release = msg(0x4D, 0x77, cause_ie);
  const auto blen = static_cast<uint16_t>(release.size());
  out.push_back(sig(2, 2, 24, blen, 1, release));                                      // version 2: not ours
  out.push_back(sig(1, 2, 20, blen, 1, release));                                      // hdr_len 20: not ours
  out.push_back(sig(1, 2, 24, 200, 1, release));                                       // body_len past the end
  const Bytes unknown = msg(0x33, 0x77, {});
  out.push_back(sig(1, 2, 24, static_cast<uint16_t>(unknown.size()), 2, unknown));    // unknown message type
  const Bytes past = msg(0x4D, 0x77, Bytes{0x06, 0x00, 0x00, 0x09, 16, 1});           // CAUSE claims 9 bytes
  out.push_back(sig(1, 2, 24, static_cast<uint16_t>(past.size()), 3, past));
  const Bytes strange = msg(0x4D, 0x77, Bytes{0x6E, 0x01, 0x00, 0x01, 0xff, 0x06, 0x00, 0x00, 0x02, 16, 1});
  out.push_back(sig(1, 2, 24, static_cast<uint16_t>(strange.size()), 4, strange));   // IE 0x6E, comprehension required
  out.push_back(sig(1, 4, 24, 0, 0, {}));                                              // RESET
  out.push_back(data_frame(0x1234, 1000, 10));                                         // len lies
  out.push_back(data_frame(0, 4, 4));                                                  // VCI 0
  out.push_back(out[5]);  // the IE-0x6E message again, as the transport resends
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fmt::print(stderr, "usage: coemu_trace_gen OUT.pcap\n");
    return 2;
  }
  auto rec = emulator::PcapRecorder::open({.path = argv[1], .flush_on_signals = false});
  if (!rec) {
    fmt::print(stderr, "coemu_trace_gen: cannot write {}\n", argv[1]);
    return 1;
  }
  {
    auto link = *emulator::MemLink::make_pair({});
    link.first->set_recorder(rec->get());
    Client a, b;  // outlive the nodes, whose threads call them
    auto alpha = Node::start(*link.first, {.address = "alpha", .mac = MacAddress::local(0xa), .incarnation = 0x0a0a0a0a});
    auto beta = Node::start(*link.second, {.address = "beta", .mac = MacAddress::local(0xb), .incarnation = 0x0b0b0b0b});
    expect(alpha && beta, "starting the nodes");
    a.node = alpha->get();
    b.node = beta->get();
    b.listener = true;
    Node& A = **alpha;
    Node& B = **beta;
    const auto af_b = B.open_af(B.attach(&b));
    expect(af_b && B.register_sap(*af_b, cm::SapSpec{1, {0, 42}}).has_value(), "beta's SAP 42");
    const auto af_a = A.open_af(A.attach(&a));
    expect(af_a.has_value(), "alpha's open");
    for (int i = 0; i < 1000 && !A.knows("beta"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    expect(A.knows("beta"), "beta's HELLO");

    // 1. A guaranteed call with data both ways, a QoS change, a release.
    VcId vc = *A.create_vc(*af_a);
    expect(A.make_call(vc, "beta", cm::SapSpec{1, {0, 42}}, guaranteed(1'000'000)) == Status::kPending, "call 1");
    auto done = a.wait(Ev::kMakeCallComplete);
    expect(done && done->status == Status::kSuccess, "call 1 connecting");
    expect(b.wait(Ev::kCallConnected).has_value(), "call 1 connected at beta");
    expect(send_data(A, vc, 3, 100) && b.wait_received(3), "data alpha -> beta");
    const auto echo = b.take_echo();
    expect(!echo.empty() && send_data(B, echo[0], 2, 60) && a.wait_received(2), "data beta -> alpha");
    expect(A.modify_call_qos(vc, guaranteed(2'000'000)) == Status::kPending, "modify");
    auto mod = a.wait(Ev::kModifyQosComplete);
    expect(mod && mod->status == Status::kSuccess, "modify completing");
    expect(A.close_call(vc) == Status::kPending, "close 1");
    expect(a.wait(Ev::kCloseCallComplete).has_value(), "close 1 completing");

    // 2. A call to a SAP nobody registered: cause 88.
    const std::string svc = "nosuch";
    cm::SapSpec nosuch{2, std::vector<uint8_t>(svc.begin(), svc.end())};
    expect(A.make_call(vc, "beta", nosuch) == Status::kPending, "call 2");
    auto refused = a.wait(Ev::kMakeCallComplete, 1);
    expect(refused && refused->status != Status::kSuccess && refused->cause == cm::cause::kIncompatibleDestination,
           "call 2 refused with cause 88");

    // 3. Point-to-multipoint: a second party added, then dropped.
    auto first = A.make_multipoint_call(vc, "beta", cm::SapSpec{1, {0, 42}});
    expect(first.has_value(), "call 3");
    auto mp = a.wait(Ev::kMakeCallComplete, 2);
    expect(mp && mp->status == Status::kSuccess, "call 3 connecting");
    auto second = A.add_party(vc, "beta", cm::SapSpec{1, {0, 42}});
    expect(second.has_value(), "add party");
    auto added = a.wait(Ev::kAddPartyComplete);
    expect(added && added->status == Status::kSuccess, "add party completing");
    expect(send_data(A, vc, 1, 80) && b.wait_received(5), "multipoint data");
    expect(A.drop_party(*second) == Status::kPending, "drop party");
    expect(a.wait(Ev::kDropPartyComplete).has_value(), "drop party completing");
    expect(A.close_call(vc) == Status::kPending, "close 3");
    expect(a.wait(Ev::kCloseCallComplete, 1).has_value(), "close 3 completing");
    for (int i = 0; i < 1000 && (A.calls() || B.calls()); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    expect(A.calls() == 0 && B.calls() == 0, "every call gone");
    // The last RELEASE_COMPLETE has no message to ride on: alpha acks it bare.
    for (int i = 0; i < 1000 && A.sig_counters().transport.acks_sent == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    expect(A.sig_counters().transport.acks_sent > 0, "a bare ACK");
  }
  for (const auto& f : broken_frames()) expect((*rec)->record(f), "recording a hand-made frame");
  (*rec)->sync();
  return 0;
}
