#include "cm/address_family.h"

#include <gtest/gtest.h>

namespace cm {
namespace {

TEST(AddressFamily, R8SecondRegistrationOfOneAfFails) {
  AddressFamilies afs({});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  EXPECT_EQ(afs.register_af(kCoemuAf).error(), Status::kFailure);
  EXPECT_TRUE(afs.register_af(kCoemuAf + 1)) << "several AFs per binding";
}

TEST(AddressFamily, R10ClientsBindingLaterSeeTheSameAfs) {
  AddressFamilies afs({});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  EXPECT_EQ(afs.registered(), std::vector<uint32_t>{kCoemuAf});
}

TEST(AddressFamily, R11EachOpenGetsItsOwnHandle) {
  AddressFamilies afs({});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  auto a = afs.open(1, kCoemuAf), b = afs.open(2, kCoemuAf);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(a->pending);
  EXPECT_NE(a->id, b->id);
  EXPECT_TRUE(afs.usable(a->id));
  EXPECT_EQ(afs.client(b->id), 2u);
  EXPECT_EQ(afs.open(1, 0x1234).error(), Status::kFailure) << "an AF nobody registered";
}

TEST(AddressFamily, R12PendedOpenCompletesOnceAndAFailedOneLeavesNothing) {
  AddressFamilies afs({.open_pends = true});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  auto a = afs.open(1, kCoemuAf);
  ASSERT_TRUE(a && a->pending);
  EXPECT_FALSE(afs.usable(a->id)) << "no requests before the completion";
  EXPECT_EQ(afs.close(a->id).error(), Status::kFailure);
  ASSERT_TRUE(afs.complete_open(a->id, Status::kSuccess));
  EXPECT_TRUE(afs.usable(a->id));
  EXPECT_EQ(afs.complete_open(a->id, Status::kSuccess).error(), Status::kFailure) << "exactly once";
  auto b = afs.open(2, kCoemuAf);
  ASSERT_TRUE(afs.complete_open(b->id, Status::kResources));
  EXPECT_FALSE(afs.usable(b->id));
  EXPECT_EQ(afs.opens(), 1u);
}

TEST(AddressFamily, R15CloseOfAnIdleOpenFinishesAtOnceAndASecondFails) {
  AddressFamilies afs({});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  auto a = afs.open(1, kCoemuAf);
  auto c = afs.close(a->id);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->pending);
  EXPECT_EQ(afs.close(a->id).error(), Status::kFailure);
  EXPECT_EQ(afs.opens(), 0u);
}

TEST(AddressFamily, R14R15CloseWithSapsOrVcsLeftFailsAndChangesNothing) {
  AddressFamilies afs({});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  AfOpenId id = afs.open(1, kCoemuAf)->id;
  afs.add(id, Held::kSap);
  EXPECT_EQ(afs.close(id).error(), Status::kFailure) << "deregister the SAP first";
  EXPECT_TRUE(afs.usable(id));
  afs.remove(id, Held::kSap);
  afs.add(id, Held::kVc);
  EXPECT_EQ(afs.close(id).error(), Status::kFailure) << "delete the VC first";
  afs.remove(id, Held::kVc);
  EXPECT_TRUE(afs.close(id));
}

TEST(AddressFamily, R15CloseWhileCallsRemainPendsUntilTheyAreGone) {
  AddressFamilies afs({});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  AfOpenId id = afs.open(1, kCoemuAf)->id;
  afs.add(id, Held::kCall);
  afs.add(id, Held::kCall);
  auto c = afs.close(id);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->pending);
  EXPECT_FALSE(afs.usable(id)) << "the client's handle is dead the moment it closes";
  EXPECT_EQ(afs.close(id).error(), Status::kFailure) << "second close";
  int done = 0;
  afs.poll_closes([&](AfOpenId, uint64_t) { ++done; });
  EXPECT_EQ(done, 0);
  afs.remove(id, Held::kCall);
  afs.poll_closes([&](AfOpenId, uint64_t) { ++done; });
  EXPECT_EQ(done, 0) << "a call remains";
  afs.remove(id, Held::kCall);
  afs.poll_closes([&](AfOpenId d, uint64_t) {
    ++done;
    EXPECT_EQ(d, id);
  });
  EXPECT_EQ(done, 1);
  EXPECT_EQ(afs.opens(), 0u);
}

TEST(AddressFamily, R15RefusingPolicyAnswersNotAcceptedAndChangesNothing) {
  AddressFamilies afs({.refuse_busy_close = true});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  AfOpenId id = afs.open(1, kCoemuAf)->id;
  afs.add(id, Held::kCall);
  EXPECT_EQ(afs.close(id).error(), Status::kNotAccepted);
  EXPECT_TRUE(afs.usable(id));
  afs.remove(id, Held::kCall);
  EXPECT_TRUE(afs.close(id));
}

TEST(AddressFamily, R16CmInitiatedCloseNotifiesEveryOpenAndRefusesNewOnes) {
  AddressFamilies afs({});
  ASSERT_TRUE(afs.register_af(kCoemuAf));
  AfOpenId a = afs.open(1, kCoemuAf)->id;
  AfOpenId b = afs.open(2, kCoemuAf)->id;
  auto notify = afs.begin_cm_close();
  EXPECT_EQ(notify.size(), 2u);
  EXPECT_EQ(afs.open(3, kCoemuAf).error(), Status::kFailure);
  // R17: the clients close from their notify handlers; nobody blocks.
  EXPECT_TRUE(afs.usable(a)) << "usable while the notify is pending";
  EXPECT_TRUE(afs.close(a));
  EXPECT_TRUE(afs.close(b));
  EXPECT_EQ(afs.opens(), 0u);
}

}  // namespace
}  // namespace cm
