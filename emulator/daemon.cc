#include "emulator/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <iterator>
#include <thread>

#include "emulator/unique_fd.h"

extern char** environ;

namespace emulator {

Result<pid_t> spawn_daemon(const std::vector<std::string>& argv, const std::string& log) {
  if (argv.empty()) {
    set_last_error("spawn_daemon: no program");
    return miniport::fail(miniport::Status::kInvalidData);
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  // Its own session: a Ctrl-C in the shell that ran `lab up` does not reach it.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return miniport::fail(record_errno("spawn " + argv[0], rc));
  return pid;
}

bool daemon_alive(pid_t pid, const std::vector<std::string>& marks) {
  if (pid <= 1) return false;
  std::ifstream f("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  if (!f) return false;
  std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (cmd.empty()) return false;  // a zombie
  std::replace(cmd.begin(), cmd.end(), '\0', ' ');
  cmd = " " + cmd;
  return std::all_of(marks.begin(), marks.end(), [&](const std::string& m) { return cmd.find(" " + m + " ") != std::string::npos; });
}

void stop_daemon(pid_t pid, const std::vector<std::string>& marks, miniport::Duration grace) {
  if (!daemon_alive(pid, marks)) return;
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (daemon_alive(pid, marks)) {
    (void)::waitpid(pid, nullptr, WNOHANG);  // ours when this process started it
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      (void)::waitpid(pid, nullptr, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace emulator
