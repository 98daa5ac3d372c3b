#include "cm/call_table.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <tuple>
#include <vector>

namespace cm {
namespace {

using miniport::MacAddress;

struct Item {
  MacAddress peer;
  uint32_t ref = 0;
  bool originated = false;
  uint16_t endpoint = 0;
  int payload = 0;
};

CallKey key(uint64_t mac, uint32_t ref, bool orig, uint16_t party = 0) {
  return CallKey{MacAddress::local(mac), ref, orig, party};
}
Item item(const CallKey& k, int payload) { return Item{k.peer, k.ref, k.originated, k.party, payload}; }

TEST(CallTable, FindsWhatWasPutAndForgetsWhatWasErased) {
  CallTable<Item> t;
  const CallKey a = key(1, 7, true), b = key(1, 7, false), c = key(2, 7, true);
  t.emplace(a, item(a, 1));
  t.emplace(b, item(b, 2));
  t.emplace(c, item(c, 3));
  ASSERT_NE(t.find(a), nullptr);
  EXPECT_EQ(t.find(a)->payload, 1);
  EXPECT_EQ(t.find(b)->payload, 2);  // the direction bit tells two calls apart
  EXPECT_EQ(t.find(c)->payload, 3);  // and so does the peer
  EXPECT_EQ(t.find(key(1, 8, true)), nullptr);
  EXPECT_TRUE(t.erase(b));
  EXPECT_FALSE(t.erase(b));
  EXPECT_EQ(t.find(b), nullptr);
  EXPECT_EQ(t.find(a)->payload, 1);
  EXPECT_EQ(t.size(), 2u);
}

TEST(CallTable, PartiesOfOneCallComeInEndpointOrder) {
  CallTable<Item> t;
  for (uint16_t e : {5, 1, 9, 3}) t.emplace(key(1, 4, true, e), item(key(1, 4, true, e), e));
  t.emplace(key(1, 5, true), item(key(1, 5, true), 100));  // another call: not a party of the first
  std::vector<uint16_t> seen;
  t.for_each_party(key(1, 4, true, 42), [&](const CallKey& k, Item& i) {
    EXPECT_EQ(k.party, i.endpoint);
    seen.push_back(k.party);
  });
  EXPECT_EQ(seen, (std::vector<uint16_t>{1, 3, 5, 9}));
  ASSERT_TRUE(t.erase(key(1, 4, true, 1)));  // the head goes: the next party takes its place
  seen.clear();
  t.for_each_party(key(1, 4, true), [&](const CallKey& k, Item&) { seen.push_back(k.party); });
  EXPECT_EQ(seen, (std::vector<uint16_t>{3, 5, 9}));
  EXPECT_EQ(t.find(key(1, 4, true, 9))->payload, 9);
  EXPECT_EQ(t.find(key(1, 4, true, 2)), nullptr);
}

TEST(CallTable, SlotsStayPutAndAreReused) {
  CallTable<Item> t;
  const CallKey a = key(3, 1, true), b = key(3, 2, true);
  const uint32_t sa = t.emplace(a, item(a, 1));
  Item* pa = t.find(a);
  for (uint32_t r = 10; r < 20000; ++r) t.emplace(key(3, r, true), item(key(3, r, true), 0));  // grows a lot
  EXPECT_EQ(t.find(a), pa);  // addresses are stable across growth
  EXPECT_EQ(t.find_slot(a), sa);
  EXPECT_EQ(t.at(sa), pa);
  ASSERT_TRUE(t.erase(a));
  EXPECT_EQ(t.at(sa), nullptr);
  EXPECT_EQ(t.emplace(b, item(b, 2)), sa);  // the freed slot is taken again
}

TEST(CallTable, EmptiesAndFillsAgainAfterACrowd) {
  CallTable<Item> t;
  for (int round = 0; round < 3; ++round) {
    for (uint32_t r = 0; r < 10000; ++r) t.emplace(key(4, r, true), item(key(4, r, true), static_cast<int>(r)));
    for (uint32_t r = 0; r < 10000; ++r) ASSERT_TRUE(t.erase(key(4, r, true)));
    EXPECT_EQ(t.size(), 0u);
    const CallKey one = key(4, 77, false);
    EXPECT_EQ(t.emplace(one, item(one, 5)), 0u) << "the first slot again, in the chunk that stayed";
    EXPECT_EQ(t.find(one)->payload, 5);
    ASSERT_TRUE(t.erase(one));
  }
}

// Random adds and removes against std::map: the index (linear probing with
// backward-shift deletion) never loses or invents a call.
TEST(CallTable, AgreesWithAMapUnderRandomChurn) {
  CallTable<Item> t;
  std::map<std::tuple<uint64_t, uint32_t, bool, uint16_t>, int> model;
  std::mt19937 rng(12345);
  for (int step = 0; step < 200000; ++step) {
    const uint64_t mac = rng() % 3;
    const uint32_t ref = rng() % 4000;
    const bool orig = rng() % 2;
    const uint16_t party = rng() % 8 == 0 ? static_cast<uint16_t>(rng() % 4) : 0;
    const CallKey k = key(mac, ref, orig, party);
    const auto mk = std::make_tuple(mac, ref, orig, party);
    if (rng() % 3 != 0) {
      if (model.contains(mk)) continue;
      t.emplace(k, item(k, step));
      model[mk] = step;
    } else {
      EXPECT_EQ(t.erase(k), model.erase(mk) == 1);
    }
    if (step % 1000 == 0) {
      ASSERT_EQ(t.size(), model.size());
      for (const auto& [m, v] : model) {
        const Item* i = t.find(key(std::get<0>(m), std::get<1>(m), std::get<2>(m), std::get<3>(m)));
        ASSERT_NE(i, nullptr) << "lost at step " << step;
        ASSERT_EQ(i->payload, v);
      }
      size_t n = 0;
      t.for_each([&](const CallKey&, const Item&) { ++n; });
      ASSERT_EQ(n, model.size());
    }
  }
}

TEST(SlotVector, PutFindEraseAndVisitInOrder) {
  SlotVector<int> v;
  EXPECT_EQ(v.find(5), nullptr);
  v.put(5000, 1);
  v.put(3, 2);
  v.put(3, 4);  // replaces
  EXPECT_EQ(*v.find(3), 4);
  EXPECT_EQ(v.size(), 2u);
  std::vector<uint32_t> order;
  v.for_each([&](uint32_t n, const int&) { order.push_back(n); });
  EXPECT_EQ(order, (std::vector<uint32_t>{3, 5000}));
  v.erase(3);
  EXPECT_EQ(v.find(3), nullptr);
  EXPECT_EQ(v.size(), 1u);
}

TEST(NameTable, SharesOneHandlePerNameUntilItsLastUserGoes) {
  NameTable n;
  const uint32_t a = n.acquire("beta");
  EXPECT_EQ(n.acquire("beta"), a);
  const uint32_t b = n.acquire("gamma");
  EXPECT_NE(a, b);
  EXPECT_EQ(n.name(a), "beta");
  n.release(a);
  EXPECT_EQ(n.name(a), "beta");  // one user left
  n.release(a);
  EXPECT_EQ(n.name(a), "");
  EXPECT_EQ(n.acquire("delta"), a);  // the handle is reused
  EXPECT_EQ(n.name(NameTable::kNone), "");
}

}  // namespace
}  // namespace cm
