// A Node client for tests: records every event; when `accept` is set it
// accepts every incoming call (with `defer` it answers "later", and never
// does), and it answers every incoming close with its own close, from
// inside on_event (inline requests). It checks received
// payloads in order (node_pair.h's pattern) and counts send completions.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "emulator/node.h"
#include "node_pair.h"

namespace coemu_test {

class RecordingClient : public emulator::NodeClient {
 public:
  using Ev = emulator::ClientEvent::Kind;

  emulator::Node* node = nullptr;
  bool accept = false;
  bool defer = false;  // answer every incoming call "later" (CALL_PROCEEDING) and never again
  bool answer_oids = true;  // complete the CM's OID requests at once
  std::mutex mu;  // guards events
  std::vector<emulator::ClientEvent> events;
  std::vector<std::thread::id> event_threads;  // the thread each event came on
  std::atomic<std::thread::id> rx_thread{};    // the thread of the last receive
  std::atomic<uint64_t> received{0}, bad{0}, completed{0};
  std::atomic<uint32_t> next{0};

  void on_event(const emulator::ClientEvent& e) override {
    if (accept && e.kind == Ev::kIncomingCall) {
      EXPECT_EQ(node->incoming_call_complete(e.vc, Status::kSuccess), Status::kSuccess);
    }
    if (defer && e.kind == Ev::kIncomingCall) {
      EXPECT_EQ(node->incoming_call_complete(e.vc, Status::kPending), Status::kSuccess);
    }
    if (e.kind == Ev::kIncomingClose) {
      EXPECT_EQ(node->close_call(e.vc), Status::kPending);
    }
    if (e.kind == Ev::kOidRequest && answer_oids) {
      EXPECT_EQ(node->oid_request_complete(e.request, Status::kSuccess), Status::kSuccess);
    }
    std::lock_guard lock(mu);
    events.push_back(e);
    event_threads.push_back(std::this_thread::get_id());
  }
  void on_receive(std::span<emulator::RxPacket> pkts) override {
    for (auto& p : pkts) {
      if (payload_ok(p.payload(), next.load())) next.fetch_add(1);
      else bad.fetch_add(1);
    }
    rx_thread.store(std::this_thread::get_id());
    received.fetch_add(pkts.size());
  }
  void on_send_complete(std::span<const emulator::TxCompletion> done) override { completed.fetch_add(done.size()); }

  // The first, the last, and how many events of a kind so far.
  std::optional<emulator::ClientEvent> find(Ev k) {
    std::lock_guard lock(mu);
    for (auto& e : events)
      if (e.kind == k) return e;
    return std::nullopt;
  }
  std::optional<emulator::ClientEvent> last(Ev k) {
    std::lock_guard lock(mu);
    for (auto it = events.rbegin(); it != events.rend(); ++it)
      if (it->kind == k) return *it;
    return std::nullopt;
  }
  size_t count(Ev k) {
    std::lock_guard lock(mu);
    return static_cast<size_t>(std::count_if(events.begin(), events.end(), [&](auto& e) { return e.kind == k; }));
  }
};

}  // namespace coemu_test
