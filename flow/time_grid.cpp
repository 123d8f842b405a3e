#include "flow/time_grid.h"

#include "backends/types.h"

namespace tide::flow {

std::vector<double> uniform_time_grid(double t0, double t1, int64_t steps) {
  TIDE_CHECK(steps >= 1, "uniform_time_grid: steps must be at least 1, got {}", steps);
  std::vector<double> grid(static_cast<size_t>(steps + 1));
  for (int64_t i = 0; i <= steps; ++i)
    grid[i] = t0 + (t1 - t0) * static_cast<double>(i) / static_cast<double>(steps);
  grid.back() = t1;
  return grid;
}

}  // namespace tide::flow
