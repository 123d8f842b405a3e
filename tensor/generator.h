// Generator: the state of a counter-based random stream (Philox 4x32-10).
//
// The state is just (seed, offset). Each random fill of n elements uses the
// counter blocks offset .. offset + n - 1 and then advances offset by n, so
// results do not depend on thread count or device, and saving/restoring the
// two numbers reproduces a run exactly.
#pragma once

#include <cstdint>

namespace tide {

struct GeneratorState {
  uint64_t seed = 0;
  uint64_t offset = 0;
  friend bool operator==(const GeneratorState&, const GeneratorState&) = default;
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : state_{seed, 0} {}

  void manual_seed(uint64_t seed) { state_ = {seed, 0}; }
  uint64_t seed() const { return state_.seed; }
  GeneratorState state() const { return state_; }
  void set_state(GeneratorState state) { state_ = state; }

  // Reserves n counter blocks and returns the first.
  uint64_t advance(uint64_t n) {
    uint64_t first = state_.offset;
    state_.offset += n;
    return first;
  }

 private:
  GeneratorState state_;
};

// The process-wide generator used when none is passed (seed 0 until
// manual_seed is called). Not thread-safe: pass explicit generators to
// concurrent code.
Generator& default_generator();
void manual_seed(uint64_t seed);

}  // namespace tide
