#include "emulator/pcap_reader.h"

#include <pcap/pcap.h>

#include "emulator/unique_fd.h"

namespace emulator {

struct PcapReader::Impl {
  pcap_t* p = nullptr;
  std::string path;
  ~Impl() { pcap_close(p); }
};

PcapReader::PcapReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PcapReader::~PcapReader() = default;

Result<std::unique_ptr<PcapReader>> PcapReader::open(const std::string& path) {
  char err[PCAP_ERRBUF_SIZE] = {};
  // Asking for nanoseconds makes libpcap scale microsecond files up.
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  if (p == nullptr) {
    const std::string e = err;  // libpcap names the file in some messages, not all
    set_last_error(e.find(path) != std::string::npos ? e : path + ": " + e);
    return miniport::fail(miniport::Status::kFailure);
  }
  if (pcap_datalink(p) != DLT_EN10MB) {
    set_last_error(path + ": link type " + pcap_datalink_val_to_name(pcap_datalink(p)) +
                   ", not Ethernet (EN10MB)");
    pcap_close(p);
    return miniport::fail(miniport::Status::kInvalidData);
  }
  auto impl = std::make_unique<Impl>();
  impl->p = p;
  impl->path = path;
  return std::unique_ptr<PcapReader>(new PcapReader(std::move(impl)));
}

std::optional<PcapFrame> PcapReader::next() {
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  const int rc = pcap_next_ex(impl_->p, &h, &data);
  if (rc == 1) {
    const int64_t ns = static_cast<int64_t>(h->ts.tv_sec) * 1'000'000'000 + h->ts.tv_usec;  // tv_usec holds ns
    return PcapFrame{ns, h->len, std::span<const uint8_t>(data, h->caplen)};
  }
  if (rc == PCAP_ERROR) {
    failed_ = true;
    set_last_error(impl_->path + ": " + pcap_geterr(impl_->p));
  }
  return std::nullopt;
}

}  // namespace emulator
