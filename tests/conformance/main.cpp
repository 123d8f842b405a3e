// tide_conformance: the op conformance suite on one device.
//
//   tide_conformance --device cpu|cuda [--full] [Catch2 options, e.g. "[random]" or -s]
//
// --full: inputs of more than 64k elements in every layout (always on CUDA;
// the CPU's default takes them contiguous only, to stay fast in CI).
//
// Exit status 77 (CTest's SKIP_RETURN_CODE, "Not Run") when the device is
// CUDA and Tide was built without CUDA or no GPU is present at run time, so a
// machine without a GPU never reports the CUDA suite as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "conformance.h"

#ifdef TIDE_CONFORMANCE_WITH_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace {

constexpr int kSkipped = 77;
constexpr int kUsageError = 2;

// Empty when the device can run work; otherwise why it cannot.
std::string unavailable_reason(tide::Device device) {
  if (device.is_cpu()) return {};
#ifndef TIDE_CONFORMANCE_WITH_CUDA
  return "Tide was built without CUDA (configure with -DTIDE_WITH_CUDA=ON)";
#else
  if (!tide::cuda_is_available())
    return fmt::format("no usable CUDA device (tide::cuda::device_count() = {})",
                       tide::cuda::device_count());
  try {
    tide::backend_for(device);  // throws when no CUDA backend registered itself
    // One tiny round trip, so that a driver/runtime mismatch shows up here
    // and not as the first test's failure.
    tide::Tensor x = tide::to(tide::arange(4.0), device);
    if (tide::to(x, tide::Device::cpu()).to_vector<float>()[3] != 3.0f)
      return "a round trip through the device returned wrong data";
    return {};
  } catch (const std::exception& e) {
    return e.what();
  }
#endif
}

}  // namespace

int main(int argc, char** argv) {
  // Take --device out of the arguments; the rest go to Catch2.
  std::string device_name = "cpu";
  bool full = false;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--device") == 0 && i + 1 < argc) {
      device_name = argv[++i];
    } else if (std::strcmp(argv[i], "--full") == 0) {
      full = true;
    } else if (std::strncmp(argv[i], "--device=", 9) == 0) {
      device_name = argv[i] + 9;
    } else {
      rest.push_back(argv[i]);
    }
  }
  tide::Device device;
  if (device_name == "cpu") {
    device = tide::Device::cpu();
  } else if (device_name == "cuda" || device_name == "cuda:0") {
    device = tide::Device::cuda(0);
  } else {
    std::fprintf(stderr, "tide_conformance: --device must be cpu or cuda, got '%s'\n",
                 device_name.c_str());
    return kUsageError;
  }
  const std::string reason = unavailable_reason(device);
  if (!reason.empty()) {
    std::printf("tide_conformance: SKIPPED, %s is not available: %s\n", device.str().c_str(),
                reason.c_str());
    return kSkipped;
  }
  tide::conformance::set_device(device);
  tide::conformance::set_full_run(full || device.is_cuda());
  std::printf("tide_conformance: device %s\n", device.str().c_str());
#ifdef TIDE_CONFORMANCE_WITH_CUDA
  // The float32 matmul tolerances assume full float32 ("float32"), not TF32.
  if (device.is_cuda())
    std::printf("tide_conformance: CUDA matmul precision %s\n",
                tide::cuda::matmul_precision().c_str());
#endif

  Catch::Session session;
  const int parse = session.applyCommandLine(static_cast<int>(rest.size()), rest.data());
  if (parse != 0) return parse;
  const int failed = session.run();
  std::printf("tide_conformance: %lld comparisons on %s\n",
              static_cast<long long>(tide::conformance::comparison_count()), device.str().c_str());
  // Catch returns the number of failed test cases; 77 of them must not read as "skipped".
  return failed == 0 ? 0 : 1;
}
