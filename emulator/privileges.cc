#include "emulator/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "emulator/unique_fd.h"

namespace emulator {

namespace {
volatile sig_atomic_t g_child = 0;

void pass_on(int sig) {
  if (g_child > 0) ::kill(static_cast<pid_t>(g_child), sig);
}
}  // namespace

miniport::Result<UserIds> lookup_user(const std::string& name) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  const int e = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (e != 0 || found == nullptr) {
    set_last_error("no such user '" + name + "'");
    return miniport::fail(Status::kInvalidData);
  }
  if (pw.pw_uid == 0) {
    set_last_error("'" + name + "' is root: nothing would be dropped");
    return miniport::fail(Status::kInvalidData);
  }
  return UserIds{name, pw.pw_uid, pw.pw_gid};
}

miniport::Result<void> watch_from_root(const std::function<void()>& cleanup) {
  std::fflush(nullptr);  // or what stdio holds would be written twice
  const pid_t child = ::fork();
  if (child < 0) return miniport::fail(record_errno("fork", errno));
  if (child == 0) return {};
  g_child = child;
  struct sigaction sa {};
  sa.sa_handler = pass_on;
  ::sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  cleanup();
  std::_Exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
}

miniport::Result<void> drop_privileges(const UserIds& who) {
  auto failed = [&](const char* step) {
    set_last_error(std::string("cannot become ") + who.name + ": " + step + " failed");
    return miniport::fail(Status::kFailure);
  };
  // glibc applies each set*id call to every thread of the process.
  if (::setgroups(1, &who.gid) != 0) return failed("setgroups");
  if (::setresgid(who.gid, who.gid, who.gid) != 0) return failed("setresgid");
  if (::setresuid(who.uid, who.uid, who.uid) != 0) return failed("setresuid");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failed("PR_SET_NO_NEW_PRIVS");
  if (::setuid(0) == 0 || ::geteuid() == 0) return failed("the check that root is gone");
  return {};
}

}  // namespace emulator
