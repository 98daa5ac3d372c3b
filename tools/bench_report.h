// How every `coemu bench` suite reports: rows are collected while a progress
// line runs on stderr; at the end they print as one table (or one JSON object
// per line) and, with --plot, as a PNG drawn by gnuplot.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tools {

// One result: coemu's value beside its baseline from the same run.
// JSON: {"suite","case","unit","value","baseline","ratio","loss",
// "baseline_loss"} plus "repeat","value_min/max","baseline_min/max" for
// repeated cases and "baseline_kind".
struct BenchRow {
  std::string suite, name, unit;
  double value = 0, baseline = 0;
  double loss = 0, baseline_loss = 0;  // share of frames written but not delivered
  // Each repetition's result (value and baseline are their medians): the
  // row then shows min..max beside them. Empty for single measurements.
  std::vector<double> values = {}, baselines = {};
  std::string baseline_kind = {};  // what the baseline is: "raw TAP", "TCP", ...
  // For --plot: a throughput row's payload size and link, a latency row's
  // samples (us) for coemu and the baseline.
  uint32_t payload = 0;
  std::string link = {};
  std::vector<double> samples = {}, baseline_samples = {};
};

// The q-quantile (0..1) of samples; 0 when there are none.
[[nodiscard]] double percentile(std::vector<double> samples, double q);
[[nodiscard]] double median(std::vector<double> v);

// Prints a row as a table line or one JSON object.
void print_bench_row(const BenchRow& r, bool json);

class BenchReport {
 public:
  // plot: a PNG to draw at finish(), or empty.
  BenchReport(bool json, std::string plot);
  // The progress line: what runs now (stderr; rewritten in place on a terminal).
  void progress(std::string_view what);
  void add(BenchRow r);
  // Prints the table or the JSON lines and draws the plot. Returns 0, or 1
  // when the plot could not be drawn (the message names why).
  int finish();
  [[nodiscard]] const std::vector<BenchRow>& rows() const noexcept { return rows_; }

 private:
  int plot() const;
  bool json_;
  std::string plot_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  std::vector<BenchRow> rows_;
};

}  // namespace tools
