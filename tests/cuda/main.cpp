// tide_cuda_tests: the CUDA backend's own tests. They need a GPU; without one
// the program exits with 77, which CTest reports as "Not Run" (never passed).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "tensor/tensor.h"

int main(int argc, char** argv) {
  if (!tide::cuda_is_available()) {
    std::fprintf(stderr, "tide_cuda_tests: no CUDA device, tests not run\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
