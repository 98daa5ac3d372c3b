#include "cm/neighbors.h"

#include <gtest/gtest.h>

namespace cm {
namespace {

using std::chrono::milliseconds;

const MacAddress kMe = MacAddress::local(0xa);
const MacAddress kB = MacAddress::local(0xb);
const MacAddress kC = MacAddress::local(0xc);

Hello hello(const std::string& addr) {
  Hello h;
  h.node_address = {reinterpret_cast<const uint8_t*>(addr.data()), addr.size()};
  h.mtu = 1500;
  return h;
}

TEST(Neighbors, HelloAddsAPeerThatLookupFinds) {
  NeighborTable t("alpha", kMe, 1);
  std::vector<NeighborEvent> ev;
  const std::string beta = "beta";
  t.on_hello(kB, 0xB, hello(beta), Time(0), ev);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, NeighborEventKind::kUp);
  EXPECT_EQ(t.lookup("beta"), kB);
  EXPECT_FALSE(t.lookup("gamma"));
  ASSERT_NE(t.by_mac(kB), nullptr);
  EXPECT_EQ(*t.by_mac(kB)->mtu, 1500);
  ev.clear();
  t.on_hello(kB, 0xB, hello(beta), Time(milliseconds(1000)), ev);
  EXPECT_TRUE(ev.empty()) << "a repeated HELLO changes nothing";
}

TEST(Neighbors, UnheardForTheDeadIntervalGoesDown) {
  NeighborTable t("alpha", kMe, 1);
  std::vector<NeighborEvent> ev;
  const std::string beta = "beta";
  t.on_hello(kB, 0xB, hello(beta), Time(0), ev);
  t.hello_sent(Time(0));
  ev.clear();
  EXPECT_EQ(t.next_deadline(), Time(milliseconds(1000))) << "our next HELLO comes first";
  t.hello_sent(Time(milliseconds(3000)));
  EXPECT_EQ(t.next_deadline(), Time(milliseconds(3500)));
  t.on_timer(Time(milliseconds(3499)), ev);
  EXPECT_TRUE(ev.empty());
  t.on_timer(Time(milliseconds(3500)), ev);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, NeighborEventKind::kDown);
  EXPECT_EQ(ev[0].address, "beta");
  EXPECT_FALSE(t.lookup("beta"));
}

TEST(Neighbors, AnyFrameFromAPeerKeepsItAlive) {
  NeighborTable t("alpha", kMe, 1);
  std::vector<NeighborEvent> ev;
  const std::string beta = "beta";
  t.on_hello(kB, 0xB, hello(beta), Time(0), ev);
  t.heard(kB, Time(milliseconds(3000)));
  t.heard(kC, Time(milliseconds(3000)));  // unknown: ignored
  ev.clear();
  t.on_timer(Time(milliseconds(3500)), ev);
  EXPECT_TRUE(ev.empty());
  t.on_timer(Time(milliseconds(6500)), ev);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, NeighborEventKind::kDown);
}

TEST(Neighbors, NewIncarnationMeansRestarted) {
  NeighborTable t("alpha", kMe, 1);
  std::vector<NeighborEvent> ev;
  const std::string beta = "beta";
  t.on_hello(kB, 0xB1, hello(beta), Time(0), ev);
  ev.clear();
  t.on_hello(kB, 0xB2, hello(beta), Time(1), ev);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, NeighborEventKind::kRestarted);
  EXPECT_EQ(t.by_mac(kB)->incarnation, 0xB2u);
}

TEST(Neighbors, DuplicateAddressIsReportedAndTheFirstHolderKeepsIt) {
  NeighborTable t("alpha", kMe, 1);
  std::vector<NeighborEvent> ev;
  const std::string beta = "beta", alpha = "alpha";
  t.on_hello(kB, 0xB, hello(beta), Time(0), ev);
  ev.clear();
  t.on_hello(kC, 0xC, hello(beta), Time(1), ev);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, NeighborEventKind::kDuplicateAddress);
  EXPECT_EQ(ev[0].mac, kC);
  EXPECT_EQ(ev[0].other, kB);
  EXPECT_EQ(t.lookup("beta"), kB);
  ev.clear();
  // Someone else claims our own address: reported here (and, symmetrically,
  // by that node when it hears our HELLO).
  t.on_hello(kC, 0xC, hello(alpha), Time(2), ev);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].kind, NeighborEventKind::kDuplicateAddress);
  EXPECT_EQ(ev[0].other, kMe);
  EXPECT_EQ(t.duplicates_seen(), 2u);
}

TEST(Neighbors, BothNodesReportADuplicateOfEachOthersAddress) {
  NeighborTable x("same", kB, 1), y("same", kC, 2);
  std::vector<NeighborEvent> ex, ey;
  x.on_hello(kC, 2, y.hello(), Time(0), ex);
  y.on_hello(kB, 1, x.hello(), Time(0), ey);
  ASSERT_EQ(ex.size(), 1u);
  ASSERT_EQ(ey.size(), 1u);
  EXPECT_EQ(ex[0].kind, NeighborEventKind::kDuplicateAddress);
  EXPECT_EQ(ey[0].kind, NeighborEventKind::kDuplicateAddress);
}

TEST(Neighbors, OurHelloRoundTripsThroughTheCodec) {
  NeighborTable t("lab1.r2", kMe, 1, {.mtu = 9000, .link_speed = 10'000'000'000});
  EXPECT_TRUE(t.hello_due(Time(0)));
  std::vector<uint8_t> out(64);
  auto n = encode_hello(t.hello(), out);
  ASSERT_TRUE(n.has_value());
  auto h = decode_hello(std::span(out).first(*n));
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(std::string(h->node_address.begin(), h->node_address.end()), "lab1.r2");
  EXPECT_EQ(*h->mtu, 9000);
  t.hello_sent(Time(0));
  EXPECT_FALSE(t.hello_due(Time(milliseconds(999))));
  EXPECT_TRUE(t.hello_due(Time(milliseconds(1000))));
}

}  // namespace
}  // namespace cm
