// ASCII loss curve.
#include "tools/cli/loss_plot.h"

#include <algorithm>
#include <cstdio>

namespace shardlab::cli {

std::string ascii_plot(const std::vector<double>& values, int width, int height) {
  if (values.empty()) return "(no steps)\n";
  const int n = static_cast<int>(values.size());
  width = std::min(width, n);
  std::vector<double> cols(width);
  for (int c = 0; c < width; ++c) {
    int begin = c * n / width, end = std::max(begin + 1, (c + 1) * n / width);
    double s = 0;
    for (int i = begin; i < end; ++i) s += values[i];
    cols[c] = s / (end - begin);
  }
  const double hi = *std::max_element(cols.begin(), cols.end()), lo = *std::min_element(cols.begin(), cols.end());
  const double span = hi > lo ? hi - lo : 1.0;
  std::string out;
  char label[32];
  for (int r = 0; r < height; ++r) {
    const double level = hi - span * r / (height - 1);
    std::snprintf(label, sizeof(label), "%8.3f |", level);
    out += label;
    for (int c = 0; c < width; ++c) {
      int row = static_cast<int>((hi - cols[c]) / span * (height - 1) + 0.5);
      out += row == r ? '*' : ' ';
    }
    out += '\n';
  }
  out += std::string(9, ' ') + '+' + std::string(width, '-') + '\n';
  const std::string last = std::to_string(n);
  out += std::string(10, ' ') + "1" + std::string(std::max<int>(1, width - 1 - static_cast<int>(last.size())), ' ') + last +
         "  (step)\n";
  return out;
}

}  // namespace shardlab::cli
