// `--qos` on the command line: a readable FLOWSPEC such as
// "guaranteed,rate=100M,bucket=64k" turned into the TRAFFIC a call asks for.
#pragma once

#include <string>
#include <variant>

#include "cm/sig_codec.h"

namespace tools {

// SERVICE[,rate=R][,bucket=B][,peak=R][,latency=T][,jitter=T][,sdu=B][,min=B]
//   SERVICE  best-effort | controlled-load | guaranteed
//   R        a rate in bit/s with an SI prefix: 100M, 1.5G, 640k (100Mbit also
//            reads), or in bytes/s with a B suffix: 12.5MB
//   B        bytes with a binary prefix: 64k = 65536, 1500
//   T        a time: 10ms, 500us
// controlled-load and guaranteed need rate=. bucket defaults to 10 ms of the
// rate and at least 4 KiB; peak defaults to the rate. Both directions get
// the same FLOWSPEC (a point-to-multipoint call's leaves only receive).
// Returns the TRAFFIC, or a message naming the part that is wrong.
[[nodiscard]] std::variant<cm::Traffic, std::string> parse_qos(const std::string& spec);

// "guaranteed" for service type 3 (PROTOCOL.md 4.3 TRAFFIC).
[[nodiscard]] const char* service_name(uint32_t service_type);
// "guaranteed 100 Mbit/s (bucket 64 KiB)" for a FLOWSPEC.
[[nodiscard]] std::string describe_flowspec(const cm::FlowSpec& f);

}  // namespace tools
