#include "miniport/frame.h"

#include <gtest/gtest.h>

#include <vector>

namespace miniport {
namespace {

const MacAddress kDst = *MacAddress::parse("02:00:00:00:00:0b");
const MacAddress kSrc = *MacAddress::parse("02:00:00:00:00:0a");

// A DATA frame for VCI 0x00100005 with payload "hi!", padded to 60 bytes.
const std::vector<uint8_t> kGolden = {
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0b,  // dst
    0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,  // src
    0x88, 0xb6,                          // EtherType DATA
    0x00, 0x10, 0x00, 0x05,              // vci
    0x00, 0x03,                          // len
    0x00, 0x00,                          // flags
    'h',  'i',  '!',                     // payload
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,  // padding
};

TEST(Frame, EncodesGoldenBytesWithPadding) {
  ASSERT_EQ(kGolden.size(), 60u);
  std::vector<uint8_t> out(100, 0xee);
  const uint8_t payload[] = {'h', 'i', '!'};
  auto n = encode_data_frame(kDst, kSrc, 0x00100005, payload, out);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 60u);
  EXPECT_EQ(std::vector<uint8_t>(out.begin(), out.begin() + 60), kGolden);
}

TEST(Frame, DecodesGoldenBytesIgnoringPadding) {
  auto eth = decode_eth(kGolden);
  ASSERT_TRUE(eth.has_value());
  EXPECT_EQ(eth->dst, kDst);
  EXPECT_EQ(eth->src, kSrc);
  EXPECT_EQ(eth->ether_type, kEtherTypeData);
  auto d = decode_data(std::span(kGolden).subspan(kEthHeaderLen));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->vci, 0x00100005u);
  EXPECT_EQ(d->flags, 0);
  ASSERT_EQ(d->payload.size(), 3u);
  EXPECT_EQ(d->payload[0], 'h');
  EXPECT_EQ(d->payload.data(), kGolden.data() + 22) << "payload views the input";
}

TEST(Frame, EveryTruncatedPrefixIsRefused) {
  // The DATA part of the golden frame without padding is 11 bytes; every
  // shorter prefix must fail with INVALID_LENGTH and read nothing past it.
  std::span<const uint8_t> data = std::span(kGolden).subspan(kEthHeaderLen, 11);
  for (size_t n = 0; n < data.size(); ++n) {
    std::vector<uint8_t> prefix(data.begin(), data.begin() + n);  // exact-size heap copy: ASan sees overreads
    auto d = decode_data(prefix);
    ASSERT_FALSE(d.has_value()) << n;
    EXPECT_EQ(d.error(), Status::kInvalidLength) << n;
  }
  EXPECT_TRUE(decode_data(std::vector<uint8_t>(data.begin(), data.end())).has_value());
  for (size_t n = 0; n < kEthHeaderLen; ++n)
    EXPECT_EQ(decode_eth(std::vector<uint8_t>(kGolden.begin(), kGolden.begin() + n)).error(), Status::kInvalidLength);
}

TEST(Frame, LengthPastTheEndAndVciZeroAreRefused) {
  std::vector<uint8_t> d = {0, 0, 0, 7, 0xff, 0xff, 0, 0, 1, 2, 3};
  EXPECT_EQ(decode_data(d).error(), Status::kInvalidLength);
  std::vector<uint8_t> zero = {0, 0, 0, 0, 0, 1, 0, 0, 9};
  EXPECT_EQ(decode_data(zero).error(), Status::kInvalidData);
  std::vector<uint8_t> flags = {0, 0, 0, 7, 0, 1, 0xab, 0xcd, 9};
  auto f = decode_data(flags);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->flags, 0xabcd) << "reserved flags are carried, not refused";
}

TEST(Frame, EncoderChecksItsInputs) {
  std::vector<uint8_t> out(100);
  const uint8_t p[] = {1};
  EXPECT_EQ(encode_data_frame(kDst, kSrc, 0, p, out).error(), Status::kInvalidData);
  std::vector<uint8_t> small(59);
  EXPECT_EQ(encode_data_frame(kDst, kSrc, 5, p, small).error(), Status::kBufferTooShort);
  EXPECT_EQ(encode_data_header(kDst, kSrc, 5, 70000, out).error(), Status::kInvalidLength);
  std::vector<uint8_t> big(14 + 8 + 1500);
  std::vector<uint8_t> payload(1500, 0x42);
  auto n = encode_data_frame(kDst, kSrc, 5, payload, big);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, big.size()) << "no padding past 60 bytes";
  auto d = decode_data(std::span(big).subspan(kEthHeaderLen));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->payload.size(), 1500u);
  EXPECT_EQ(d->payload[1499], 0x42);
}

}  // namespace
}  // namespace miniport
