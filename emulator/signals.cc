#include "emulator/signals.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>

#include "emulator/unique_fd.h"

namespace emulator {

namespace {
std::atomic<int> g_fd{-1};
std::atomic<int> g_signal{0};
std::atomic<bool> g_graceful{false};
std::atomic<int> g_flushers{0};
std::atomic<int> g_flushed{0};
std::once_flag g_once;
bool g_ok = false;

[[noreturn]] void die_of_signal();

void on_signal(int sig) {
  int expected = 0;
  if (!g_signal.compare_exchange_strong(expected, sig)) {
    // A second signal means "now": the user no longer waits for a clean stop.
    die_of_signal();
  }
  int fd = g_fd.load(std::memory_order_relaxed);
  if (fd >= 0) {
    uint64_t one = 1;
    // async-signal-safe; a full counter (impossible here) just means "already woken".
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
  }
  // Nobody holds buffered data and nobody stops gracefully: die at once.
  if (!g_graceful.load() && g_flushers.load() == 0) die_of_signal();
}

[[noreturn]] void die_of_signal() {
  int sig = g_signal.load();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
  _exit(128 + sig);
}
}  // namespace

bool ShutdownSignals::install() noexcept {
  std::call_once(g_once, [] {
    int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
      record_errno("eventfd for signals", errno);
      return;
    }
    g_fd.store(fd);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGINT, &sa, nullptr) != 0 || sigaction(SIGTERM, &sa, nullptr) != 0) {
      record_errno("sigaction", errno);
      return;
    }
    g_ok = true;
  });
  return g_ok;
}

int ShutdownSignals::fd() noexcept { return g_fd.load(); }
bool ShutdownSignals::requested() noexcept { return g_signal.load() != 0; }
int ShutdownSignals::signal() noexcept { return g_signal.load(); }
void ShutdownSignals::set_graceful(bool graceful) noexcept { g_graceful.store(graceful); }
bool ShutdownSignals::graceful() noexcept { return g_graceful.load(); }
void ShutdownSignals::register_flusher() noexcept { g_flushers.fetch_add(1); }
void ShutdownSignals::unregister_flusher() noexcept { g_flushers.fetch_sub(1); }
void ShutdownSignals::flushed_after_signal() noexcept {
  // The last writer to flush carries out the signal's default action.
  if (g_flushed.fetch_add(1) + 1 >= g_flushers.load() && !g_graceful.load()) die_of_signal();
}

}  // namespace emulator
