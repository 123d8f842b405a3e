// The CUDA device as seen from a machine that may have no GPU: it must report
// itself unavailable with a clear tide::Error, never crash. On a machine with
// a GPU the same tests check the device instead. The CUDA kernels themselves
// are tested by tests/cuda/ (run only where a GPU is present) and by the
// conformance suite.
#include <catch2/catch.hpp>

#include <vector>

#include "backends/backend.h"
#include "tensor/creation.h"
#include "tensor/tensor.h"

using namespace tide;
using Catch::Contains;

TEST_CASE("cuda: an absent device is an error naming it, a present one round-trips data",
          "[cuda]") {
  if (!cuda_is_available()) {
    REQUIRE_THROWS_WITH(backend_for(Device::cuda()),
                        Contains("cuda:0") && Contains("not available"));
    // Asking again gives the same answer (the failed start is not cached as success).
    REQUIRE_THROWS_WITH(backend_for(Device::cuda()), Contains("not available"));
    REQUIRE_THROWS_WITH(zeros({2, 3}, {.device = Device::cuda()}), Contains("cuda:0"));
    REQUIRE_THROWS_WITH(ones({4}).to(Device::cuda()), Contains("not available"));
    REQUIRE_THROWS_WITH(backend_for(Device::cuda(1)), Contains("cuda:1"));
  } else {
    Backend& backend = backend_for(Device::cuda());
    CHECK(backend.device() == Device::cuda(0));
    Tensor x = from_vector<float>({1.5f, -2, 3}, {3}).to(Device::cuda());
    CHECK(x.device() == Device::cuda());
    CHECK(x.to(Device::cpu()).to_vector<float>() == std::vector<float>{1.5f, -2, 3});
    CHECK(x.to_vector<double>() == std::vector<double>{1.5, -2, 3});
    REQUIRE_THROWS_WITH(backend_for(Device::cuda(7)), Contains("cuda:7"));
  }
}

TEST_CASE("Tensor::to is the tensor itself on its own device and a copy elsewhere", "[cuda]") {
  Tensor x = from_vector<double>({1, 2, 3, 4}, {2, 2});
  Tensor same = x.to(Device::cpu());
  CHECK(same.impl() == x.impl());
  REQUIRE_THROWS_WITH(Tensor().to(Device::cpu()), Contains("undefined"));
  if (cuda_is_available()) {
    Tensor t = x.to(Device::cuda());
    CHECK(t.impl() != x.impl());
    CHECK(t.to(Device::cpu()).to_vector<double>() == x.to_vector<double>());
    // Host pointers of device data are refused.
    REQUIRE_THROWS_WITH(t.data_ptr<double>(), Contains("cuda:0"));
  }
}
