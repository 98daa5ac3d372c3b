#include "tools/bench_cli.h"

#include <unistd.h>

#include <algorithm>

namespace tools {

namespace {

void add_timing_options(CLI::App* cmd, double& seconds, uint32_t& repeat, const char* seconds_help,
                        const char* repeat_help) {
  cmd->add_option("--seconds", seconds, seconds_help)->check(CLI::Range(0.05, 600.0))->capture_default_str();
  cmd->add_option("--repeat", repeat, repeat_help)->check(CLI::Range(1u, 100u))->capture_default_str();
}

void add_poll_option(CLI::App* cmd, uint32_t& poll_us) {
  cmd->add_option("--poll-us", poll_us,
                  "After moving frames, an I/O thread polls this many microseconds before it blocks\n"
                  "(0 = block at once)")
      ->check(CLI::Range(0u, 1'000'000u))
      ->capture_default_str();
}

void add_links_option(CLI::App* cmd, std::string& links) {
  cmd->add_option("--links", links, "memory, tap (root) or both")
      ->check(CLI::IsMember({"memory", "tap", "both"}))
      ->capture_default_str();
}

// --json and --plot, as every suite has them.
void add_report_options(CLI::App* cmd, BenchCommand& b) {
  cmd->add_flag("-j,--json", b.json,
                "One JSON object per case: suite, case, unit, value, baseline, ratio, baseline_kind,\n"
                "and for repeated cases repeat, value_min/max, baseline_min/max");
  cmd->add_option("--plot", b.plot,
                  "Also draw FILE.png with gnuplot: throughput against payload size and round-trip time\n"
                  "distributions, coemu against the baselines (datapath and latency figures)");
}

void add_datapath(CLI::App* bench, BenchCommand& b) {
  auto& o = b.datapath;
  auto* c = b.datapath_cmd = bench->add_subcommand(
      "datapath", "Two data paths move DATA frames on a PVC, over the memory wire and over two TAPs on a\n"
                  "bridge (root; in a namespace of its own), against a raw one-call-per-frame loop on the\n"
                  "identical path; and a VC shaped to a token rate against that rate.\n"
                  "Example: coemu bench datapath --links memory --sizes 64,1500 --repeat 3 --json");
  add_timing_options(c, o.seconds, o.repeat, "Seconds per throughput case", "Alternate raw and engine this often; report medians");
  c->add_option("--sizes", o.sizes, "Payload sizes in bytes (above 1478 runs on MTU 65521)")
      ->delimiter(',')
      ->check(CLI::Range(4u, 65499u));
  add_links_option(c, o.links);
  c->add_flag("--busy-poll", o.busy_poll, "I/O threads spin instead of blocking");
  add_poll_option(c, o.poll_us);
  c->add_option("--shape-rate", o.shape_rate, "Token rate of the shaped-VC case, bytes/s")
      ->check(CLI::Range(10'000u, 1'000'000'000u))
      ->capture_default_str();
  c->add_flag("--inline-tx", o.inline_tx, "Senders write to the link themselves when nothing is queued");
  c->add_flag("--uring-rx", o.uring_rx, "Receive from TAPs through io_uring (posted reads)");
  add_report_options(c, b);
}

void add_latency(CLI::App* bench, BenchCommand& b) {
  auto& o = b.latency;
  auto* c = b.latency_cmd = bench->add_subcommand(
      "latency", "64-byte ping-pong on a PVC between two data paths, blocking and busy-polling, over the\n"
                 "memory wire and TAPs (root), each against a raw loop on the identical path in the same\n"
                 "mode; and the TAP round trip against UDP ping-pong over a veth between two namespaces.\n"
                 "Example: coemu bench latency --links tap --rounds 5000 --plot rtt.png");
  add_links_option(c, o.links);
  c->add_option("--rounds", o.rounds, "Round trips per repetition")->check(CLI::Range(10u, 10'000'000u))->capture_default_str();
  c->add_option("--repeat", o.repeat, "Alternate raw and engine this often; report medians")
      ->check(CLI::Range(1u, 100u))
      ->capture_default_str();
  add_poll_option(c, o.poll_us);
  c->add_flag("--inline-tx", o.inline_tx, "Senders write to the link themselves when nothing is queued");
  add_report_options(c, b);
}

void add_calls(CLI::App* bench, BenchCommand& b) {
  auto& o = b.calls;
  auto* c = b.calls_cmd = bench->add_subcommand(
      "calls", "Call setup + teardown rate and setup latency between two nodes over two TAPs on a bridge\n"
               "(root; in a namespace of its own), against TCP connect + accept + close over a veth between\n"
               "two namespaces, in the same run.\nExample: coemu bench calls --inflight 1,16 --repeat 5 --json");
  add_timing_options(c, o.seconds, o.repeat, "Seconds per case and repetition", "Alternate TCP and coemu this often; report medians");
  c->add_option("--inflight", o.inflight, "Calls (and TCP connections) in flight")->delimiter(',')->check(CLI::Range(1u, 1024u));
  c->add_flag("!--sig-via-io-thread", o.sig_write_now,
              "Every signaling frame goes through the I/O thread (by default the control\n"
              "thread writes a lone one itself before it sleeps)");
  c->add_flag("--busy-poll", o.busy_poll, "The nodes' I/O threads spin instead of blocking");
  add_poll_option(c, o.poll_us);
  c->add_flag("!--control-thread-only", o.io_thread_signals,
              "Only the control thread runs the call manager (by default an I/O thread that\n"
              "receives signaling while the control thread sleeps runs it itself)");
  add_report_options(c, b);
}

void add_scale(CLI::App* bench, BenchCommand& b) {
  auto& o = b.scale;
  auto* c = b.scale_cmd = bench->add_subcommand(
      "scale", "Concurrent calls between two nodes on the memory wire (or TAPs): the setup and teardown rates of a\n"
               "batch at the top against the same batch next to 1,000 live calls, and the memory each call\n"
               "costs a node (the process's resident growth). No root needed on the memory wire.\n"
               "Example: coemu bench scale --calls 1000000 --json");
  c->add_option("--calls", o.calls, "Live calls at the top")->capture_default_str()->check(CLI::Range(3000u, 1'040'000u));
  c->add_option("--batch", o.batch, "Calls in each timed batch")->capture_default_str()->check(CLI::Range(1u, 100'000u));
  c->add_option("--repeat", o.repeat, "Timed batches at each end (set up, then closed); medians are reported")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100u));
  c->add_option("--window", o.window, "Calls being set up at a time")->capture_default_str()->check(CLI::Range(1u, 65'536u));
  c->add_option("--timeout", o.timeout_s, "Give up after this many seconds")->capture_default_str()->check(CLI::Range(1.0, 86400.0));
  c->add_option("--link", o.link, "memory, or tap (two TAPs on a bridge in a namespace of its own; root)")
      ->check(CLI::IsMember({"memory", "tap"}))
      ->capture_default_str();
  add_report_options(c, b);
}

}  // namespace

void add_bench_command(CLI::App& app, BenchCommand& b) {
  b.cmd = app.add_subcommand("bench", "Benchmarks, each case beside its baseline measured in the same run\n"
                                      "Example: coemu bench all --plot bench.png");
  b.cmd->require_subcommand(1);
  add_datapath(b.cmd, b);
  add_latency(b.cmd, b);
  add_calls(b.cmd, b);
  add_scale(b.cmd, b);
  b.all_cmd = b.cmd->add_subcommand(
      "all", "Every suite in turn with its defaults (datapath, latency, calls, scale), one table at the\n"
             "end. TAP, veth and TCP cases need root; without it the memory-wire cases still run.\n"
             "Example: coemu bench all --json > bench.json");
  add_timing_options(b.all_cmd, b.datapath.seconds, b.datapath.repeat, "Seconds per throughput and call-rate case",
                     "Repetitions of each case (medians reported)");
  b.all_cmd->add_option("--rounds", b.latency.rounds, "Round trips per latency case and repetition")
      ->capture_default_str()
      ->check(CLI::Range(10u, 10'000'000u));
  b.all_cmd->add_option("--calls", b.scale.calls, "Live calls at the top of the scale suite")
      ->capture_default_str()
      ->check(CLI::Range(3000u, 1'040'000u));
  add_report_options(b.all_cmd, b);
}

int run_bench(BenchCommand& b) {
  BenchReport report(b.json, b.plot);
  int rc = 0;
  if (*b.datapath_cmd) rc = run_bench_datapath(b.datapath, report);
  if (*b.latency_cmd) rc = run_bench_latency(b.latency, report);
  if (*b.calls_cmd) rc = run_bench_calls(b.calls, report);
  if (*b.scale_cmd) rc = run_bench_scale(b.scale, report);
  if (*b.all_cmd) {
    const bool root = ::geteuid() == 0;
    if (!root) {
      b.datapath.links = b.latency.links = "memory";
      report.progress("not root: memory-wire cases only (TAP, veth and TCP need CAP_NET_ADMIN)");
    }
    b.latency.repeat = b.calls.repeat = b.scale.repeat = b.datapath.repeat;
    b.calls.seconds = b.datapath.seconds;
    if (b.scale.calls < 1000 + 2 * b.scale.batch) b.scale.batch = (b.scale.calls - 1000) / 2;
    for (int r : {run_bench_datapath(b.datapath, report), run_bench_latency(b.latency, report),
                  root ? run_bench_calls(b.calls, report) : 0, run_bench_scale(b.scale, report)})
      rc = std::max(rc, r);
  }
  if (rc == 2) return rc;  // a usage error: no table
  return std::max(rc, report.finish());
}

}  // namespace tools
