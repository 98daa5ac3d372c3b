#include "cm/sap_registry.h"

#include <gtest/gtest.h>

#include <string>

namespace cm {
namespace {

SapSpec selector(uint16_t s) { return {1, {static_cast<uint8_t>(s >> 8), static_cast<uint8_t>(s)}}; }
SapSpec service(const std::string& name) { return {2, std::vector<uint8_t>(name.begin(), name.end())}; }
SapSpec wildcard() { return {3, {}}; }
SapValue as_value(const SapSpec& s) { return {s.type, s.value}; }

TEST(SapRegistry, R20ClientsRegisterManySaps) {
  SapRegistry r;
  auto a = r.add(1, selector(42));
  auto b = r.add(1, service("echo"));
  auto c = r.add(2, wildcard());
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(r.size(), 3u);
  EXPECT_EQ(r.state(*a), SapState::kRegistering);
  EXPECT_EQ(r.client(*c), 2u);
}

TEST(SapRegistry, R21R26InUseIsSapInUseUnknownOrMalformedIsInvalidData) {
  SapRegistry r;
  ASSERT_TRUE(r.add(1, selector(42)));
  EXPECT_EQ(r.add(2, selector(42)).error(), Status::kSapInUse) << "another client holds it";
  EXPECT_EQ(r.add(1, selector(42)).error(), Status::kSapInUse) << "the same client twice";
  ASSERT_TRUE(r.add(1, wildcard()));
  EXPECT_EQ(r.add(2, wildcard()).error(), Status::kSapInUse) << "at most one wildcard per node";
  EXPECT_EQ(r.add(1, {9, {1}}).error(), Status::kInvalidData) << "unknown sap_type";
  EXPECT_EQ(r.add(1, selector(0)).error(), Status::kInvalidData);
  EXPECT_EQ(r.add(1, {1, {1}}).error(), Status::kInvalidData) << "a selector is two bytes";
  EXPECT_EQ(r.add(1, {2, {0xff}}).error(), Status::kInvalidData) << "not UTF-8";
  EXPECT_EQ(r.add(1, service(std::string(65, 'x'))).error(), Status::kInvalidData);
  EXPECT_EQ(r.add(1, {3, {1}}).error(), Status::kInvalidData) << "a wildcard has no value";
}

TEST(SapRegistry, R23CallsMayArriveWhileRegistrationIsPending) {
  SapRegistry r;
  SapId s = *r.add(1, service("echo"));
  ASSERT_EQ(r.state(s), SapState::kRegistering);
  EXPECT_EQ(r.find_for_call(as_value(service("echo"))), s);
  ASSERT_TRUE(r.complete(s));
  EXPECT_EQ(r.state(s), SapState::kRegistered);
  EXPECT_EQ(r.complete(s).error(), Status::kFailure) << "completes once";
}

TEST(SapRegistry, R24DeregisterKillsTheHandleAndASecondOneFails) {
  SapRegistry r;
  SapId s = *r.add(1, selector(7));
  ASSERT_TRUE(r.complete(s));
  ASSERT_TRUE(r.begin_remove(s));
  EXPECT_EQ(r.begin_remove(s).error(), Status::kFailure) << "redundant deregister";
  EXPECT_FALSE(r.find_for_call(as_value(selector(7)))) << "no new calls while deregistering";
  EXPECT_EQ(r.add(2, selector(7)).error(), Status::kSapInUse) << "still held until it is gone";
  ASSERT_TRUE(r.finish_remove(s));
  EXPECT_FALSE(r.state(s));
  EXPECT_EQ(r.begin_remove(s).error(), Status::kFailure) << "a dead handle";
  SapId again = *r.add(2, selector(7));
  EXPECT_EQ(again.slot, s.slot);
  EXPECT_NE(again.gen, s.gen) << "the old handle never reaches the new SAP";
  EXPECT_EQ(r.client(s), 0u);
}

TEST(SapRegistry, MatchingExactThenWildcard) {
  SapRegistry r;
  EXPECT_FALSE(r.find_for_call(as_value(selector(1)))) << "nothing registered: cause 88";
  SapId sel = *r.add(1, selector(1));
  SapId wild = *r.add(2, wildcard());
  EXPECT_EQ(r.find_for_call(as_value(selector(1))), sel);
  EXPECT_EQ(r.find_for_call(as_value(selector(2))), wild) << "no exact match: the wildcard";
  EXPECT_EQ(r.find_for_call(as_value(service("x"))), wild);
  const uint8_t odd[] = {1, 2, 3};
  EXPECT_EQ(r.find_for_call(SapValue{0x1234, odd}), wild) << "an unknown sap_type meets the wildcard";
  EXPECT_EQ(r.find_for_call(as_value(wildcard())), wild);
  ASSERT_TRUE(r.begin_remove(wild));
  EXPECT_FALSE(r.find_for_call(as_value(wildcard()))) << "WILDCARD in a SETUP matches only a wildcard";
  EXPECT_FALSE(r.find_for_call(SapValue{0x1234, odd}));
}

}  // namespace
}  // namespace cm
