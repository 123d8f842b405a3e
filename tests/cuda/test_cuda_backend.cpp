// The CUDA backend on a GPU: what the op conformance suite does not cover
// (memory, streams, graphs, errors, bit-exact random numbers, determinism),
// plus each primitive family against the CPU backend on a few shapes,
// including strided, broadcast and large ones.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "autograd/ops.h"
#include "backends/cuda/allocator.h"
#include "backends/cuda/cuda_backend.h"
#include "tensor/creation.h"
#include "tensor/kernels.h"

using namespace tide;
using Catch::Contains;

namespace {

const Device kCuda = Device::cuda();

Tensor on_gpu(const Tensor& x) {
  return x.to(kCuda);
}

// Max |gpu - cpu| / (1 + |cpu|) over all elements.
double max_rel_error(const Tensor& gpu, const Tensor& cpu) {
  REQUIRE(gpu.device() == kCuda);
  REQUIRE(gpu.shape() == cpu.shape());
  REQUIRE(gpu.dtype() == cpu.dtype());
  const std::vector<double> g = gpu.to_vector<double>(), c = cpu.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isnan(c[i]) && std::isnan(g[i])) continue;
    worst = std::max(worst, std::abs(g[i] - c[i]) / (1 + std::abs(c[i])));
  }
  return worst;
}

Tensor random_cpu(const Shape& shape, uint64_t seed, DType dtype = DType::Float32) {
  Generator gen(seed);
  return randn(shape, gen, {.dtype = dtype});
}

}  // namespace

TEST_CASE("cuda: the caching allocator reuses blocks and counts them", "[cuda]") {
  Backend& gpu = backend_for(kCuda);
  gpu.synchronize();
  const MemoryStats before = gpu.memory_stats();
  gpu.reset_peak_memory_stats();
  void* a = gpu.allocate(1000);
  MemoryStats during = gpu.memory_stats();
  CHECK(during.bytes_in_use == before.bytes_in_use + 1000);
  CHECK(during.num_allocations == before.num_allocations + 1);
  CHECK(during.peak_bytes_in_use >= during.bytes_in_use);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  gpu.deallocate(a, 1000);
  MemoryStats after = gpu.memory_stats();
  CHECK(after.bytes_in_use == before.bytes_in_use);
  CHECK(after.bytes_cached >= cuda::CachingAllocator::round_size(1000));
  // The same size class gets the cached block back.
  void* b = gpu.allocate(900);
  CHECK(b == a);
  gpu.deallocate(b, 900);
  static_cast<cuda::CudaBackend&>(gpu).empty_cache();
  CHECK(gpu.memory_stats().bytes_cached == 0);
}

TEST_CASE("cuda: allocator size classes", "[cuda]") {
  using A = cuda::CachingAllocator;
  CHECK(A::round_size(1) == 512);
  CHECK(A::round_size(512) == 512);
  CHECK(A::round_size(513) == 1024);
  CHECK(A::round_size(size_t{1} << 20) == size_t{1} << 20);
  CHECK(A::round_size((size_t{1} << 20) + 1) == size_t{2} << 20);
}

TEST_CASE("cuda: out of memory is an error naming the size and the CUDA error", "[cuda]") {
  Backend& gpu = backend_for(kCuda);
  const size_t huge = size_t{1} << 50;  // 1 PiB
  REQUIRE_THROWS_WITH(gpu.allocate(huge),
                      Contains("1125899906842624 bytes") && Contains("cudaErrorMemoryAllocation"));
  // The device is still usable afterwards.
  Tensor x = on_gpu(ones({4}));
  CHECK(sum(x).item() == 4);
}

TEST_CASE("cuda: random numbers are the CPU's, bit for bit", "[cuda]") {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    Generator g1(1234), g2(1234);
    Tensor c = rand({1000, 3}, g1, {.dtype = dtype});
    Tensor g = rand({1000, 3}, g2, {.dtype = dtype, .device = kCuda});
    CHECK(g.to(Device::cpu()).to_vector<double>() == c.to_vector<double>());
  }
  {
    Generator g1(7), g2(7);
    Tensor c = randint(-5, 17, {4096}, g1);
    Tensor g = randint(-5, 17, {4096}, g2, {.dtype = DType::Int64, .device = kCuda});
    CHECK(g.to_vector<int64_t>() == c.to_vector<int64_t>());
  }
  {
    Generator g1(9), g2(9);
    Tensor c = bernoulli({4096}, 0.3, g1, {.dtype = DType::Bool});
    Tensor g = bernoulli({4096}, 0.3, g2, {.dtype = DType::Bool, .device = kCuda});
    CHECK(g.to_vector<bool>() == c.to_vector<bool>());
  }
  {
    // Normals go through log and cos, whose last double bit may differ
    // between CUDA and glibc: float32 values match, float64 to 1e-15.
    Generator g1(5), g2(5);
    Tensor c = randn({10000}, g1);
    Tensor g = randn({10000}, g2, {.device = kCuda});
    CHECK(g.to_vector<float>() == c.to_vector<float>());
    Generator h1(5), h2(5);
    Tensor c64 = randn({10000}, h1, {.dtype = DType::Float64});
    Tensor g64 = randn({10000}, h2, {.dtype = DType::Float64, .device = kCuda});
    CHECK(max_rel_error(g64, c64) < 1e-15);
  }
}

TEST_CASE("cuda: elementwise ops match the CPU on strided and broadcast operands", "[cuda]") {
  Tensor a = random_cpu({64, 33}, 1), b = random_cpu({33}, 2);
  Tensor ga = on_gpu(a), gb = on_gpu(b);
  CHECK(max_rel_error(ga + gb, a + b) == 0);
  CHECK(max_rel_error(ga * gb, a * b) == 0);
  CHECK(max_rel_error(transpose(ga, 0, 1) - 1.5, transpose(a, 0, 1) - 1.5) == 0);
  CHECK(max_rel_error(contiguous(transpose(ga, 0, 1)), contiguous(transpose(a, 0, 1))) == 0);
  CHECK(max_rel_error(exp(ga), exp(a)) < 1e-6);
  CHECK(max_rel_error(tanh(ga), tanh(a)) < 1e-6);
  CHECK(max_rel_error(gelu(ga), gelu(a)) < 1e-6);
  CHECK(max_rel_error(selu(slice(ga, 1, 0, 33, 2)), selu(slice(a, 1, 0, 33, 2))) < 1e-6);
  CHECK(max_rel_error(where(gt(ga, 0.0), ga, gb), where(gt(a, 0.0), a, b)) == 0);
  CHECK(max_rel_error(to(ga, DType::Float64), to(a, DType::Float64)) == 0);
  Tensor i = randint(-100, 100, {50}, default_generator());
  CHECK(max_rel_error(on_gpu(i) * on_gpu(i), i * i) == 0);
  // A large tensor exercises the grid-stride loops (more elements than threads).
  Tensor big = random_cpu({1 << 25}, 3);
  CHECK(max_rel_error(on_gpu(big) * 2.0, big * 2.0) == 0);
}

TEST_CASE("cuda: reductions match the CPU and are deterministic", "[cuda]") {
  Tensor x = random_cpu({257, 1031}, 4);
  Tensor g = on_gpu(x);
  CHECK(max_rel_error(sum(g, {1}), sum(x, {1})) < 1e-6);
  CHECK(max_rel_error(sum(g, {0}), sum(x, {0})) < 1e-6);
  CHECK(max_rel_error(sum(g), sum(x)) < 1e-6);
  CHECK(max_rel_error(amax(g, {0}), amax(x, {0})) == 0);
  CHECK(max_rel_error(amin(transpose(g, 0, 1), {1}), amin(transpose(x, 0, 1), {1})) == 0);
  CHECK(max_rel_error(prod(slice(g, 1, 0, 8), {1}), prod(slice(x, 1, 0, 8), {1})) < 1e-6);
  CHECK(max_rel_error(argmax(g, 1), argmax(x, 1)) == 0);
  CHECK(max_rel_error(argmin(g, 0), argmin(x, 0)) == 0);
  CHECK(max_rel_error(cumsum(g, 1), cumsum(x, 1)) == 0);  // same order, double accumulation
  // A long sum: chunked across blocks, combined in order, identical on reruns.
  Tensor big = random_cpu({10000000}, 5);
  Tensor gbig = on_gpu(big);
  const double s1 = sum(gbig).item(), s2 = sum(gbig).item();
  CHECK(s1 == s2);
  CHECK(std::abs(s1 - sum(big).item()) < 1e-3);
  // NaN propagates through max; argmax picks the first NaN.
  Tensor n = from_vector<float>({1, NAN, 3, NAN}, {4});
  CHECK(std::isnan(amax(on_gpu(n)).item()));
  CHECK(argmax(on_gpu(n), 0).item() == 1);
}

TEST_CASE("cuda: matmul through cuBLASLt matches the CPU", "[cuda]") {
  for (DType dtype : {DType::Float32, DType::Float64}) {
    const double tol = dtype == DType::Float32 ? 1e-5 : 1e-12;
    Tensor a = random_cpu({37, 19}, 6, dtype), b = random_cpu({19, 23}, 7, dtype);
    Tensor bias = random_cpu({23}, 8, dtype);
    CHECK(max_rel_error(matmul(on_gpu(a), on_gpu(b)), matmul(a, b)) < tol);
    // Transposed operands are passed to cuBLASLt without copies.
    Tensor at = contiguous(transpose(a, 0, 1)), bt = contiguous(transpose(b, 0, 1));
    CHECK(max_rel_error(matmul(transpose(on_gpu(at), 0, 1), transpose(on_gpu(bt), 0, 1)),
                        matmul(a, b)) < tol);
    // Batched with a broadcast operand.
    Tensor batch = random_cpu({3, 4, 37, 19}, 9, dtype);
    CHECK(max_rel_error(matmul(on_gpu(batch), on_gpu(b)), matmul(batch, b)) < tol);
    // Linear with bias and every epilogue.
    Tensor w = random_cpu({23, 19}, 10, dtype);
    for (Epilogue e :
         {Epilogue::None, Epilogue::Relu, Epilogue::Tanh, Epilogue::Sigmoid, Epilogue::Selu}) {
      INFO("epilogue " << op_name(e) << ", " << dtype_name(dtype));
      CHECK(max_rel_error(linear(on_gpu(a), on_gpu(w), on_gpu(bias), e), linear(a, w, bias, e)) <
            tol);
      CHECK(max_rel_error(linear(on_gpu(a), on_gpu(w), {}, e), linear(a, w, {}, e)) < tol);
    }
  }
  Tensor ia = randint(-9, 9, {5, 7}, default_generator());
  Tensor ib = randint(-9, 9, {7, 3}, default_generator());
  CHECK(max_rel_error(matmul(on_gpu(ia), on_gpu(ib)), matmul(ia, ib)) == 0);
  // The bf16 option runs and stays close.
  cuda::set_matmul_precision("bf16");
  CHECK(cuda::matmul_precision() == "bf16");
  Tensor a = random_cpu({64, 64}, 11), b = random_cpu({64, 64}, 12);
  CHECK(max_rel_error(matmul(on_gpu(a), on_gpu(b)), matmul(a, b)) < 0.1);
  cuda::set_matmul_precision("float32");
  REQUIRE_THROWS_WITH(cuda::set_matmul_precision("fp8"), Contains("fp8"));
}

TEST_CASE("cuda: softmax and layer norm match the CPU", "[cuda]") {
  for (int64_t cols : {3, 64, 1000, 3000}) {
    INFO("cols " << cols);
    Tensor x = random_cpu({50, cols}, 13);
    Tensor g = on_gpu(x);
    CHECK(max_rel_error(softmax(g, 1), softmax(x, 1)) < 1e-6);
    CHECK(max_rel_error(log_softmax(g, 1), log_softmax(x, 1)) < 1e-6);
    Tensor w = random_cpu({cols}, 14), b = random_cpu({cols}, 15);
    CHECK(max_rel_error(layer_norm(g, {cols}, on_gpu(w), on_gpu(b)), layer_norm(x, {cols}, w, b)) <
          1e-5);
    auto cpu_ln = kernels::layer_norm(x, 1, w, b, 1e-5);
    auto gpu_ln = kernels::layer_norm(g, 1, on_gpu(w), on_gpu(b), 1e-5);
    Tensor grad = random_cpu({50, cols}, 16);
    auto cpu_back = kernels::layer_norm_backward(grad, x, cpu_ln.mean, cpu_ln.rstd, 1, w, true);
    auto gpu_back =
        kernels::layer_norm_backward(on_gpu(grad), g, gpu_ln.mean, gpu_ln.rstd, 1, on_gpu(w), true);
    CHECK(max_rel_error(gpu_back.grad_x, cpu_back.grad_x) < 1e-4);
    CHECK(max_rel_error(gpu_back.grad_weight, cpu_back.grad_weight) < 1e-5);
    CHECK(max_rel_error(gpu_back.grad_bias, cpu_back.grad_bias) < 1e-5);
    Tensor y = softmax(x, 1);
    CHECK(max_rel_error(kernels::softmax_backward(on_gpu(grad), on_gpu(y), 1, false),
                        kernels::softmax_backward(grad, y, 1, false)) < 1e-5);
  }
}

TEST_CASE("cuda: indexing matches the CPU and bad indices throw", "[cuda]") {
  Tensor x = random_cpu({10, 6}, 17);
  Tensor idx = from_vector<int64_t>({3, 0, 9, 3}, {4});
  CHECK(max_rel_error(index_select(on_gpu(x), 0, on_gpu(idx)), index_select(x, 0, idx)) == 0);
  CHECK(max_rel_error(index_select(on_gpu(x), 1, on_gpu(slice(idx, 0, 0, 2))),
                      index_select(x, 1, slice(idx, 0, 0, 2))) == 0);
  Tensor gi = randint(0, 10, {7, 6}, default_generator());
  CHECK(max_rel_error(gather(on_gpu(x), 0, on_gpu(gi)), gather(x, 0, gi)) == 0);
  Tensor src = random_cpu({7, 6}, 18, DType::Float64);
  Tensor base = zeros({10, 6}, {.dtype = DType::Float64});
  // Sums in index order, as on the CPU: identical results.
  CHECK(max_rel_error(scatter_add(on_gpu(base), 0, on_gpu(gi), on_gpu(src)),
                      scatter_add(base, 0, gi, src)) == 0);
  Tensor bad = from_vector<int64_t>({1, 10}, {2});
  REQUIRE_THROWS_WITH(index_select(on_gpu(x), 0, on_gpu(bad)),
                      Contains("index_select") && Contains("index 10 is out of bounds"));
  Tensor bad2 = from_vector<int64_t>({-1, 0, 0, 0, 0, 0}, {1, 6});
  REQUIRE_THROWS_WITH(scatter_add(on_gpu(base), 0, on_gpu(bad2), on_gpu(slice(src, 0, 0, 1))),
                      Contains("scatter_add") && Contains("index -1"));
  // The error is cleared: the next op works.
  CHECK(max_rel_error(index_select(on_gpu(x), 0, on_gpu(idx)), index_select(x, 0, idx)) == 0);
}

TEST_CASE("cuda: a captured graph replays the recorded work on new inputs", "[cuda]") {
  Backend& gpu = backend_for(kCuda);
  Tensor x = on_gpu(from_vector<float>({1, 2, 3}, {3}));
  Tensor w = on_gpu(from_vector<float>({1, 0, 0, 0, 1, 0, 0, 0, 1}, {3, 3}));
  // Warm-up outside the capture (cuBLASLt plans are made here).
  Tensor y = relu(matmul(unsqueeze(x, 0), w) * 2.0 - 3.0);
  gpu.synchronize();
  gpu.begin_capture();
  Tensor out = relu(matmul(unsqueeze(x, 0), w) * 2.0 - 3.0);
  REQUIRE_THROWS_WITH(out.item<float>(), Contains("graph capture"));
  std::unique_ptr<DeviceGraph> graph = gpu.end_capture();
  graph->replay();
  CHECK(out.to_vector<float>() == std::vector<float>{0, 1, 3});
  kernels::copy_(x, on_gpu(from_vector<float>({4, 5, -6}, {3})));
  graph->replay();
  CHECK(out.to_vector<float>() == std::vector<float>{5, 7, 0});
  REQUIRE_THROWS_WITH(gpu.end_capture(), Contains("no capture"));
}

TEST_CASE("cuda: host reads of device tensors copy first", "[cuda]") {
  Tensor x = on_gpu(from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}));
  CHECK(select(transpose(x, 0, 1), 0, 2).to_vector<double>() == std::vector<double>{3, 6});
  CHECK(sum(x).item() == 21);
  CHECK(mean(x).item() == 3.5);
}
