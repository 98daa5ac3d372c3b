#include "tools/bench_report.h"

#include <fmt/core.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

extern char** environ;

namespace tools {

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

namespace {
std::string span_text(const std::vector<double>& v) {
  return fmt::format("{:.1f}..{:.1f}", *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
}
}  // namespace

void print_bench_row(const BenchRow& r, bool json) {
  const double ratio = r.baseline > 0 ? r.value / r.baseline : 0;
  if (json) {
    nlohmann::ordered_json j;
    j["suite"] = r.suite;
    j["case"] = r.name;
    j["unit"] = r.unit;
    j["value"] = r.value;
    j["baseline"] = r.baseline;
    j["ratio"] = ratio;
    j["loss"] = r.loss;
    j["baseline_loss"] = r.baseline_loss;
    if (!r.baseline_kind.empty()) j["baseline_kind"] = r.baseline_kind;
    if (!r.values.empty()) {
      j["repeat"] = r.values.size();
      j["value_min"] = *std::min_element(r.values.begin(), r.values.end());
      j["value_max"] = *std::max_element(r.values.begin(), r.values.end());
    }
    if (!r.baselines.empty()) {
      j["baseline_min"] = *std::min_element(r.baselines.begin(), r.baselines.end());
      j["baseline_max"] = *std::max_element(r.baselines.begin(), r.baselines.end());
    }
    fmt::print("{}\n", j.dump());
  } else {
    fmt::print("{:<38} {:>13.1f} {:>13.1f} {:>7.2f}x  {:<9} {:<16}", r.suite + "/" + r.name, r.value, r.baseline,
               ratio, r.unit, r.baseline_kind);
    if (r.values.size() > 1) fmt::print(" {}", span_text(r.values));
    if (r.baselines.size() > 1) fmt::print(" / {}", span_text(r.baselines));
    if (r.unit == "frames/s") fmt::print("  loss {:.1f}% / {:.1f}%", 100 * r.loss, 100 * r.baseline_loss);
    fmt::print("\n");
  }
  std::fflush(stdout);
}

BenchReport::BenchReport(bool json, std::string plot)
    : json_(json), plot_(std::move(plot)), tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()) {}

void BenchReport::progress(std::string_view what) {
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // On a terminal the line is rewritten in place; in a log each step stays.
  if (tty_) fmt::print(stderr, "\r\033[Kbench [{:6.1f} s, {} rows] {}", t, rows_.size(), what);
  else fmt::print(stderr, "bench [{:6.1f} s, {} rows] {}\n", t, rows_.size(), what);
  std::fflush(stderr);
}

void BenchReport::add(BenchRow r) {
  progress(fmt::format("{}/{}: {:.1f} {} ({:.2f}x)", r.suite, r.name, r.value, r.unit,
                       r.baseline > 0 ? r.value / r.baseline : 0));
  rows_.push_back(std::move(r));
}

int BenchReport::finish() {
  if (tty_) fmt::print(stderr, "\n");
  if (!json_ && !rows_.empty())
    fmt::print("{:<38} {:>13} {:>13} {:>8}  {:<9} {:<16} {}\n", "case", "coemu", "baseline", "ratio", "unit",
               "baseline is", "min..max (coemu / baseline)");
  for (const BenchRow& r : rows_) print_bench_row(r, json_);
  return plot_.empty() ? 0 : plot();
}

namespace {

// Single quotes for a gnuplot string.
std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

// Runs gnuplot on `script`; its exit status, or -1 when it cannot start.
int run_gnuplot(const std::string& script) {
  pid_t pid;
  std::string prog = "gnuplot";
  char* argv[] = {prog.data(), const_cast<char*>(script.c_str()), nullptr};
  if (::posix_spawnp(&pid, "gnuplot", nullptr, nullptr, argv, environ) != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

}  // namespace

int BenchReport::plot() const {
  // Throughput by link (payload size -> coemu, baseline) and latency samples.
  std::map<std::string, std::vector<const BenchRow*>> by_link;
  std::vector<const BenchRow*> latency;
  for (const BenchRow& r : rows_) {
    if (r.payload && r.unit == "frames/s") by_link[r.link].push_back(&r);
    if (!r.samples.empty() || !r.baseline_samples.empty()) latency.push_back(&r);
  }
  if (by_link.empty() && latency.empty()) {
    fmt::print(stderr, "coemu bench: --plot {}: nothing to draw (the datapath and latency suites have figures)\n", plot_);
    return 1;
  }
  char tmpl[] = "/tmp/coemu-plot-XXXXXX";
  if (!::mkdtemp(tmpl)) {
    fmt::print(stderr, "coemu bench: --plot: cannot make a temporary directory: {}\n", std::strerror(errno));
    return 1;
  }
  const std::filesystem::path dir(tmpl);
  std::ofstream gp(dir / "plot.gp");
  const int panels = (by_link.empty() ? 0 : 1) + (latency.empty() ? 0 : 1);
  gp << "set terminal pngcairo size " << 640 * panels << ",480 noenhanced font 'sans,10'\n"
     << "set output " << quoted(plot_) << "\n"
     << "set key top left\nset grid\n";
  if (panels > 1) gp << "set multiplot layout 1," << panels << " title 'coemu bench'\n";
  if (!by_link.empty()) {
    gp << "set title 'Throughput against payload size'\nset logscale x\nset xlabel 'payload bytes'\n"
       << "set ylabel 'payload Gbit/s'\nplot ";
    const char* sep = "";
    for (const auto& [link, rows] : by_link) {
      const auto file = (dir / ("tp_" + link + ".dat")).string();
      std::ofstream d(file);
      for (const BenchRow* r : rows)
        d << r->payload << ' ' << r->value * r->payload * 8 / 1e9 << ' ' << r->baseline * r->payload * 8 / 1e9
          << '\n';
      const std::string kind = rows.front()->baseline_kind.empty() ? "baseline" : rows.front()->baseline_kind;
      gp << sep << quoted(file) << " using 1:2 with linespoints title " << quoted("coemu, " + link) << ", "
         << quoted(file) << " using 1:3 with linespoints dashtype 2 title " << quoted(kind);
      sep = ", ";
    }
    gp << "\nunset logscale x\n";
  }
  if (!latency.empty()) {
    gp << "set title 'Round-trip time distribution'\nset logscale x\nset xlabel 'round trip, us'\n"
       << "set ylabel 'share of round trips at or below'\nset yrange [0:1]\nset key bottom right\nplot ";
    const char* sep = "";
    int i = 0;
    for (const BenchRow* r : latency) {
      for (int base = 0; base < 2; ++base) {
        std::vector<double> s = base ? r->baseline_samples : r->samples;
        if (s.empty()) continue;
        std::sort(s.begin(), s.end());
        const auto file = (dir / fmt::format("cdf_{}_{}.dat", i, base)).string();
        std::ofstream d(file);
        for (size_t k = 0; k < s.size(); ++k) d << s[k] << ' ' << static_cast<double>(k + 1) / s.size() << '\n';
        const std::string who = base ? (r->baseline_kind.empty() ? "baseline" : r->baseline_kind) : "coemu";
        gp << sep << quoted(file) << " using 1:2 with lines " << (base ? "dashtype 2 " : "") << "title "
           << quoted(who + ", " + r->link);
        sep = ", ";
      }
      ++i;
    }
    gp << "\n";
  }
  if (panels > 1) gp << "unset multiplot\n";
  gp.close();
  const int rc = run_gnuplot((dir / "plot.gp").string());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (rc == -1) {
    fmt::print(stderr, "coemu bench: --plot needs gnuplot (Debian: apt-get install gnuplot-nox)\n");
    return 1;
  }
  if (rc != 0) {
    fmt::print(stderr, "coemu bench: gnuplot failed (exit {}) drawing {}\n", rc, plot_);
    return 1;
  }
  fmt::print(stderr, "bench: plot written to {}\n", plot_);
  return 0;
}

}  // namespace tools
