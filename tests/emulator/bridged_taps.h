// TAPs on one bridge in the calling thread's namespace (a test's own, from
// enter_fresh_netns()): the rig of the TAP tests.
#pragma once

#include <memory>
#include <vector>

#include "emulator/route_netlink.h"
#include "emulator/tap_device.h"

namespace coemu_test {

// Opens each TAP, enslaves it to bridge "coebr0" and brings everything up.
// Returns the TAPs, or an empty vector (last_error() says why).
inline std::vector<std::unique_ptr<emulator::TapDevice>> bridged_taps(
    const std::vector<emulator::TapOptions>& taps) {
  std::vector<std::unique_ptr<emulator::TapDevice>> out;
  auto nl = emulator::RouteNetlink::open();
  if (!nl || !nl->add_bridge("coebr0")) return {};
  for (const auto& o : taps) {
    auto t = emulator::TapDevice::open(o);
    if (!t || !nl->enslave("coebr0", (*t)->name()) || !nl->set_up((*t)->name(), true)) return {};
    out.push_back(std::move(*t));
  }
  if (!nl->set_up("coebr0", true)) return {};
  return out;
}

}  // namespace coemu_test
