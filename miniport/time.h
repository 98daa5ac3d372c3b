// Time as the pure layers see it: a count of nanoseconds since an epoch the
// caller chooses. miniport/ and cm/ never read a clock; emulator/ passes the
// time in (steady clock for timers, realtime for pcap stamps).
#pragma once

#include <chrono>

namespace miniport {

using Duration = std::chrono::nanoseconds;
// A point in time, as nanoseconds since the caller's epoch.
using Time = std::chrono::nanoseconds;

}  // namespace miniport
