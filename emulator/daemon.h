// Background processes a lab runs for its nodes (`coemu lab up` starts a
// `coemu listen` per node that asks for one; `coemu lab down` stops them).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "miniport/status.h"
#include "miniport/time.h"

namespace emulator {

using miniport::Result;

// Starts argv[0] with argv in a session of its own, stdin from /dev/null,
// stdout and stderr appended to `log`. Errors: kFailure (last_error()).
[[nodiscard]] Result<pid_t> spawn_daemon(const std::vector<std::string>& argv, const std::string& log);

// Whether pid runs and its command line holds every word of `marks` (so a
// recycled pid of another program is never taken for ours).
[[nodiscard]] bool daemon_alive(pid_t pid, const std::vector<std::string>& marks);

// Stops the daemon if daemon_alive(pid, marks): SIGTERM, then SIGKILL once
// `grace` has passed. Returns once it is gone (or was never ours).
void stop_daemon(pid_t pid, const std::vector<std::string>& marks, miniport::Duration grace);

}  // namespace emulator
