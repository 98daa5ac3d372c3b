// SIGINT/SIGTERM as events: the handler only records the signal and wakes an
// eventfd, so threads (the pcap writer, a tool's main loop) can react safely.
//
//   ShutdownSignals::install();
//   poll on ShutdownSignals::fd(); if (ShutdownSignals::requested()) stop();
//
// A program that shuts down by itself on the signal calls set_graceful(true).
// Otherwise coemu keeps the usual meaning of the signal: the pcap writers flush
// what they hold and then the process dies of the signal, as it would have.
#pragma once

namespace emulator {

class ShutdownSignals {
 public:
  // Installs the handlers once per process; later calls do nothing. Returns
  // false when the eventfd or sigaction failed (last_error() says why).
  static bool install() noexcept;
  // The eventfd that turns readable on the first signal; -1 before install().
  static int fd() noexcept;
  // True once SIGINT or SIGTERM arrived; signal() is its number (0 before).
  static bool requested() noexcept;
  static int signal() noexcept;

  static void set_graceful(bool graceful) noexcept;
  static bool graceful() noexcept;

  // Flush-then-die bookkeeping for non-graceful programs: every writer that
  // holds buffered data registers; each reports once it flushed after the
  // signal, and the last one re-raises it. A second signal kills at once.
  static void register_flusher() noexcept;
  static void unregister_flusher() noexcept;
  static void flushed_after_signal() noexcept;
};

}  // namespace emulator
