#include "miniport/status.h"

#include <gtest/gtest.h>

namespace miniport {
namespace {

TEST(Status, ValuesAreNdisValues) {
  EXPECT_EQ(static_cast<uint32_t>(Status::kSuccess), 0u);
  EXPECT_EQ(static_cast<uint32_t>(Status::kPending), 0x103u);
  EXPECT_EQ(static_cast<uint32_t>(Status::kResources), 0xC000009Au);
  EXPECT_EQ(static_cast<uint32_t>(Status::kSapInUse), 0xC0010021u);
  EXPECT_EQ(static_cast<uint32_t>(Status::kVcNotActivated), 0xC0010023u);
  EXPECT_EQ(static_cast<uint32_t>(Status::kNotAccepted), 0x00010003u);
}

TEST(Status, ToStringNamesEveryEnumerator) {
  EXPECT_EQ(to_string(Status::kInvalidData), "INVALID_DATA");
  EXPECT_EQ(to_string(Status::kIncompatableQos), "INCOMPATABLE_QOS");
  EXPECT_EQ(to_string(Status::kSuccess), "SUCCESS");
  EXPECT_EQ(to_string(static_cast<Status>(0x12345678)), "UNKNOWN");
}

TEST(Status, FatalSplitsReleaseFromDrop) {
  EXPECT_FALSE(is_fatal(Status::kInvalidLength));
  EXPECT_FALSE(is_fatal(Status::kInvalidData));
  EXPECT_TRUE(is_fatal(Status::kFailure));
  EXPECT_TRUE(is_fatal(Status::kDestOutOfOrder));
}

Result<int> half(int x) {
  if (x % 2) return fail(Status::kInvalidData);
  return x / 2;
}

Result<int> quarter(int x) {
  int h = COEMU_TRY(half(x));
  return COEMU_TRY(half(h));
}

Result<void> check_even(int x) {
  COEMU_TRY(half(x));
  return {};
}

TEST(Status, TryPropagatesErrorsAndValues) {
  EXPECT_EQ(*quarter(8), 2);
  ASSERT_FALSE(quarter(6).has_value());
  EXPECT_EQ(quarter(6).error(), Status::kInvalidData);
  EXPECT_TRUE(check_even(4).has_value());
  EXPECT_EQ(check_even(3).error(), Status::kInvalidData);
}

}  // namespace
}  // namespace miniport
