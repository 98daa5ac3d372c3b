// `coemu listen` and `coemu call`: one node each, on a TAP, as a client of
// its own call manager. listen registers SAPs and answers calls (accept,
// reject, echo the data back, or sink it); call places one call to NODE:SAP
// (or a point-to-multipoint call to several), with the QoS asked for, sends
// packets on it (a count, or for a duration, paced or not) and closes it.
// Both print the events they see.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/node_cli.h"

namespace tools {

struct ListenOptions {
  NodeCliOptions node;
  std::vector<std::string> saps;  // parse_sap() forms; default selector:42
  std::string mode = "accept";    // accept | reject | echo | sink
  uint32_t cause = 21;            // reject: the Q.850 cause the caller hears (cm::refusal_status)
  uint32_t max_calls = 0;         // stop after this many calls ended; 0 = until Ctrl-C
};

struct CallOptions {
  NodeCliOptions node;
  std::vector<std::string> dests;  // NODE:SAP; several make a point-to-multipoint call
  bool multipoint = false;         // point-to-multipoint even with one party
  std::string pvc;                 // RX:TX@PEER: send on a PVC instead of calling (no signaling)
  std::string qos;                 // parse_qos() form; "" = best effort
  int64_t count = -1;              // packets to send; -1 = 10, or no limit with a duration
  std::string duration;            // send for this long ("" = until count)
  std::string rate;                // pace the payload at this rate ("" = as fast as it goes)
  uint32_t size = 64;              // payload bytes
  double wait = 5;                 // seconds to wait for the peers' HELLOs and each answer
  bool expect_echo = false;        // wait for every packet to come back before closing
};

void add_listen_command(CLI::App& app, ListenOptions& o, CLI::App*& cmd);
void add_call_command(CLI::App& app, CallOptions& o, CLI::App*& cmd);
[[nodiscard]] int run_listen(const ListenOptions& o);
[[nodiscard]] int run_call(const CallOptions& o);

}  // namespace tools
