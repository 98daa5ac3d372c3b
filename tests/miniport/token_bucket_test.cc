// The VC shaper's token bucket on an explicit clock.
#include "miniport/token_bucket.h"

#include <gtest/gtest.h>

namespace miniport {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(TokenBucket, StartsFullAndTakesUpToItsDepth) {
  TokenBucket tb(1'000'000, 3000, Time{0});
  EXPECT_TRUE(tb.take(1500, Time{0}));
  EXPECT_TRUE(tb.take(1500, Time{0}));
  EXPECT_FALSE(tb.take(1, Time{0})) << "empty";
}

TEST(TokenBucket, RefillsAtTheTokenRateAndSaysWhenExactly) {
  TokenBucket tb(1'000'000, 1500, Time{0});  // 1 byte per microsecond
  ASSERT_TRUE(tb.take(1500, Time{0}));
  EXPECT_EQ(tb.ready_at(1000, Time{0}), Time{0} + microseconds(1000));
  EXPECT_FALSE(tb.take(1000, Time{0} + microseconds(999)));
  EXPECT_TRUE(tb.take(1000, Time{0} + microseconds(1000)));
  EXPECT_EQ(tb.ready_at(0, Time{0} + microseconds(1000)), Time{0} + microseconds(1000));
}

// Over a long run the bytes taken match rate * time plus one bucket.
TEST(TokenBucket, LongRunRateIsTheTokenRate) {
  const uint64_t rate = 12'500'000;  // 100 Mbit/s
  TokenBucket tb(rate, 9000, Time{0});
  Time now{0};
  uint64_t sent = 0;
  while (now < seconds(2)) {
    if (tb.take(1500, now)) sent += 1500;
    else now = tb.ready_at(1500, now);
  }
  const double expected = static_cast<double>(rate) * 2 + 9000;
  EXPECT_NEAR(static_cast<double>(sent), expected, 1500);
}

TEST(TokenBucket, IdleTimeFillsNoMoreThanTheBucket) {
  TokenBucket tb(1000, 2000, Time{0});
  ASSERT_TRUE(tb.take(2000, Time{0}));
  const Time later = Time{0} + seconds(3600);
  EXPECT_TRUE(tb.take(2000, later));
  EXPECT_FALSE(tb.take(1, later)) << "an hour idle is still one bucket";
}

TEST(TokenBucket, AFrameLargerThanTheBucketGoesWhenTheBucketIsFull) {
  TokenBucket tb(1'000'000, 1000, Time{0});
  EXPECT_TRUE(tb.take(5000, Time{0})) << "full bucket: the big frame goes";
  EXPECT_FALSE(tb.take(5000, Time{0} + microseconds(500)));
  EXPECT_EQ(tb.ready_at(5000, Time{0} + microseconds(500)), Time{0} + microseconds(1000));
}

TEST(TokenBucket, NewParametersKeepTheTokensUpToTheNewDepth) {
  TokenBucket tb(1'000'000, 3000, Time{0});
  ASSERT_TRUE(tb.take(1000, Time{0}));  // 2000 left
  tb.reset(2'000'000, 1500, Time{0});
  EXPECT_EQ(tb.bucket(), 1500u);
  EXPECT_EQ(tb.rate(), 2'000'000u);
  EXPECT_TRUE(tb.take(1500, Time{0}));
  EXPECT_FALSE(tb.take(1, Time{0}));
  EXPECT_EQ(tb.ready_at(1000, Time{0}), Time{0} + microseconds(500)) << "at the new rate";
}

}  // namespace
}  // namespace miniport
