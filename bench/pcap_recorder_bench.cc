// What recording costs the data path. Each pair runs the same loop with and
// without a PcapRecorder attached; the *_Baseline case is the reference.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <vector>

#include "emulator/mem_link.h"
#include "emulator/pcap_recorder.h"

namespace {

using emulator::MemLink;
using emulator::PcapRecorder;
using emulator::RxFrame;

std::string tmp_pcap(const char* tag) {
  return (std::filesystem::temp_directory_path() / ("coemu-bench-" + std::to_string(::getpid()) + tag + ".pcap"))
      .string();
}

// One frame sent and received over a MemLink, optionally recorded both ways.
void send_recv(benchmark::State& state, bool record) {
  const size_t len = static_cast<size_t>(state.range(0));
  auto pair = MemLink::make_pair({});
  auto& [a, b] = *pair;
  std::unique_ptr<PcapRecorder> rec;
  const std::string path = tmp_pcap(record ? "-sr" : "-base");
  if (record) {
    rec = std::move(*PcapRecorder::open({.path = path, .slots = 1 << 16, .flush_on_signals = false}));
    a->set_recorder(rec.get());
    b->set_recorder(rec.get());
  }
  std::vector<uint8_t> frame(len, 0x5a), buf(2048);
  std::span<const uint8_t> fs(frame);
  RxFrame slot{{buf.data(), buf.size()}};
  for (auto _ : state) {
    benchmark::DoNotOptimize(a->send_burst(std::span(&fs, 1)));
    benchmark::DoNotOptimize(b->recv_burst(std::span(&slot, 1)));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(len));
  if (rec) {
    auto c = rec->counters();
    state.counters["not_recorded"] = static_cast<double>(c.dropped);
    rec.reset();
  }
  std::filesystem::remove(path);
}

void BM_MemLinkSendRecv_Baseline(benchmark::State& s) { send_recv(s, false); }
void BM_MemLinkSendRecv_Pcap(benchmark::State& s) { send_recv(s, true); }
BENCHMARK(BM_MemLinkSendRecv_Baseline)->Arg(64)->Arg(1514);
BENCHMARK(BM_MemLinkSendRecv_Pcap)->Arg(64)->Arg(1514);

// The record() call alone, against a plain copy of the same bytes into a
// preallocated buffer (what the ring slot costs at the least).
void BM_Record_Baseline(benchmark::State& state) {
  const size_t len = static_cast<size_t>(state.range(0));
  std::vector<uint8_t> frame(len, 0x5a), dst(len * 1024);
  size_t i = 0;
  for (auto _ : state) {
    std::memcpy(&dst[(i++ & 1023) * len], frame.data(), len);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Record_Pcap(benchmark::State& state) {
  const size_t len = static_cast<size_t>(state.range(0));
  const std::string path = tmp_pcap("-rec");
  auto rec = std::move(*PcapRecorder::open({.path = path, .slots = 1 << 16, .flush_on_signals = false}));
  std::vector<uint8_t> frame(len, 0x5a);
  for (auto _ : state) benchmark::DoNotOptimize(rec->record(frame));
  state.SetItemsProcessed(state.iterations());
  auto c = rec->counters();
  // Frames the writer could not keep up with are refused, not waited for;
  // report the share so a fast number is not mistaken for a free one.
  state.counters["not_recorded_share"] =
      c.recorded + c.dropped ? static_cast<double>(c.dropped) / static_cast<double>(c.recorded + c.dropped) : 0;
  rec.reset();
  std::filesystem::remove(path);
}
BENCHMARK(BM_Record_Baseline)->Arg(64)->Arg(1514);
BENCHMARK(BM_Record_Pcap)->Arg(64)->Arg(1514);

}  // namespace
