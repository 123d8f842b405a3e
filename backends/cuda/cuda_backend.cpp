// The CUDA backend object: registration with backend_for, device memory,
// host-device copies, the stream, and CUDA Graph capture.
#include "backends/cuda/cuda_backend.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <mutex>

#include "backends/cuda/allocator.h"
#include "backends/cuda/check.h"
#include "backends/cuda/kernels.h"

namespace tide::cuda {

// The kernels see mirrors of the op enums (kernels.h explains why); these
// checks fail to compile if backend.h and the mirrors ever disagree.
#define TIDE_CHECK_MIRROR(Enum, Mirror)                             \
  static_assert(static_cast<int>(Enum) == static_cast<int>(Mirror), \
                "kernels.h: "                                       \
                "mirror of " #Enum " is stale");
#define TIDE_UNARY_MIRROR(name, str) TIDE_CHECK_MIRROR(UnaryOp::name, kern::Unary::name)
#define TIDE_BINARY_MIRROR(name, str) TIDE_CHECK_MIRROR(BinaryOp::name, kern::Binary::name)
#define TIDE_REDUCE_MIRROR(name, str) TIDE_CHECK_MIRROR(ReduceOp::name, kern::Reduce::name)
#define TIDE_EPILOGUE_MIRROR(name, str) TIDE_CHECK_MIRROR(Epilogue::name, kern::Epilogue::name)
TIDE_UNARY_OPS(TIDE_UNARY_MIRROR)
TIDE_BINARY_OPS(TIDE_BINARY_MIRROR)
TIDE_REDUCE_OPS(TIDE_REDUCE_MIRROR)
TIDE_EPILOGUE_OPS(TIDE_EPILOGUE_MIRROR)
static_assert(static_cast<int>(kern::Unary::LogicalNot) + 1 == kNumUnaryOps);
static_assert(static_cast<int>(kern::Binary::SeluGradFromOutput) + 1 == kNumBinaryOps);
static_assert(static_cast<int>(kern::Reduce::Min) + 1 == kNumReduceOps);
static_assert(static_cast<int>(kern::Epilogue::Selu) + 1 == kNumEpilogues);
TIDE_CHECK_MIRROR(Distribution::Uniform, kern::Distribution::Uniform)
TIDE_CHECK_MIRROR(Distribution::Normal, kern::Distribution::Normal)
TIDE_CHECK_MIRROR(Distribution::Bernoulli, kern::Distribution::Bernoulli)
TIDE_CHECK_MIRROR(Distribution::RandInt, kern::Distribution::RandInt)
TIDE_CHECK_MIRROR(DType::Bool, kern::ElemType::Bool)
TIDE_CHECK_MIRROR(DType::Int64, kern::ElemType::Int64)
TIDE_CHECK_MIRROR(DType::Float32, kern::ElemType::Float32)
TIDE_CHECK_MIRROR(DType::Float64, kern::ElemType::Float64)
static_assert(kern::kMaxRank == kMaxDims);
#undef TIDE_CHECK_MIRROR
#undef TIDE_UNARY_MIRROR
#undef TIDE_BINARY_MIRROR
#undef TIDE_REDUCE_MIRROR
#undef TIDE_EPILOGUE_MIRROR

// ---------------------------------------------------------------------------
// Availability and registration
// ---------------------------------------------------------------------------

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error here
    return 0;
  }
  return count;
}

bool is_available() {
  return device_count() > 0;
}

MatmulCache* create_matmul_cache();  // matmul.cpp

CudaBackend& cuda_backend(int index) {
  TIDE_CHECK(index == 0,
             "backend_for: cuda:{} is not available: Tide uses one CUDA device, cuda:0 (select "
             "the GPU with CUDA_VISIBLE_DEVICES)",
             index);
  // Created on first use and never destroyed: destructors run at exit after
  // the CUDA runtime may have shut down.
  static CudaBackend* backend = [] {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess || count == 0) {
      (void)cudaGetLastError();
      fail("backend_for: cuda:0: CUDA backend is not available: no CUDA device found ({})",
           status != cudaSuccess ? cudaGetErrorString(status) : "the driver reports 0 devices");
    }
    return new CudaBackend(0);
  }();
  return *backend;
}

namespace {

Backend& create_cuda_backend(Device device) {
  return cuda_backend(device.index);
}

// Registers the factory when the library is loaded. Nothing touches the GPU
// until backend_for first asks for a CUDA device.
const bool kRegistered = [] {
  register_backend_factory(DeviceKind::CUDA, &create_cuda_backend);
  return true;
}();

}  // namespace

// ---------------------------------------------------------------------------
// The backend object
// ---------------------------------------------------------------------------

CudaBackend::CudaBackend(int device_index)
    : device_index_(device_index),
      allocator_(std::make_unique<CachingAllocator>(Device::cuda(device_index))) {
  (void)kRegistered;
  TIDE_CUDA_CHECK(cudaSetDevice(device_index));
  TIDE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TIDE_CUBLAS_CHECK(cublasLtCreate(&cublas_));
  // 32 MiB, what cuBLASLt's Hopper kernels want; taken from the driver, not
  // the caching allocator, so memory statistics count only tensors.
  workspace_bytes_ = size_t{32} << 20;
  TIDE_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
  TIDE_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&error_slot_), 2 * sizeof(int64_t)));
  TIDE_CUDA_CHECK(cudaMemset(error_slot_, 0, 2 * sizeof(int64_t)));
  TIDE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_error_slot_), 2 * sizeof(int64_t)));
  matmul_cache_.reset(create_matmul_cache());
  cudnn_ = create_cudnn_softmax(stream_);
}

CudaBackend::~CudaBackend() {
  // Only backends made by tests get here. No checks: a destructor must not throw.
  cudaStreamSynchronize(stream_);
  cudnn_.reset();
  matmul_cache_.reset();
  allocator_.reset();
  cudaFreeHost(host_error_slot_);
  cudaFree(error_slot_);
  cudaFree(workspace_);
  cublasLtDestroy(cublas_);
  cudaStreamDestroy(stream_);
}

void* CudaBackend::allocate(size_t nbytes) {
  return allocator_->allocate(nbytes);
}

void CudaBackend::deallocate(void* ptr, size_t nbytes) {
  allocator_->deallocate(ptr, nbytes);
}

MemoryStats CudaBackend::memory_stats() const {
  return allocator_->stats();
}

void CudaBackend::reset_peak_memory_stats() {
  allocator_->reset_peak();
}

void CudaBackend::empty_cache() {
  allocator_->empty_cache();
}

// Device -> host waits for the stream: the caller reads the bytes next.
void CudaBackend::copy_to_host(void* host_dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  TIDE_CHECK(!capturing_,
             "copy_to_host: cannot read {} bytes from {} during graph capture (a capture cannot "
             "wait for the device; read results after replay())",
             nbytes, device());
  TIDE_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, nbytes, cudaMemcpyDeviceToHost, stream_));
  TIDE_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// Host -> device is queued on the stream without waiting for it. Tide's host
// memory is pageable (never pinned), and for pageable sources the runtime
// stages the bytes before cudaMemcpyAsync returns, so the caller may free or
// reuse host_src at once.
void CudaBackend::copy_from_host(void* dst, const void* host_src, size_t nbytes) {
  if (nbytes == 0) return;
  TIDE_CHECK(!capturing_,
             "copy_from_host: cannot copy {} bytes to {} during graph capture (copy inputs into "
             "the captured tensors before replay())",
             nbytes, device());
  TIDE_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, nbytes, cudaMemcpyHostToDevice, stream_));
}

void CudaBackend::synchronize() {
  TIDE_CHECK(!capturing_, "synchronize: not allowed during graph capture on {}", device());
  TIDE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  // An index error recorded by a kernel inside a replayed graph surfaces here.
  check_index_error("synchronize (an indexing op in a replayed graph)", -1, -1);
}

void CudaBackend::check_index_error(const char* op, int dim, int64_t size) {
  if (capturing_) return;
  TIDE_CUDA_CHECK(cudaMemcpyAsync(host_error_slot_, error_slot_, 2 * sizeof(int64_t),
                                  cudaMemcpyDeviceToHost, stream_));
  TIDE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  if (host_error_slot_[0] == 0) return;
  const int64_t value = host_error_slot_[1];
  TIDE_CUDA_CHECK(cudaMemsetAsync(error_slot_, 0, 2 * sizeof(int64_t), stream_));
  if (size < 0) fail("{}: index {} is out of bounds", op, value);
  fail("{}: index {} is out of bounds for dim {} with size {}", op, value, dim, size);
}

// ---------------------------------------------------------------------------
// CUDA Graphs
// ---------------------------------------------------------------------------

// An instantiated graph. It keeps the memory it was captured with reserved
// (CachingAllocator) until it is destroyed.
class CudaGraph final : public DeviceGraph {
 public:
  CudaGraph(CudaBackend& backend, cudaGraph_t graph, cudaGraphExec_t exec)
      : backend_(backend), graph_(graph), exec_(exec) {}
  ~CudaGraph() override {
    // A replay may still be running: wait before the memory is released.
    cudaStreamSynchronize(backend_.stream_);
    cudaGraphExecDestroy(exec_);
    cudaGraphDestroy(graph_);
    backend_.allocator_->graph_destroyed();
  }
  void replay() override {
    TIDE_CHECK(!backend_.capturing_, "replay: cannot replay a graph during a capture");
    TIDE_CUDA_CHECK(cudaGraphLaunch(exec_, backend_.stream_));
  }

 private:
  CudaBackend& backend_;
  cudaGraph_t graph_;
  cudaGraphExec_t exec_;
};

void CudaBackend::begin_capture() {
  // cuDNN loads its kernels on first use, which a capture cannot record: run
  // each softmax once first (in the cuBLASLt workspace, idle between calls).
  warm_cudnn_softmax(cudnn_.get(), workspace_, stream_);
  allocator_->begin_capture();  // throws if a capture is already running
  // Relaxed mode: the allocator may still call cudaMalloc during the capture.
  const cudaError_t status = cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed);
  if (status != cudaSuccess) {
    allocator_->end_capture(false);
    fail_cuda(status, "cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed)");
  }
  capturing_ = true;
}

std::unique_ptr<DeviceGraph> CudaBackend::end_capture() {
  TIDE_CHECK(capturing_, "end_capture: no capture is running on {}", device());
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  cudaError_t status = cudaStreamEndCapture(stream_, &graph);
  cudaGraphExec_t exec = nullptr;
  if (status == cudaSuccess) {
    status = cudaGraphInstantiate(&exec, graph, 0);
    if (status != cudaSuccess) cudaGraphDestroy(graph);
  }
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    allocator_->end_capture(false);
    fail(
        "end_capture: capturing a CUDA graph failed: {} ({}); an op in the captured region "
        "may have synchronized with the host",
        cudaGetErrorName(status), cudaGetErrorString(status));
  }
  allocator_->end_capture(true);
  return std::make_unique<CudaGraph>(*this, graph, exec);
}

}  // namespace tide::cuda
