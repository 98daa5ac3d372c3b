// libFuzzer target for the Ethernet and DATA codec (PROTOCOL.md sections 1
// and 2): whatever the bytes, decoding reads only inside them, and a DATA
// frame it accepts re-encodes to a frame that decodes to the same VCI and
// payload.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "miniport/frame.h"

using namespace miniport;

namespace {

bool inside(std::span<const uint8_t> part, std::span<const uint8_t> whole) {
  return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void check_data(std::span<const uint8_t> in, const MacAddress& dst, const MacAddress& src) {
  auto d = decode_data(in);
  if (!d) return;
  if (d->vci == 0 || !inside(d->payload, in)) std::abort();
  std::vector<uint8_t> out(kEthHeaderLen + kDataHeaderLen + d->payload.size() + kMinEthFrame);
  auto n = encode_data_frame(dst, src, d->vci, d->payload, out);
  if (!n || *n < kMinEthFrame) std::abort();
  const std::span<const uint8_t> frame = std::span(out).first(*n);
  auto eth = decode_eth(frame);
  if (!eth || eth->ether_type != kEtherTypeData || !(eth->dst == dst) || !(eth->src == src)) std::abort();
  auto again = decode_data(frame.subspan(kEthHeaderLen));
  if (!again || again->vci != d->vci || again->payload.size() != d->payload.size() ||
      (!d->payload.empty() && std::memcmp(again->payload.data(), d->payload.data(), d->payload.size()) != 0))
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  if (auto eth = decode_eth(in)) {
    check_data(in.subspan(kEthHeaderLen), eth->dst, eth->src);
  } else if (size >= kEthHeaderLen) {
    std::abort();  // 14 bytes are always an Ethernet header
  }
  // The same bytes as a bare DATA header (the frame after its Ethernet one).
  check_data(in, MacAddress::local(1), MacAddress::local(2));
  return 0;
}
