// Time grids for the flow layer. Convention (shared/reference/flow-matching.md):
// t = 0 is the source (noise), t = 1 is the data.
#pragma once

#include <cstdint>
#include <vector>

namespace tide::flow {

// n + 1 evenly spaced times from t0 to t1 inclusive (either direction); the
// last value is exactly t1.
std::vector<double> uniform_time_grid(double t0, double t1, int64_t steps);

}  // namespace tide::flow
