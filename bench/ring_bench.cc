// coemu's rings against Boost.Lockfree in the same binary and run:
// BM_<Thing>_Coemu/<burst> vs BM_<Thing>_Baseline/<burst> (boost). Two-thread
// cases pin the producer to CPU 0 and the consumer to CPU 1.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <sched.h>

#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>
#include <thread>

#include "miniport/ring.h"

namespace {

using miniport::MpscRing;
using miniport::SpscRing;

constexpr size_t kCap = 4096;
constexpr uint64_t kItems = 1 << 20;  // per timed iteration

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu % std::max(1u, std::thread::hardware_concurrency()), &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

// --- coemu adaptors: push/pop up to n ---
struct CoemuSpsc {
  SpscRing<uint64_t> r{kCap};
  size_t push(uint64_t* v, size_t n) { return n == 1 ? (r.try_push(v[0]) ? 1 : 0) : r.push_burst({v, n}); }
  size_t pop(uint64_t* v, size_t n) { return n == 1 ? (r.try_pop(v[0]) ? 1 : 0) : r.pop_burst({v, n}); }
};
struct BoostSpsc {
  boost::lockfree::spsc_queue<uint64_t, boost::lockfree::capacity<kCap>> q;
  size_t push(uint64_t* v, size_t n) { return n == 1 ? (q.push(v[0]) ? 1 : 0) : q.push(v, n); }
  size_t pop(uint64_t* v, size_t n) { return n == 1 ? (q.pop(v[0]) ? 1 : 0) : q.pop(v, n); }
};
struct CoemuMpsc {
  MpscRing<uint64_t> r{kCap};
  size_t push(uint64_t* v, size_t n) { return n == 1 ? (r.try_push(v[0]) ? 1 : 0) : r.push_burst({v, n}); }
  size_t pop(uint64_t* v, size_t n) { return n == 1 ? (r.try_pop(v[0]) ? 1 : 0) : r.pop_burst({v, n}); }
};
struct BoostMpmc {  // boost has no MPSC queue and no bulk API: its MPMC queue, item by item
  boost::lockfree::queue<uint64_t, boost::lockfree::capacity<kCap>> q;
  size_t push(uint64_t* v, size_t n) {
    size_t k = 0;
    while (k < n && q.bounded_push(v[k])) ++k;
    return k;
  }
  size_t pop(uint64_t* v, size_t n) {
    size_t k = 0;
    while (k < n && q.pop(v[k])) ++k;
    return k;
  }
};

template <class Q>
void two_threads(benchmark::State& state) {
  const auto burst = static_cast<size_t>(state.range(0));
  pin(0);
  for (auto _ : state) {
    auto q = std::make_unique<Q>();
    std::jthread consumer([&] {
      pin(1);
      uint64_t buf[64], got = 0, sum = 0;
      while (got < kItems) {
        const size_t n = q->pop(buf, burst);
        for (size_t i = 0; i < n; ++i) sum += buf[i];
        got += n;
      }
      benchmark::DoNotOptimize(sum);
    });
    uint64_t buf[64], sent = 0;
    while (sent < kItems) {
      const size_t want = std::min<uint64_t>(burst, kItems - sent);
      for (size_t i = 0; i < want; ++i) buf[i] = sent + i;
      sent += q->push(buf, want);
    }
  }
  state.SetItemsProcessed(state.iterations() * kItems);
}

void BM_Spsc_Coemu(benchmark::State& s) { two_threads<CoemuSpsc>(s); }
void BM_Spsc_Baseline(benchmark::State& s) { two_threads<BoostSpsc>(s); }
void BM_Mpsc_Coemu(benchmark::State& s) { two_threads<CoemuMpsc>(s); }
void BM_Mpsc_Baseline(benchmark::State& s) { two_threads<BoostMpmc>(s); }
BENCHMARK(BM_Spsc_Coemu)->Arg(1)->Arg(32)->UseRealTime();
BENCHMARK(BM_Spsc_Baseline)->Arg(1)->Arg(32)->UseRealTime();
BENCHMARK(BM_Mpsc_Coemu)->Arg(1)->Arg(32)->UseRealTime();
BENCHMARK(BM_Mpsc_Baseline)->Arg(1)->Arg(32)->UseRealTime();

// Single thread: push then pop (no contention), and popping an empty ring.
template <class Q>
void push_pop(benchmark::State& state) {
  Q q;
  uint64_t v = 1;
  for (auto _ : state) {
    q.push(&v, 1);
    q.pop(&v, 1);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
template <class Q>
void empty_pop(benchmark::State& state) {
  Q q;
  uint64_t v = 0;
  for (auto _ : state) benchmark::DoNotOptimize(q.pop(&v, 1));
  state.SetItemsProcessed(state.iterations());
}
void BM_SpscPushPop_Coemu(benchmark::State& s) { push_pop<CoemuSpsc>(s); }
void BM_SpscPushPop_Baseline(benchmark::State& s) { push_pop<BoostSpsc>(s); }
void BM_SpscEmptyPop_Coemu(benchmark::State& s) { empty_pop<CoemuSpsc>(s); }
void BM_SpscEmptyPop_Baseline(benchmark::State& s) { empty_pop<BoostSpsc>(s); }
void BM_MpscPushPop_Coemu(benchmark::State& s) { push_pop<CoemuMpsc>(s); }
void BM_MpscPushPop_Baseline(benchmark::State& s) { push_pop<BoostMpmc>(s); }
BENCHMARK(BM_SpscPushPop_Coemu);
BENCHMARK(BM_SpscPushPop_Baseline);
BENCHMARK(BM_SpscEmptyPop_Coemu);
BENCHMARK(BM_SpscEmptyPop_Baseline);
BENCHMARK(BM_MpscPushPop_Coemu);
BENCHMARK(BM_MpscPushPop_Baseline);

}  // namespace
