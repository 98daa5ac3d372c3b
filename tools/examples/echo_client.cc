// An example coemu client program (docs/client-api.md walks through it).
//
// Two nodes on the in-process memory wire (no privileges needed): beta's
// client registers SAP 42 and echoes what it receives; alpha's client makes
// a guaranteed-QoS call to beta:42, sends 100 packets, waits for them to come
// back, and closes the call. Every request answers at once; PENDING ones
// complete later through on_event, on the node's control thread.
//
//   build/release/tools/examples/coemu_echo_client      # exit 0: all echoed
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "emulator/mem_link.h"
#include "emulator/node.h"
#include "miniport/frame.h"

using namespace std::chrono_literals;
using cm::ClientEvent;
using emulator::Node;
using miniport::Status;
using miniport::VcId;
using Kind = ClientEvent::Kind;

namespace {

const cm::SapSpec kSap42{1, {0, 42}};  // SAP type 1 (selector), value 42

// Callbacks come from the node's threads: keep state under a lock, never
// block in them, and make further requests from them freely.
class Client : public emulator::NodeClient {
 public:
  explicit Client(bool echo) : echo_(echo) {}
  Node* node = nullptr;

  void on_event(const ClientEvent& e) override {
    switch (e.kind) {
      case Kind::kIncomingCall:  // R51: accept every call offered on our SAP
        (void)node->incoming_call_complete(e.vc, Status::kSuccess);
        break;
      case Kind::kIncomingClose:  // R67: the peer closed; close our side too
        (void)node->close_call(e.vc);
        break;
      case Kind::kOidRequest:  // R77: the call manager informs us; take note
        (void)node->oid_request_complete(e.request, Status::kSuccess);
        break;
      default:
        break;
    }
    std::lock_guard lock(mu_);
    last_[static_cast<int>(e.kind)] = e;
    cv_.notify_all();
  }

  void on_receive(std::span<emulator::RxPacket> packets) override {
    std::lock_guard lock(mu_);
    for (auto& p : packets) {
      ++received_;
      if (!echo_) continue;
      emulator::TxPacket back{node->data().alloc(), 0};
      if (!back.buf) continue;  // pool empty: this one is not echoed
      std::memcpy(back.buf.data() + miniport::kFramePayloadOffset, p.payload().data(), p.payload().size());
      back.buf.set_size(static_cast<uint32_t>(p.payload().size()));
      (void)node->data().send(p.vc(), std::span(&back, 1));
    }  // the packets go back to the pool when `packets` is done with (R73)
    cv_.notify_all();
  }

  // Waits (bounded) for an event of kind k and returns it.
  std::optional<ClientEvent> wait(Kind k) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, 10s, [&] { return last_[static_cast<int>(k)].has_value(); })) return std::nullopt;
    return last_[static_cast<int>(k)];
  }
  bool wait_received(uint64_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return received_ >= n; });
  }

 private:
  bool echo_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<ClientEvent> last_[32];
  uint64_t received_ = 0;
};

int fail(const char* what) {
  std::fprintf(stderr, "echo_client: %s\n", what);
  return 1;
}

}  // namespace

int main() {
  // The wire and the nodes. A TAP (emulator::TapDevice) works the same way.
  auto wire = emulator::MemLink::make_pair({});
  if (!wire) return fail("no memory wire");
  Client caller(false), echoer(true);  // outlive the nodes, whose threads call them
  auto alpha = Node::start(*wire->first, {.address = "alpha", .mac = miniport::MacAddress::local(0xa)});
  auto beta = Node::start(*wire->second, {.address = "beta", .mac = miniport::MacAddress::local(0xb)});
  if (!alpha || !beta) return fail("nodes did not start");
  caller.node = alpha->get();
  echoer.node = beta->get();

  // beta: attach a client, open the address family, register SAP 42.
  auto af_b = (*beta)->open_af((*beta)->attach(&echoer));
  if (!af_b || !(*beta)->register_sap(*af_b, kSap42)) return fail("beta could not listen");

  // alpha: a VC, then a call on it once beta's HELLO has been heard.
  auto af_a = (*alpha)->open_af((*alpha)->attach(&caller));
  if (!af_a) return fail("alpha could not open the address family");
  auto vc = (*alpha)->create_vc(*af_a);
  if (!vc) return fail("no VC");
  for (int i = 0; i < 500 && !(*alpha)->knows("beta"); ++i) std::this_thread::sleep_for(10ms);

  cm::Traffic qos;  // 1 MB/s guaranteed each way, bucket 16 KiB
  qos.transmit = {.token_rate = 1'000'000, .bucket = 16384, .peak = 1'000'000, .service_type = 3};
  qos.receive = qos.transmit;
  if ((*alpha)->make_call(*vc, "beta", kSap42, qos) != Status::kPending) return fail("make_call refused");
  auto made = caller.wait(Kind::kMakeCallComplete);
  if (!made || made->status != Status::kSuccess) return fail("the call failed");

  // Data: take a buffer from the pool, write the payload after the headers'
  // room, send; each send completes once (on_send_complete).
  constexpr uint32_t kPackets = 100;
  for (uint32_t i = 0; i < kPackets;) {
    emulator::TxPacket p{(*alpha)->data().alloc(), i};
    if (!p.buf) {
      std::this_thread::sleep_for(1ms);
      continue;
    }
    std::snprintf(reinterpret_cast<char*>(p.buf.data() + miniport::kFramePayloadOffset), 32, "hello %u", i);
    p.buf.set_size(32);
    if ((*alpha)->data().send(*vc, std::span(&p, 1)) == 1) ++i;
  }
  if (!caller.wait_received(kPackets)) return fail("not every packet came back");

  // Close; the VC can be deleted once the close has completed.
  if ((*alpha)->close_call(*vc) != Status::kPending || !caller.wait(Kind::kCloseCallComplete))
    return fail("the close did not complete");
  for (int i = 0; i < 500 && (*alpha)->delete_vc(*vc) != Status::kSuccess; ++i) std::this_thread::sleep_for(10ms);
  std::printf("echo_client: %u packets echoed over a guaranteed call alpha -> beta:42\n", kPackets);
  return 0;
}
