#include "emulator/netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace emulator {

namespace {
constexpr const char* kRunDir = "/run/netns";

bool valid_name(const std::string& n) {
  return !n.empty() && n.size() <= 64 && n != "." && n != ".." &&
         n.find('/') == std::string::npos;
}

// As iproute2's netns_add: /run/netns must be a shared mount so that names made
// here show up in every mount namespace (and in `ip netns list`).
Result<void> prepare_run_dir() {
  if (::mkdir(kRunDir, 0755) != 0 && errno != EEXIST)
    return miniport::fail(record_errno("mkdir /run/netns", errno));
  // Two processes making their first namespace at once would both see "not a
  // mount point" and stack two bind mounts; a lock on the directory orders them.
  auto dir = COEMU_TRY(UniqueFd::open(kRunDir, O_RDONLY | O_DIRECTORY));
  if (::flock(dir.get(), LOCK_EX) != 0) return miniport::fail(record_errno("flock /run/netns", errno));
  bool bound = false;
  while (::mount("", kRunDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    if (errno != EINVAL || bound) return miniport::fail(record_errno("mount --make-shared /run/netns", errno));
    if (::mount(kRunDir, kRunDir, "none", MS_BIND | MS_REC, nullptr) != 0)
      return miniport::fail(record_errno("mount --bind /run/netns", errno));
    bound = true;
  }
  return {};
}
}  // namespace

Result<Netns> Netns::current() {
  auto fd = COEMU_TRY(UniqueFd::open("/proc/thread-self/ns/net", O_RDONLY));
  return Netns(std::move(fd), "");
}

Result<Netns> Netns::open(std::string_view spec) {
  std::string path;
  std::string name;
  if (spec.starts_with("pid:")) {
    path = "/proc/" + std::string(spec.substr(4)) + "/ns/net";
  } else if (spec.find('/') != std::string_view::npos) {
    path = std::string(spec);
  } else {
    name = std::string(spec);
    if (!valid_name(name)) {
      set_last_error("bad network namespace name '" + name + "'");
      return miniport::fail(Status::kInvalidData);
    }
    path = std::string(kRunDir) + "/" + name;
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    record_errno("network namespace " + std::string(spec), e);
    return miniport::fail(e == ENOENT ? Status::kInvalidAddress : Status::kFailure);
  }
  return Netns(UniqueFd(fd), name);
}

Result<Netns> Netns::create(const std::string& name) {
  if (!valid_name(name)) {
    set_last_error("bad network namespace name '" + name + "'");
    return miniport::fail(Status::kInvalidData);
  }
  COEMU_TRY(prepare_run_dir());
  const std::string path = std::string(kRunDir) + "/" + name;
  int f = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (f < 0) {
    int e = errno;
    record_errno("create " + path, e);
    return miniport::fail(e == EEXIST ? Status::kNotAccepted : Status::kFailure);
  }
  ::close(f);
  // unshare() on a throwaway thread: the new namespace is bound to the name
  // and the caller's threads stay where they are.
  auto made = on_fresh_thread([&]() -> Result<void> {
    if (::unshare(CLONE_NEWNET) != 0) return miniport::fail(record_errno("unshare(CLONE_NEWNET)", errno));
    if (::mount("/proc/thread-self/ns/net", path.c_str(), "none", MS_BIND, nullptr) != 0)
      return miniport::fail(record_errno("bind-mount " + path, errno));
    return {};
  });
  if (!made) {
    const std::string err = last_error();
    ::unlink(path.c_str());
    set_last_error(err);
    return miniport::fail(made.error());
  }
  return open(name);
}

Result<Netns> Netns::create_anonymous() {
  return on_fresh_thread([]() -> Result<Netns> {
    if (::unshare(CLONE_NEWNET) != 0) return miniport::fail(record_errno("unshare(CLONE_NEWNET)", errno));
    return current();
  });
}

Result<void> Netns::remove(const std::string& name) {
  if (!valid_name(name)) {
    set_last_error("bad network namespace name '" + name + "'");
    return miniport::fail(Status::kInvalidData);
  }
  const std::string path = std::string(kRunDir) + "/" + name;
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
    return miniport::fail(record_errno("umount " + path, errno));
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return miniport::fail(record_errno("unlink " + path, errno));
  return {};
}

std::vector<std::string> Netns::list() {
  std::vector<std::string> out;
  DIR* d = ::opendir(kRunDir);
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t Netns::inode() const noexcept {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return 0;
  return st.st_ino;
}

Result<void> enter(const Netns& ns) {
  if (::setns(ns.fd(), CLONE_NEWNET) != 0) return miniport::fail(record_errno("setns", errno));
  return {};
}

}  // namespace emulator
