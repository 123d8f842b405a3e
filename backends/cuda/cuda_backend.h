// The CUDA backend: every primitive of backends/backend.h on one NVIDIA GPU.
//
// Layout of backends/cuda/ (host code in .cpp, kernels in .cu; kernels.h is
// the interface between the two halves):
//   cuda_backend.cpp   registration, device memory, copies, streams, graphs
//   allocator.cpp      the caching allocator
//   ops.cpp            argument checks and planning for the non-matmul ops
//   matmul.cpp         matmul through cuBLASLt (descriptor and heuristic cache)
//   elementwise.cu     copy, fill, where        unary.cu / binary.cu
//   reduce.cu          reduce, arg_reduce, cumsum
//   normalization.cu   softmax, layer_norm      indexing.cu
//   softmax_cudnn.cpp  softmax through cuDNN (TIDE_WITH_CUDNN), else the kernel
//   random.cu          Philox, identical to the CPU's numbers
//   matmul_kernels.cu  bias/activation epilogues, int64 matmul
//
// Execution model: all work goes to one stream owned by the backend (not the
// legacy default stream), in order; primitives return once their kernels are
// enqueued. copy_to_host and synchronize() wait for the stream. Memory comes
// from a caching allocator, so steady-state training allocates nothing from
// the driver.
//
// This header includes no CUDA header: programs can call these functions
// without the CUDA toolkit's include paths.
#pragma once

#include <memory>
#include <string>

#include "backends/backend.h"
#include "backends/cuda/softmax_cudnn.h"

struct CUstream_st;
struct cublasLtContext;

namespace tide::cuda {

// True when the CUDA runtime finds a usable device (never throws).
bool is_available();
// Number of CUDA devices (0 when there is no driver or no GPU).
int device_count();

// How float32 matmuls compute: "float32" (the default: full fp32, matches the
// CPU to float tolerance), "tf32" (TF32 tensor cores) or "bf16" (inputs
// rounded to bfloat16 on the tensor cores, fp32 accumulation: the mixed
// precision option). A process-wide setting; float64 matmuls are unaffected.
void set_matmul_precision(const std::string& mode);
std::string matmul_precision();

class CachingAllocator;
class MatmulCache;  // matmul.cpp
struct MatmulCacheDeleter {
  void operator()(MatmulCache* cache) const;
};

class CudaBackend final : public Backend {
 public:
  // Creates the stream, the cuBLASLt handle and its workspace, and the cuDNN
  // handle (when built with cuDNN) on `device`.
  explicit CudaBackend(int device_index);
  ~CudaBackend() override;

  Device device() const override { return Device::cuda(device_index_); }

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  MemoryStats memory_stats() const override;
  void reset_peak_memory_stats() override;
  void copy_to_host(void* host_dst, const void* src, size_t nbytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t nbytes) override;

  void synchronize() override;
  void begin_capture() override;
  std::unique_ptr<DeviceGraph> end_capture() override;

  void copy(const ArrayView& dst, const ArrayView& src) override;
  void fill(const ArrayView& dst, double value) override;
  void unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha,
             double beta) override;
  void binary(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b,
              double alpha, double beta) override;
  void where(const ArrayView& dst, const ArrayView& cond, const ArrayView& a,
             const ArrayView& b) override;

  void reduce(ReduceOp op, const ArrayView& dst, const ArrayView& src) override;
  void arg_reduce(bool is_max, const ArrayView& dst, const ArrayView& src, int dim) override;
  void cumsum(const ArrayView& dst, const ArrayView& src, int dim) override;

  void matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b, const ArrayView& bias,
              Epilogue epilogue) override;
  void linear_weight_grad(const ArrayView& weight_grad, const ArrayView& bias_grad,
                          const ArrayView& grad_out, const ArrayView& input) override;

  void softmax(const ArrayView& dst, const ArrayView& src, bool log) override;
  void softmax_backward(const ArrayView& grad_src, const ArrayView& grad_dst, const ArrayView& dst,
                        bool log) override;
  void layer_norm(const ArrayView& dst, const ArrayView& mean, const ArrayView& rstd,
                  const ArrayView& x, const ArrayView& weight, const ArrayView& bias,
                  double eps) override;
  void layer_norm_backward(const ArrayView& grad_x, const ArrayView& grad_weight,
                           const ArrayView& grad_bias, const ArrayView& grad_dst,
                           const ArrayView& x, const ArrayView& mean, const ArrayView& rstd,
                           const ArrayView& weight) override;

  void index_select(const ArrayView& dst, const ArrayView& src, int dim,
                    const ArrayView& index) override;
  void gather(const ArrayView& dst, const ArrayView& src, int dim, const ArrayView& index) override;
  void scatter_add(const ArrayView& dst, int dim, const ArrayView& index,
                   const ArrayView& src) override;

  void random(const ArrayView& dst, Distribution dist, double a, double b, uint64_t seed,
              uint64_t offset) override;

  // --- CUDA specifics ---
  CUstream_st* stream() const { return stream_; }
  bool capturing() const { return capturing_; }
  // Returns every cached (free) block to the driver; waits for the device.
  void empty_cache();

 private:
  friend class CudaGraph;

  // Scratch device memory for one primitive. Freeing it right after the
  // kernels are enqueued is safe: the block's next user runs later on the
  // same stream.
  class Scratch {
   public:
    Scratch(CudaBackend& backend, size_t nbytes)
        : backend_(backend), nbytes_(nbytes), ptr_(nbytes ? backend.allocate(nbytes) : nullptr) {}
    ~Scratch() {
      if (ptr_ != nullptr) backend_.deallocate(ptr_, nbytes_);
    }
    Scratch(const Scratch&) = delete;
    Scratch& operator=(const Scratch&) = delete;
    void* get() const { return ptr_; }

   private:
    CudaBackend& backend_;
    size_t nbytes_;
    void* ptr_;
  };

  // Reads the index error slot back (a host synchronization) and throws if a
  // kernel since the last check met an out-of-range index. During graph
  // capture it does nothing: the slot is read at the next synchronize().
  void check_index_error(const char* op, int dim, int64_t size);
  // The cuBLASLt call behind matmul (operands already in a layout cuBLASLt
  // reads). With bias_grad set, `bias` is an output instead: the BGRADB
  // epilogue writes a summed over its K columns (length M, see
  // linear_weight_grad); then it returns false, having done nothing, where
  // cuBLASLt has no algorithm. Otherwise it always returns true.
  bool matmul_float(const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                    const ArrayView& bias, Epilogue epilogue, bool bias_grad = false);

  int device_index_;
  CUstream_st* stream_ = nullptr;
  cublasLtContext* cublas_ = nullptr;
  void* workspace_ = nullptr;  // cuBLASLt workspace
  size_t workspace_bytes_ = 0;
  int64_t* error_slot_ = nullptr;       // device: [flag, bad index]
  int64_t* host_error_slot_ = nullptr;  // pinned host copy
  bool capturing_ = false;
  std::unique_ptr<CachingAllocator> allocator_;
  std::unique_ptr<MatmulCache, MatmulCacheDeleter> matmul_cache_;
  CudnnSoftmaxPtr cudnn_;  // null when built without cuDNN
};

// The backend of cuda:`index`, created on first use (what backend_for returns
// for a CUDA device). Throws tide::Error when there is no such device.
CudaBackend& cuda_backend(int index = 0);

}  // namespace tide::cuda
