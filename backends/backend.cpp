// Op name tables (generated from the X-macro lists in backend.h) and the
// device -> backend registry.
#include "backends/backend.h"

#include <atomic>

#include "backends/checks.h"
#include "backends/cpu/cpu_backend.h"

namespace tide {

namespace {

constexpr const char* kUnaryNames[] = {TIDE_UNARY_OPS(TIDE_NAME_ENTRY)};
constexpr const char* kBinaryNames[] = {TIDE_BINARY_OPS(TIDE_NAME_ENTRY)};
constexpr const char* kReduceNames[] = {TIDE_REDUCE_OPS(TIDE_NAME_ENTRY)};
constexpr const char* kEpilogueNames[] = {TIDE_EPILOGUE_OPS(TIDE_NAME_ENTRY)};

template <size_t N>
const char* name_at(const char* const (&table)[N], uint8_t index) {
  return index < N ? table[index] : "?";
}

// Backends that other libraries register at load time (CUDA). The CPU backend is
// not stored here: it always exists and is returned directly.
std::atomic<Backend*> g_cuda_backend{nullptr};
std::atomic<BackendFactory> g_cuda_factory{nullptr};

}  // namespace

const char* op_name(UnaryOp op) {
  return name_at(kUnaryNames, static_cast<uint8_t>(op));
}
const char* op_name(BinaryOp op) {
  return name_at(kBinaryNames, static_cast<uint8_t>(op));
}
const char* op_name(ReduceOp op) {
  return name_at(kReduceNames, static_cast<uint8_t>(op));
}
const char* op_name(Epilogue op) {
  return name_at(kEpilogueNames, static_cast<uint8_t>(op));
}

Backend& backend_for(Device device) {
  if (device.kind == DeviceKind::CPU) [[likely]] {
    return cpu::cpu_backend();
  }
  Backend* cuda = g_cuda_backend.load(std::memory_order_acquire);
  if (cuda == nullptr) {
    if (BackendFactory factory = g_cuda_factory.load(std::memory_order_acquire)) {
      cuda = &factory(device);  // throws when there is no such device
      g_cuda_backend.store(cuda, std::memory_order_release);
    }
  }
  TIDE_CHECK(cuda != nullptr,
             "backend_for: {}: CUDA backend is not available (Tide was built without CUDA or no "
             "GPU is present)",
             device);
  TIDE_CHECK(device == cuda->device(),
             "backend_for: {} is not available (the CUDA backend runs on {})", device,
             cuda->device());
  return *cuda;
}

void register_backend(DeviceKind kind, Backend* backend) {
  TIDE_CHECK(kind == DeviceKind::CUDA,
             "register_backend: only a CUDA backend can be registered (the CPU backend is "
             "built in)");
  g_cuda_backend.store(backend, std::memory_order_release);
}

void register_backend_factory(DeviceKind kind, BackendFactory factory) {
  TIDE_CHECK(kind == DeviceKind::CUDA,
             "register_backend_factory: only a CUDA backend can be registered (the CPU backend is "
             "built in)");
  g_cuda_factory.store(factory, std::memory_order_release);
}

void Backend::linear_weight_grad(const ArrayView& weight_grad, const ArrayView& bias_grad,
                                 const ArrayView& grad_out, const ArrayView& input) {
  checks::check_linear_weight_grad(weight_grad, bias_grad, grad_out, input);
  ArrayView grad_out_t = grad_out;  // [N, M]: a transposed view, no copy
  grad_out_t.shape = {grad_out.shape[1], grad_out.shape[0]};
  grad_out_t.strides = {grad_out.strides[1], grad_out.strides[0]};
  matmul(weight_grad, grad_out_t, input, ArrayView{}, Epilogue::None);
  if (bias_grad.data == nullptr) return;
  ArrayView bias_row = bias_grad;  // [1, N]: the rows of grad_out are reduced
  bias_row.shape = {1, grad_out.shape[1]};
  bias_row.strides = {grad_out.shape[1], 1};
  reduce(ReduceOp::Sum, bias_row, grad_out);
}

void Backend::begin_capture() {
  fail("begin_capture: {} has no graph capture (CUDA Graphs need a CUDA device)", device());
}

std::unique_ptr<DeviceGraph> Backend::end_capture() {
  fail("end_capture: {} has no graph capture (CUDA Graphs need a CUDA device)", device());
}

}  // namespace tide
