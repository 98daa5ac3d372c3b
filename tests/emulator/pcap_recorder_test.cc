#include "emulator/pcap_recorder.h"

#include <gtest/gtest.h>
#include <pcap/pcap.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "emulator/mem_link.h"
#include "emulator/pcap_reader.h"
#include "frames.h"

namespace emulator {
namespace {

using coemu_test::frame_intact;
using coemu_test::frame_seq;
using coemu_test::make_frame;
using miniport::MacAddress;

struct Packet {
  int64_t ts_ns;
  uint32_t len;
  std::vector<uint8_t> bytes;
};

std::vector<Packet> read_pcap(const std::string& path) {
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err);
  EXPECT_NE(p, nullptr) << err;
  std::vector<Packet> out;
  if (!p) return out;
  EXPECT_EQ(pcap_datalink(p), DLT_EN10MB);
  pcap_pkthdr* h;
  const u_char* data;
  while (pcap_next_ex(p, &h, &data) == 1)
    out.push_back({int64_t{h->ts.tv_sec} * 1'000'000'000 + h->ts.tv_usec, h->len,
                   std::vector<uint8_t>(data, data + h->caplen)});
  pcap_close(p);
  return out;
}

class PcapRecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("coemu-pcap-" + std::to_string(::getpid()) + "-" +
                                                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const char* name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

TEST_F(PcapRecorderTest, RoundTripsFramesAndNanosecondStamps) {
  const std::string file = path("rt.pcap");
  {
    auto rec = PcapRecorder::open({.path = file, .flush_on_signals = false});
    ASSERT_TRUE(rec.has_value()) << last_error();
    for (uint32_t i = 0; i < 100; ++i) {
      auto f = make_frame(MacAddress::local(2), MacAddress::local(1), i, 60 + i * 14);
      ASSERT_TRUE((*rec)->record(f, miniport::Time(1'700'000'000'000'000'000 + i * 1001)));
    }
    (*rec)->sync();
    EXPECT_EQ((*rec)->counters().written, 100u);
    // sync() flushed: the file is complete while the recorder still runs.
    EXPECT_EQ(read_pcap(file).size(), 100u);
  }
  auto pkts = read_pcap(file);
  ASSERT_EQ(pkts.size(), 100u);
  for (uint32_t i = 0; i < 100; ++i) {
    EXPECT_EQ(pkts[i].ts_ns, 1'700'000'000'000'000'000 + i * 1001);
    EXPECT_EQ(pkts[i].len, 60 + i * 14);
    EXPECT_TRUE(frame_intact(pkts[i].bytes, 60 + i * 14));
    EXPECT_EQ(frame_seq(pkts[i].bytes), i);
  }
}

TEST_F(PcapRecorderTest, ManyThreadsRecordWithoutLosingAccount) {
  const std::string file = path("mt.pcap");
  uint64_t accepted = 0;
  {
    auto rec = PcapRecorder::open({.path = file, .slots = 1024, .flush_on_signals = false});
    ASSERT_TRUE(rec.has_value());
    std::atomic<uint64_t> ok{0};
    {
      std::vector<std::jthread> threads;
      for (uint32_t t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
          for (uint32_t i = 0; i < 5000; ++i)
            ok += (*rec)->record(make_frame(MacAddress::local(2), MacAddress::local(t), t << 16 | i, 64));
        });
    }
    (*rec)->sync();
    auto c = (*rec)->counters();
    EXPECT_EQ(c.recorded + c.dropped, 20000u) << "every frame is either recorded or counted as dropped";
    EXPECT_EQ(c.recorded, ok.load());
    EXPECT_EQ(c.written, c.recorded);
    accepted = c.recorded;
  }
  auto pkts = read_pcap(file);
  EXPECT_EQ(pkts.size(), accepted);
  for (const auto& p : pkts) EXPECT_TRUE(frame_intact(p.bytes, 64));
}

TEST_F(PcapRecorderTest, LongFramesAreCutToSnaplenWithTrueLength) {
  const std::string file = path("snap.pcap");
  {
    auto rec = PcapRecorder::open({.path = file, .snaplen = 128, .flush_on_signals = false});
    ASSERT_TRUE(rec.has_value());
    (*rec)->record(make_frame(MacAddress::local(2), MacAddress::local(1), 7, 1000));
    (*rec)->sync();
    EXPECT_EQ((*rec)->counters().truncated, 1u);
  }
  auto pkts = read_pcap(file);
  ASSERT_EQ(pkts.size(), 1u);
  EXPECT_EQ(pkts[0].len, 1000u);
  EXPECT_EQ(pkts[0].bytes.size(), 128u);
}

TEST_F(PcapRecorderTest, BadOptionsFailWithAReason) {
  auto r = PcapRecorder::open({.path = path("no/such/dir/x.pcap"), .flush_on_signals = false});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), Status::kFailure);
  EXPECT_NE(last_error().find("no/such/dir"), std::string::npos) << last_error();
  EXPECT_EQ(PcapRecorder::open({.path = path("x.pcap"), .snaplen = 10}).error(), Status::kInvalidData);
  EXPECT_EQ(PcapRecorder::open({.path = ""}).error(), Status::kInvalidData);
}

TEST_F(PcapRecorderTest, LinkRecordsWhatItSendsAndReceives) {
  const std::string file = path("link.pcap");
  {
    auto rec = PcapRecorder::open({.path = file, .flush_on_signals = false});
    ASSERT_TRUE(rec.has_value());
    auto pair = MemLink::make_pair({});
    ASSERT_TRUE(pair.has_value());
    auto& [a, b] = *pair;
    a->set_recorder(rec->get());
    auto f = make_frame(MacAddress::local(2), MacAddress::local(1), 1, 100);
    auto g = make_frame(MacAddress::local(1), MacAddress::local(2), 2, 200);
    std::span<const uint8_t> fs(f), gs(g);
    ASSERT_EQ(*a->send_burst(std::span(&fs, 1)), 1u);
    ASSERT_EQ(*b->send_burst(std::span(&gs, 1)), 1u);
    std::vector<uint8_t> buf(2048);
    RxFrame slot{{buf.data(), buf.size()}};
    ASSERT_TRUE(*a->wait_readable(std::chrono::seconds(5)));
    ASSERT_EQ(*a->recv_burst(std::span(&slot, 1)), 1u);
    (*rec)->sync();
  }
  auto pkts = read_pcap(file);
  ASSERT_EQ(pkts.size(), 2u);
  EXPECT_EQ(frame_seq(pkts[0].bytes), 1u);  // sent by a
  EXPECT_EQ(frame_seq(pkts[1].bytes), 2u);  // received by a
}

TEST_F(PcapRecorderTest, TcpdumpAndTsharkReadTheFile) {
  const std::string file = path("tools.pcap");
  {
    auto rec = PcapRecorder::open({.path = file, .flush_on_signals = false});
    ASSERT_TRUE(rec.has_value());
    for (uint32_t i = 0; i < 25; ++i) (*rec)->record(make_frame(MacAddress::local(2), MacAddress::local(1), i, 80));
  }
  auto lines = [](const std::string& cmd) {
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return -1;
    int n = 0;
    char buf[512];
    while (std::fgets(buf, sizeof buf, p)) ++n;
    return ::pclose(p) == 0 ? n : -1;
  };
  // tcpdump prints one header line per frame of an EtherType it does not
  // know, followed by a hex dump; count the header lines.
  EXPECT_EQ(lines("tcpdump -nn -e -r " + file + " 2>/dev/null | grep '02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype Unknown (0x88b6), length 80'"), 25);
  EXPECT_EQ(lines("tshark -n -r " + file + " -Y 'eth.type == 0x88b6 && frame.len == 80' 2>/dev/null"), 25);
}

// SIGTERM on a program that does not stop gracefully: the recorder flushes,
// then the process dies of the signal, and no recorded frame is lost.
TEST_F(PcapRecorderTest, SigtermFlushesThenDies) {
  const std::string file = path("sig.pcap");
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // An hour between timed flushes: only the signal can flush these frames.
    auto rec = PcapRecorder::open({.path = file, .flush_interval = std::chrono::hours(1)});
    if (!rec) ::_exit(3);
    for (uint32_t i = 0; i < 300; ++i) (*rec)->record(make_frame(MacAddress::local(2), MacAddress::local(1), i, 200));
    while ((*rec)->counters().written < 300) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    char c = 1;
    if (::write(ready[1], &c, 1) != 1) ::_exit(4);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  EXPECT_LT(read_pcap(file).size(), 300u) << "frames should still sit in the stdio buffer";
  ::kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "status " << status;
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  auto pkts = read_pcap(file);
  ASSERT_EQ(pkts.size(), 300u);
  EXPECT_EQ(frame_seq(pkts.back().bytes), 299u);
}

}  // namespace
}  // namespace emulator

namespace emulator {
namespace {

std::vector<uint8_t> numbered_frame(uint8_t n) {
  std::vector<uint8_t> f(60, 0);
  f[12] = 0x88, f[13] = 0xB6, f[20] = n;
  return f;
}

// A lab node's capture gathers the frames of every command run as that node;
// PcapReader reads them back in order, and says so when a file is cut short.
TEST_F(PcapRecorderTest, AppendsToACaptureAndTheReaderReadsItBack) {
  const std::string file = path("lab.pcap");
  for (uint8_t run = 0; run < 2; ++run) {
    auto rec = emulator::PcapRecorder::open({.path = file, .flush_on_signals = false, .append = true});
    ASSERT_TRUE(rec.has_value()) << emulator::last_error();
    for (uint8_t i = 0; i < 3; ++i) ASSERT_TRUE((*rec)->record(numbered_frame(static_cast<uint8_t>(run * 3 + i))));
  }
  auto r = emulator::PcapReader::open(file);
  ASSERT_TRUE(r.has_value()) << emulator::last_error();
  std::vector<uint8_t> seen;
  int64_t last_ns = 0;
  while (auto f = (*r)->next()) {
    ASSERT_EQ(f->data.size(), 60u);
    seen.push_back(f->data[20]);
    EXPECT_GE(f->ns, last_ns);
    last_ns = f->ns;
  }
  EXPECT_FALSE((*r)->failed());
  EXPECT_EQ(seen, (std::vector<uint8_t>{0, 1, 2, 3, 4, 5}));

  // Without append, a new capture starts.
  { auto rec = emulator::PcapRecorder::open({.path = file, .flush_on_signals = false}); }
  EXPECT_TRUE(read_pcap(file).empty());

  // Cut short in the middle of a frame: the reader stops and says where.
  {
    auto rec = emulator::PcapRecorder::open({.path = file, .flush_on_signals = false});
    for (uint8_t i = 0; i < 3; ++i) ASSERT_TRUE((*rec)->record(numbered_frame(i)));
  }
  std::filesystem::resize_file(file, std::filesystem::file_size(file) - 30);
  auto cut = emulator::PcapReader::open(file);
  ASSERT_TRUE(cut.has_value());
  int frames = 0;
  while ((*cut)->next()) ++frames;
  EXPECT_EQ(frames, 2);
  EXPECT_TRUE((*cut)->failed());
  EXPECT_NE(emulator::last_error().find("lab.pcap"), std::string::npos) << emulator::last_error();
  std::ofstream(path("text.pcap")) << "not a capture\n";
  EXPECT_FALSE(emulator::PcapReader::open(path("text.pcap")).has_value());
}

}  // namespace
}  // namespace emulator
