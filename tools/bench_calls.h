// `coemu bench calls`: call setup + teardown between two nodes over two TAPs
// on a bridge (in a namespace of its own), 1 and 16 calls in flight, against
// TCP connect + accept + close over a veth between two namespaces, measured
// in the same run.
#pragma once

#include <cstdint>
#include <vector>

#include "emulator/node.h"
#include "tools/bench_datapath.h"
#include "tools/bench_report.h"

namespace tools {

struct BenchCallsOptions {
  double seconds = 1.0;                  // per case and repetition
  std::vector<uint32_t> inflight = {1, 16};
  uint32_t repeat = 3;                   // coemu and TCP alternate this often; medians are reported
  bool busy_poll = false;                // the nodes' I/O threads spin instead of blocking
  uint32_t poll_us = 50;                 // DataPathOptions::poll_window
  bool sig_write_now = true;             // a lone SIG frame is written by the control thread
  bool io_thread_signals = true;         // NodeConfig::io_thread_signals
};

// The far end of the call benchmarks: accepts every call and answers every
// close with its own.
class AcceptAll : public emulator::NodeClient {
 public:
  emulator::Node* node = nullptr;
  void on_event(const cm::ClientEvent& e) override {
    if (e.kind == cm::ClientEvent::Kind::kIncomingCall) (void)node->incoming_call_complete(e.vc, miniport::Status::kSuccess);
    if (e.kind == cm::ClientEvent::Kind::kIncomingClose) (void)node->close_call(e.vc);
  }
};

// Two nodes, alpha and beta, on a bench path ("memory" or "tap"): beta
// accepts every call on `sap`; `client` is attached on alpha with an AF
// open (`af`). Ready once alpha has heard beta's HELLO. Declare the client
// before the rig so it outlives the nodes.
struct CallRig {
  AcceptAll acceptor;  // before the nodes: destroyed after them
  BenchPath path;
  std::unique_ptr<emulator::Node> alpha, beta;
  cm::AfOpenId af;
};
[[nodiscard]] miniport::Result<void> start_call_rig(CallRig& rig, const std::string& link,
                                                    const emulator::NodeConfig& base, const cm::SapSpec& sap,
                                                    emulator::NodeClient& client);

// Runs the cases into the report. Returns the exit code (1 when a path
// cannot be built, e.g. without root).
int run_bench_calls(const BenchCallsOptions& o, BenchReport& report);

}  // namespace tools
