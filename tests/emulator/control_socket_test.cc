#include "emulator/control_socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

namespace {

using emulator::ControlSocket;
using miniport::Status;
namespace fs = std::filesystem;

// A directory of its own for each test, removed at the end.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("coemu-ctl-" + std::to_string(::getpid()) + "-" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::remove_all(path); }
  ~TempDir() { fs::remove_all(path); }
};

TEST(ControlSocket, AnswersEachRequestLineAndIsOnlyForItsOwner) {
  TempDir d;
  const std::string path = (d.path / "sub" / "n.sock").string();
  auto cs = ControlSocket::open(path, [](const std::string& r) { return "you said " + r; });
  ASSERT_TRUE(cs.has_value()) << emulator::last_error();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "only root or the owner";
  for (int i = 0; i < 3; ++i) {
    auto a = ControlSocket::ask(path, "snapshot " + std::to_string(i), std::chrono::seconds(5));
    ASSERT_TRUE(a.has_value()) << emulator::last_error();
    EXPECT_EQ(*a, "you said snapshot " + std::to_string(i));
  }
  EXPECT_EQ((*cs)->answered(), 3u);
  EXPECT_EQ((*cs)->refused(), 0u);
  // A second node cannot take a path a live node answers on.
  auto twin = ControlSocket::open(path, [](const std::string&) { return std::string(); });
  ASSERT_FALSE(twin.has_value());
  EXPECT_EQ(twin.error(), Status::kNotAccepted);
  cs->reset();
  EXPECT_FALSE(fs::exists(path)) << "the socket file goes with its node";
  auto gone = ControlSocket::ask(path, "snapshot", std::chrono::seconds(1));
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error(), Status::kAdapterRemoved);
  EXPECT_NE(emulator::last_error().find(path), std::string::npos) << emulator::last_error();
}

TEST(ControlSocket, ReplacesTheSocketOfADeadNode) {
  TempDir d;
  fs::create_directories(d.path);
  const std::string path = (d.path / "n.sock").string();
  // What a killed node leaves: a bound socket file nobody listens on.
  {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ::close(fd);
  }
  ASSERT_TRUE(fs::exists(path));
  auto live = ControlSocket::open(path, [](const std::string&) { return std::string("new"); });
  ASSERT_TRUE(live.has_value()) << emulator::last_error();
  auto a = ControlSocket::ask(path, "snapshot", std::chrono::seconds(5));
  ASSERT_TRUE(a.has_value()) << emulator::last_error();
  EXPECT_EQ(*a, "new");
}

}  // namespace
