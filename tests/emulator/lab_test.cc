#include "emulator/lab.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "emulator/clock.h"
#include "emulator/route_netlink.h"
#include "emulator/tap_device.h"
#include "frames.h"
#include "net_test_util.h"

namespace emulator {
namespace {

using miniport::MacAddress;

// What the host looks like from outside: namespace names and links of the
// caller's namespace. A lab must leave both exactly as it found them. Labs of
// other tests running in parallel ("coe-" names with another prefix) are not
// this test's business and are left out.
struct Snapshot {
  std::vector<std::string> netns;
  std::set<std::string> links;
  int fds = 0;
  bool operator==(const Snapshot&) const = default;
};

void PrintTo(const Snapshot& s, std::ostream* os) {
  *os << "{netns:";
  for (const auto& n : s.netns) *os << " " << n;
  *os << "; links:";
  for (const auto& l : s.links) *os << " " << l;
  *os << "; fds: " << s.fds << "}";
}

Snapshot snapshot(const std::string& own_prefix) {
  Snapshot s;
  for (auto& n : Netns::list())
    if (!n.starts_with("coe-") || n.starts_with(own_prefix)) s.netns.push_back(n);
  if (auto nl = RouteNetlink::open(); nl) {
    if (auto ls = nl->list_links(); ls)
      for (const auto& l : *ls) s.links.insert(l.name);
  }
  s.fds = coemu_test::count_open_fds();
  return s;
}

class LabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    COEMU_REQUIRE(coemu_test::can_make_named_netns());
    // Unique per test process, so tests can run in parallel: "l" + 5 digits.
    name_ = "l" + std::to_string(::getpid() % 100000);
    opts_.state_dir = (std::filesystem::temp_directory_path() / ("coemu-lab-" + name_)).string();
    spec_ = LabSpec{.name = name_, .nodes = {"a", "b", "c"}, .links = {{"a", "b"}, {"b", "c"}}};
    before_ = snapshot(prefix());
  }
  void TearDown() override {
    if (name_.empty()) return;
    (void)Lab::down(name_, opts_);  // whatever a failed assertion left
    std::filesystem::remove_all(opts_.state_dir);
  }
  std::string prefix() const { return "coe-" + name_ + "-"; }
  bool state_file_exists() const { return std::filesystem::exists(opts_.state_dir + "/" + name_ + ".json"); }

  std::string name_;
  LabOptions opts_;
  LabSpec spec_;
  Snapshot before_;
};

TEST_F(LabTest, ThreeNodesCarryFramesEndToEndAndLeaveNothing) {
  {
    auto lab = Lab::up(spec_, opts_);
    ASSERT_TRUE(lab.has_value()) << last_error();
    EXPECT_TRUE(state_file_exists());
    auto names = Netns::list();
    for (const auto& n : (*lab)->nodes())
      EXPECT_NE(std::find(names.begin(), names.end(), n.netns), names.end()) << n.netns;
    EXPECT_EQ(snapshot(prefix()).links, before_.links) << "nothing is created in the caller's namespace";

    // a and c are two bridges apart: a frame from a's TAP must reach c's.
    auto ns_a = Netns::open((*lab)->node("a")->netns);
    auto ns_c = Netns::open((*lab)->node("c")->netns);
    ASSERT_TRUE(ns_a && ns_c);
    auto ta = TapDevice::open({.name = (*lab)->node("a")->tap, .netns = &*ns_a, .attach = true});
    auto tc = TapDevice::open({.name = (*lab)->node("c")->tap, .netns = &*ns_c, .attach = true});
    ASSERT_TRUE(ta.has_value()) << last_error();
    ASSERT_TRUE(tc.has_value()) << last_error();
    auto f = coemu_test::make_frame(MacAddress::broadcast(), MacAddress::local(0xa), 77, 300);
    std::span<const uint8_t> fs(f);
    bool arrived = false;
    std::vector<uint8_t> buf((*tc)->mtu() + 14);
    const auto deadline = steady_now() + std::chrono::seconds(5);
    // Resend until it arrives: the veths may still be coming up.
    while (!arrived && steady_now() < deadline) {
      ASSERT_EQ(*(*ta)->send_burst(std::span(&fs, 1)), 1u);
      (void)(*tc)->wait_readable(std::chrono::milliseconds(100));
      RxFrame slot{{buf.data(), buf.size()}};
      while (*(*tc)->recv_burst(std::span(&slot, 1)) == 1) {
        std::span<const uint8_t> got(buf.data(), slot.len);
        if (coemu_test::is_test_frame(got) && coemu_test::frame_intact(got, 300)) arrived = true;
      }
    }
    EXPECT_TRUE(arrived) << "frame from node a did not reach node c";
  }  // TAP fds close, then the Lab destructor takes it all down
  EXPECT_FALSE(state_file_exists());
  EXPECT_EQ(snapshot(prefix()), before_);
}

TEST_F(LabTest, FailureAtEveryStepRollsBackEverything) {
  // 3 nodes x (namespace, bridge, TAP) + 2 links x veth = 11 steps.
  for (int step = 0; step < 11; ++step) {
    LabOptions o = opts_;
    o.fail_at_step = step;
    auto lab = Lab::up(spec_, o);
    ASSERT_FALSE(lab.has_value()) << "step " << step;
    EXPECT_EQ(lab.error(), Status::kFailure);
    EXPECT_NE(last_error().find("injected failure at step " + std::to_string(step)), std::string::npos)
        << last_error();
    EXPECT_FALSE(state_file_exists()) << "step " << step;
    EXPECT_EQ(snapshot(prefix()), before_) << "leftovers after a failure at step " << step;
  }
  LabOptions o = opts_;
  o.fail_at_step = 11;  // past the last step: the lab comes up
  auto lab = Lab::up(spec_, o);
  EXPECT_TRUE(lab.has_value()) << last_error();
}

TEST_F(LabTest, DownAfterTheOwnerIsKilledCleansUp) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto lab = Lab::up(spec_, opts_);
    char c = lab ? 1 : 0;
    if (::write(ready[1], &c, 1) != 1) ::_exit(4);
    for (;;) ::pause();  // killed here, lab up, no destructor runs
  }
  ::close(ready[1]);
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ASSERT_EQ(c, 1) << "the child could not bring the lab up";
  EXPECT_TRUE(state_file_exists());
  EXPECT_NE(snapshot(prefix()).netns, before_.netns) << "the killed owner's lab is still there";

  ASSERT_TRUE(Lab::down(name_, opts_)) << last_error();
  EXPECT_FALSE(state_file_exists());
  EXPECT_EQ(snapshot(prefix()), before_);
  EXPECT_TRUE(Lab::down(name_, opts_)) << "down is idempotent";
}

TEST_F(LabTest, DownWithoutStateFileFindsTheLabByPrefix) {
  auto lab = Lab::up(spec_, opts_);
  ASSERT_TRUE(lab.has_value()) << last_error();
  (*lab)->release();
  std::filesystem::remove((*lab)->state_file());
  lab->reset();
  ASSERT_TRUE(Lab::down(name_, opts_)) << last_error();
  EXPECT_EQ(snapshot(prefix()), before_);
}

TEST_F(LabTest, SecondLabOfTheSameNameIsRefused) {
  auto lab = Lab::up(spec_, opts_);
  ASSERT_TRUE(lab.has_value()) << last_error();
  auto again = Lab::up(spec_, opts_);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error(), Status::kNotAccepted);
  EXPECT_NE(last_error().find("coemu lab down " + name_), std::string::npos) << last_error();
  EXPECT_EQ(Lab::list(opts_), std::vector<std::string>{name_});
}

TEST(LabSpec, BadSpecsAreRefusedWithTheReason) {
  struct Case {
    LabSpec spec;
    const char* mentions;
  } cases[] = {
      {{.name = "toolongname", .nodes = {"a"}}, "lab name"},
      {{.name = "x", .nodes = {}}, "no nodes"},
      {{.name = "x", .nodes = {"a", "a"}}, "listed twice"},
      {{.name = "x", .nodes = {"A"}}, "node name 'A'"},
      {{.name = "x", .nodes = {"a", "b"}, .links = {{"a", "z"}}}, "no node 'z'"},
      {{.name = "x", .nodes = {"a"}, .links = {{"a", "a"}}}, "itself"},
      {{.name = "x", .nodes = {"a", "b", "c"}, .links = {{"a", "b"}, {"b", "c"}, {"c", "a"}}}, "loop"},
      {{.name = "x", .nodes = {"a", "b"}, .links = {{"a", "b"}, {"b", "a"}}}, "loop"},
      {{.name = "x", .nodes = {"a"}, .mtu = 20}, "MTU"},
  };
  for (const auto& c : cases) {
    auto r = Lab::validate(c.spec);
    ASSERT_FALSE(r.has_value()) << c.mentions;
    EXPECT_EQ(r.error(), Status::kInvalidData);
    EXPECT_NE(last_error().find(c.mentions), std::string::npos) << last_error();
  }
}

}  // namespace
}  // namespace emulator
