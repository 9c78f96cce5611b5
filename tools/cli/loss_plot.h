// A loss curve drawn in the terminal: rows of text with the loss on the y axis and steps on x.
#pragma once

#include <string>
#include <vector>

namespace shardlab::cli {

// `values[i]` is the loss of step i + 1; the plot is `width` columns by `height` rows, each
// column the mean of the steps it covers.
std::string ascii_plot(const std::vector<double>& values, int width = 60, int height = 12);

}  // namespace shardlab::cli
