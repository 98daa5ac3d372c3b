// `coemu decode FILE.pcap`: reads a capture and prints one line per frame,
// like tcpdump, with coemu's signaling and DATA decoded (PROTOCOL.md), nodes
// named by the addresses their HELLOs announce, and DATA frames mapped back
// to their call through the VCIs seen in signaling. `--calls` prints each
// call's ladder (SETUP ... CONNECT_ACK ... RELEASE_COMPLETE) with timings.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace tools {

struct DecodeOptions {
  std::string file;
  bool calls = false;     // per-call ladders instead of per-frame lines
  bool json = false;      // JSON lines: one object per frame (or per call)
  bool absolute = false;  // wall-clock UTC times instead of seconds since the first frame
};

void add_decode_command(CLI::App& app, DecodeOptions& o, CLI::App*& cmd);
[[nodiscard]] int run_decode(const DecodeOptions& o);

}  // namespace tools
