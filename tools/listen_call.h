// `coemu listen` and `coemu call`: one node each, on a TAP, as a client of
// its own call manager. listen registers SAPs and answers calls (accept,
// reject, echo the data back, or sink it); call places one call to NODE:SAP,
// sends packets on it and closes it. Both print the events they see.
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
  uint32_t max_calls = 0;         // stop after this many calls ended; 0 = until Ctrl-C
};

struct CallOptions {
  NodeCliOptions node;
  std::string dest;          // NODE:SAP
  uint64_t count = 10;       // packets to send
  uint32_t size = 64;        // payload bytes
  double wait = 5;           // seconds to wait for the peer's HELLO and each answer
  bool expect_echo = false;  // wait for every packet to come back before closing
};

void add_listen_command(CLI::App& app, ListenOptions& o, CLI::App*& cmd);
void add_call_command(CLI::App& app, CallOptions& o, CLI::App*& cmd);
[[nodiscard]] int run_listen(const ListenOptions& o);
[[nodiscard]] int run_call(const CallOptions& o);

}  // namespace tools
