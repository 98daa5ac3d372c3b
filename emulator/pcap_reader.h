// PcapReader: reads an Ethernet pcap file frame by frame, with nanosecond
// timestamps whatever precision the file was written with (for `coemu
// decode` and tests that check what a node recorded).
//
//   auto r = PcapReader::open("node-a.pcap");
//   while (auto f = (*r)->next()) use(f->ns, f->data);
//   if ((*r)->failed()) report(last_error());   // e.g. a truncated file
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "miniport/status.h"

namespace emulator {

using miniport::Result;

struct PcapFrame {
  int64_t ns = 0;                  // capture time, ns since the Unix epoch
  uint32_t wire_len = 0;           // length on the wire (data may be shorter: snaplen)
  std::span<const uint8_t> data;   // valid until the next call to next()
};

class PcapReader {
 public:
  // Errors: kFailure when libpcap cannot open or read the file (last_error()
  // has the path and libpcap's reason); kInvalidData when its link type is
  // not Ethernet (DLT_EN10MB).
  [[nodiscard]] static Result<std::unique_ptr<PcapReader>> open(const std::string& path);
  ~PcapReader();
  PcapReader(const PcapReader&) = delete;
  PcapReader& operator=(const PcapReader&) = delete;

  // The next frame, or nullopt at the end of the file or on a read error
  // (then failed() is true and last_error() says why).
  [[nodiscard]] std::optional<PcapFrame> next();
  [[nodiscard]] bool failed() const noexcept { return failed_; }

 private:
  struct Impl;
  explicit PcapReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  bool failed_ = false;
};

}  // namespace emulator
