// PcapRecorder: writes every frame a node sends and receives to a nanosecond
// pcap file (DLT_EN10MB) that tcpdump, tshark and Wireshark read.
//
//   auto rec = PcapRecorder::open({.path = "node-a.pcap"});
//   (*rec)->record(frame);      // from any thread; never blocks
//   (*rec)->sync();             // wait until all recorded frames are on disk
//
// How it stays off the data path: record() copies the frame into a bounded,
// lock-free multi-producer ring (a Vyukov queue with a sequence number per
// slot) and returns; one writer thread owns the libpcap dumper, drains the ring,
// and flushes every flush_interval, on shutdown and on SIGINT/SIGTERM. When the
// ring is full the frame is not recorded and `dropped` counts it: the data path
// is never slowed to wait for the disk. Frames longer than snaplen are stored
// truncated with their true length, as tcpdump -s does.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "emulator/unique_fd.h"
#include "miniport/time.h"

namespace emulator {

struct PcapOptions {
  std::string path;              // file to write ("-" = stdout)
  uint32_t snaplen = 2048;       // bytes kept of each frame (MTU 1500 + header fits)
  uint32_t slots = 4096;         // ring capacity in frames; rounded up to a power of two
  miniport::Duration flush_interval = std::chrono::milliseconds(100);
  bool flush_on_signals = true;  // install SIGINT/SIGTERM handlers (see signals.h)
  // Add to an existing capture (a lab node's, written by one command after
  // another) instead of starting it anew; its snaplen and precision must match.
  bool append = false;
};

struct PcapCounters {
  uint64_t recorded = 0;   // frames accepted by record()
  uint64_t written = 0;    // frames handed to libpcap
  uint64_t dropped = 0;    // frames refused because the ring was full
  uint64_t truncated = 0;  // frames cut to snaplen
  uint64_t flushes = 0;
};

class PcapRecorder {
 public:
  // Opens (creates or truncates) the file and starts the writer thread.
  // Errors: kInvalidData for snaplen < 64 or slots 0; kFailure when libpcap
  // cannot open the file (last_error() has libpcap's text); kResources when the
  // thread or eventfd cannot be made.
  [[nodiscard]] static Result<std::unique_ptr<PcapRecorder>> open(const PcapOptions& opts);
  // Drains the ring, flushes, closes the file and joins the writer.
  ~PcapRecorder();
  PcapRecorder(const PcapRecorder&) = delete;
  PcapRecorder& operator=(const PcapRecorder&) = delete;

  // Records one frame stamped with the wall clock now. Thread-safe, lock-free,
  // no allocation, no syscall. False when the ring is full (counted).
  bool record(std::span<const uint8_t> frame) noexcept;
  // Same with an explicit wall-clock stamp (ns since the Unix epoch).
  bool record(std::span<const uint8_t> frame, miniport::Time wall) noexcept;

  // Blocks until every frame recorded before the call is written and flushed
  // to the file.
  void sync();

  [[nodiscard]] PcapCounters counters() const noexcept;
  [[nodiscard]] const std::string& path() const noexcept { return opts_.path; }

 private:
  struct alignas(64) Slot {  // one per cache line: producers and the writer never share one
    std::atomic<uint64_t> seq;
    uint32_t len;
    uint32_t caplen;
    int64_t wall_ns;
  };
  struct Dumper;

  explicit PcapRecorder(const PcapOptions& opts);
  void run() noexcept;
  size_t drain() noexcept;
  void flush() noexcept;

  PcapOptions opts_;
  uint64_t mask_ = 0;
  std::unique_ptr<Slot[]> slots_;
  std::vector<uint8_t> data_;  // slots * snaplen bytes, slot i at i * snaplen
  std::unique_ptr<Dumper> dumper_;
  UniqueFd wake_;

  alignas(64) std::atomic<uint64_t> enqueue_pos_{0};
  alignas(64) uint64_t dequeue_pos_ = 0;  // writer thread only
  alignas(64) std::atomic<uint64_t> recorded_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> truncated_{0};
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> flushed_upto_{0};  // `written_` as of the last flush
  std::atomic<uint64_t> flushes_{0};
  std::atomic<uint64_t> sync_requests_{0};
  std::atomic<bool> stop_{false};
  bool signal_handled_ = false;
  std::jthread writer_;
};

}  // namespace emulator
