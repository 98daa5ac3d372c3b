// The emulator's clocks: the pure layers take time as an argument, and this is
// where it comes from.
#pragma once

#include <time.h>

#include "miniport/time.h"

namespace emulator {

// Monotonic time for timers, delays and rates (CLOCK_MONOTONIC, vDSO: no syscall).
inline miniport::Time steady_now() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return miniport::Time(int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec);
}

// Wall-clock time for pcap stamps (CLOCK_REALTIME).
inline miniport::Time wall_now() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return miniport::Time(int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec);
}

}  // namespace emulator
