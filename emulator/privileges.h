// Giving up root: a node started as root (for its namespace, TAP and netlink
// configuration) runs on as an ordinary user, with the TAP handed to that
// user (TapDevice::set_owner) and a root watcher process that tidies up what
// the user may not (its control socket file in /run/coemu).
//
//   auto who = lookup_user("nobody");              // before anything else
//   watch_from_root([&] { unlink(sock); });        // returns in the child only
//   ... set up as root, start the node ...
//   drop_privileges(*who);                         // every thread becomes `who`
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "miniport/status.h"

namespace emulator {

struct UserIds {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Errors: kInvalidData (last_error() says so) for a user this system does
// not know, or root itself (nothing would be dropped).
[[nodiscard]] miniport::Result<UserIds> lookup_user(const std::string& name);

// Forks. The child returns and goes on; the parent stays root, passes
// SIGINT, SIGTERM and SIGHUP on to the child, and when the child has ended
// runs `cleanup` and exits with the child's status (it never returns).
// Call it before any thread starts. Errors: kResources when fork fails.
[[nodiscard]] miniport::Result<void> watch_from_root(const std::function<void()>& cleanup);

// Becomes `who` for good, in every thread: supplementary groups, gid, uid
// (which clears every capability), and no_new_privs. Checks that root cannot
// be regained. Errors: kFailure (last_error() names the step).
[[nodiscard]] miniport::Result<void> drop_privileges(const UserIds& who);

}  // namespace emulator
