#include "miniport/miniport.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "miniport/byte_order.h"
#include "miniport/packet_pool.h"

namespace miniport {
namespace {

const MacAddress kMe = MacAddress::local(0xa);
const MacAddress kPeer = MacAddress::local(0xb);

std::vector<uint8_t> data_from_peer(uint32_t vci, size_t payload) {
  std::vector<uint8_t> f(std::max(kFrameHeaders + payload, kMinEthFrame), 0x33);
  std::vector<uint8_t> p(payload, 0x33);
  EXPECT_TRUE(encode_data_frame(kMe, kPeer, vci, p, f).has_value());
  return f;
}

uint64_t le(std::span<const uint8_t> b) {
  uint64_t v = 0;
  for (size_t i = b.size(); i-- > 0;) v = v << 8 | b[i];
  return v;
}

class MiniportTest : public ::testing::Test {
 protected:
  Miniport mp{{.mac = kMe, .mtu = 1500}};
  VcId open_vc(uint32_t tx_vci = 900) {
    VcId vc = *mp.vcs().create(1);
    EXPECT_TRUE(mp.vcs().activate(vc, {.peer = kPeer, .tx_vci = tx_vci}));
    return vc;
  }
};

TEST_F(MiniportTest, DemuxSortsEveryFrameIntoExactlyOneCounter) {
  VcId vc = open_vc();
  const uint32_t label = mp.vcs().rx_vci(vc);
  auto good = data_from_peer(label, 100);
  RxVerdict v = mp.classify(good);
  ASSERT_EQ(v.kind, RxKind::kData);
  EXPECT_EQ(v.payload_off, kFrameHeaders);
  EXPECT_EQ(v.payload_len, 100);
  mp.rx_handed_over(v);
  mp.vcs().rx_returned(v.hit.id);

  std::vector<uint8_t> sig(60, 0xff);  // broadcast, as HELLO is
  store_be16(&sig[12], kEtherTypeSig);
  EXPECT_EQ(mp.classify(sig).kind, RxKind::kSig);
  auto not_for_us = sig;
  std::copy(kPeer.bytes.begin(), kPeer.bytes.end(), not_for_us.begin());  // unicast to another node
  EXPECT_EQ(mp.classify(not_for_us).kind, RxKind::kDrop);
  std::vector<uint8_t> ipv6(60, 0);
  std::copy(kMe.bytes.begin(), kMe.bytes.end(), ipv6.begin());
  store_be16(&ipv6[12], 0x86DD);
  EXPECT_EQ(mp.classify(ipv6).kind, RxKind::kDrop);
  EXPECT_EQ(mp.classify(std::vector<uint8_t>(10)).kind, RxKind::kDrop);  // runt
  auto truncated = good;
  truncated.resize(30);
  EXPECT_EQ(mp.classify(truncated).kind, RxKind::kDrop);
  EXPECT_EQ(mp.classify(data_from_peer(label + 1, 10)).kind, RxKind::kDrop);
  auto zero = data_from_peer(5, 10);
  store_be32(&zero[14], 0);
  EXPECT_EQ(mp.classify(zero).kind, RxKind::kDrop);
  auto foreign = good;
  foreign[11] = 0xee;  // another source MAC
  EXPECT_EQ(mp.classify(foreign).kind, RxKind::kDrop);

  const auto& c = mp.counters();
  EXPECT_EQ(c.rx_data, 1u);
  EXPECT_EQ(c.rx_sig, 1u);
  EXPECT_EQ(c.rx_not_ours, 2u);
  EXPECT_EQ(c.rx_malformed, 1u);
  EXPECT_EQ(c.rx_unknown_vci, 1u);
  EXPECT_EQ(c.rx_bad_vci, 1u);
  EXPECT_EQ(c.rx_foreign, 1u);
  EXPECT_EQ(c.rx_not_for_us, 1u);
  EXPECT_EQ(c.rx_frames, 9u);
  EXPECT_EQ(c.rx_frames, c.rx_data + c.rx_sig + c.rx_not_ours + c.rx_not_for_us + c.rx_malformed +
                             c.rx_unknown_vci + c.rx_bad_vci + c.rx_foreign + c.rx_not_activated + c.rx_ring_full +
                             c.rx_pool_empty);
}

TEST_F(MiniportTest, R72SendOnInactiveVcNeverReachesTheWire) {
  VcId vc = *mp.vcs().create(1);
  std::vector<uint8_t> buf(2048);
  auto r = mp.frame_tx(vc, buf, 10);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status::kVcNotActivated);
  EXPECT_EQ(mp.counters().tx_not_activated, 1u);
  EXPECT_EQ(mp.counters().tx_outstanding, 0);
}

TEST_F(MiniportTest, FramesSendsWithThePeersLabelAndChecksSize) {
  VcId vc = open_vc(0x00300009);
  std::vector<uint8_t> buf(2048);
  std::fill(buf.begin() + kFrameHeaders, buf.begin() + kFrameHeaders + 1492, 0x5a);
  auto n = mp.frame_tx(vc, buf, 1492);
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 1514u);
  auto eth = decode_eth(buf);
  EXPECT_EQ(eth->dst, kPeer);
  EXPECT_EQ(eth->src, kMe);
  auto d = decode_data(std::span(buf).subspan(kEthHeaderLen, *n - kEthHeaderLen));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->vci, 0x00300009u);
  EXPECT_EQ(d->payload.size(), 1492u);
  mp.complete_tx(vc, *n, true);
  EXPECT_EQ(mp.frame_tx(vc, buf, 1493).error(), Status::kInvalidLength) << "MTU 1500 - 8";
  EXPECT_EQ(mp.counters().tx_too_long, 1u);
  EXPECT_EQ(mp.counters().tx_outstanding, 0);
  EXPECT_EQ(mp.vcs().counters(vc).tx_frames, 1u);
}

TEST_F(MiniportTest, R82SixtyFourBitStatisticsFollowTheBufferSize) {
  VcId vc = open_vc();
  std::vector<uint8_t> buf(2048);
  for (int i = 0; i < 3; ++i) {
    size_t n = *mp.frame_tx(vc, buf, 100);
    mp.complete_tx(vc, n, true);
  }
  uint8_t out[8];
  auto r = mp.query(oid::kXmitPdusOk, std::nullopt, out);
  EXPECT_EQ(r.status, Status::kSuccess);
  EXPECT_EQ(r.bytes_written, 8u);
  EXPECT_EQ(le({out, 8}), 3u);
  r = mp.query(oid::kBytesXmit, std::nullopt, std::span(out, 6));
  EXPECT_EQ(r.status, Status::kSuccess);
  EXPECT_EQ(r.bytes_written, 4u);
  EXPECT_EQ(r.bytes_needed, 8u);
  EXPECT_EQ(le({out, 4}), 300u);
  r = mp.query(oid::kRcvPdusOk, std::nullopt, std::span(out, 3));
  EXPECT_EQ(r.status, Status::kInvalidLength);
  EXPECT_EQ(r.bytes_written, 0u);
  EXPECT_EQ(r.bytes_needed, 8u);
  // A 32-bit statistic.
  r = mp.query(oid::kXmitPdusError, std::nullopt, std::span(out, 4));
  EXPECT_EQ(r.status, Status::kSuccess);
  EXPECT_EQ(r.bytes_written, 4u);
  r = mp.query(oid::kXmitPdusError, std::nullopt, std::span(out, 2));
  EXPECT_EQ(r.status, Status::kInvalidLength);
  EXPECT_EQ(r.bytes_needed, 4u);
}

TEST_F(MiniportTest, R80PerVcStatisticsAndUnknownOids) {
  VcId a = open_vc(), b = open_vc();
  std::vector<uint8_t> buf(2048);
  size_t n = *mp.frame_tx(a, buf, 10);
  mp.complete_tx(a, n, true);
  uint8_t out[8];
  ASSERT_EQ(mp.query(oid::kXmitPdusOk, a, out).status, Status::kSuccess);
  EXPECT_EQ(le({out, 8}), 1u);
  ASSERT_EQ(mp.query(oid::kXmitPdusOk, b, out).status, Status::kSuccess);
  EXPECT_EQ(le({out, 8}), 0u);
  EXPECT_EQ(mp.query(oid::kRcvCrcError, a, out).status, Status::kNotSupported);
  EXPECT_EQ(mp.query(0x00ABCDEF, std::nullopt, out).status, Status::kInvalidOid);
  EXPECT_EQ(mp.query(oid::kXmitPdusOk, VcId{12345, 0}, out).status, Status::kInvalidData);
}

TEST_F(MiniportTest, R85CarrierChangesBecomeLinkStateIndications) {
  auto up = mp.on_carrier(true);
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->code, Indication::kLinkState);
  EXPECT_TRUE(up->link_up);
  EXPECT_EQ(up->speed_bps, 10'000'000'000u);
  EXPECT_FALSE(mp.on_carrier(true).has_value()) << "no change, no indication";
  uint8_t out[8];
  ASSERT_EQ(mp.query(oid::kMediaConnectStatus, std::nullopt, out).status, Status::kSuccess);
  EXPECT_EQ(le({out, 4}), 0u) << "NdisMediaStateConnected";
  auto down = mp.on_carrier(false);
  ASSERT_TRUE(down.has_value());
  EXPECT_FALSE(down->link_up);
  ASSERT_EQ(mp.query(oid::kMediaConnectStatus, std::nullopt, out).status, Status::kSuccess);
  EXPECT_EQ(le({out, 4}), 1u);
  ASSERT_EQ(mp.query(oid::kLinkSpeed, std::nullopt, out).status, Status::kSuccess);
  EXPECT_EQ(le({out, 4}), 100'000'000u) << "10 Gbit/s in 100 bit/s units";
}

TEST_F(MiniportTest, R84ReceiveLossesOnAVcAreIndicatedForThatVcOncePerEpisode) {
  VcId a = open_vc(), b = open_vc();
  auto lose = [&](VcId vc) {
    RxVerdict v = mp.classify(data_from_peer(mp.vcs().rx_vci(vc), 50));
    EXPECT_EQ(v.kind, RxKind::kData);
    return mp.rx_drop_after_lookup(v, /*pool_empty=*/true);
  };
  auto first = lose(a);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->code, Indication::kVcReceiveError);
  EXPECT_EQ(static_cast<uint32_t>(first->code), 0x40010015u) << "NDIS_STATUS_WAN_CO_FRAGMENT";
  EXPECT_EQ(first->vc, a);
  EXPECT_EQ(first->errors, vc_error::kBufferOverrun);
  EXPECT_EQ(first->dropped, 1u);
  EXPECT_FALSE(lose(a).has_value()) << "one indication until the last one was delivered";
  EXPECT_FALSE(lose(a).has_value());
  auto other = lose(b);
  ASSERT_TRUE(other.has_value()) << "each VC has its own";
  EXPECT_EQ(other->vc, b);

  mp.vcs().rearm_status(a);
  auto again = lose(a);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->dropped, 4u) << "the VC's losses so far";
  EXPECT_EQ(mp.counters().rx_pool_empty, 5u);

  // A deleted VC's stale handle does not re-arm the slot's next VC.
  ASSERT_TRUE(mp.vcs().deactivate(b));
  mp.vcs().poll_deactivations([](VcId) {});
  ASSERT_TRUE(mp.vcs().remove(b));
  VcId c = open_vc();
  ASSERT_EQ(c.slot, b.slot);
  EXPECT_TRUE(lose(c).has_value()) << "a new VC starts armed";
  mp.vcs().rearm_status(b);
  EXPECT_FALSE(lose(c).has_value());
}

}  // namespace
}  // namespace miniport
