// The CPU backend: every primitive of backends/backend.h for float32, float64,
// int64 and bool, written as plain loops the compiler can vectorize, with
// oneDNN taking over float32 work that is large enough to repay its per-call
// cost (see onednn.h).
//
// Where each primitive lives:
//   cpu_backend.cpp    memory, the singleton
//   elementwise.cpp    copy, fill, where
//   unary.cpp          unary
//   binary.cpp         binary
//   reduce.cpp         reduce, arg_reduce, cumsum
//   matmul.cpp         matmul (linear_weight_grad: Backend's default)
//   normalization.cpp  softmax, layer_norm (+ backwards)
//   indexing.cpp       index_select, gather, scatter_add
//   random.cpp         random
#pragma once

#include <atomic>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"

namespace tide::cpu {

class CpuBackend final : public Backend {
 public:
  ~CpuBackend() override { empty_cache(); }
  Device device() const override { return Device::cpu(); }

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  MemoryStats memory_stats() const override;
  void reset_peak_memory_stats() override;
  // Frees the cached large blocks (see allocate()).
  void empty_cache();

  // Blocks of at least this many bytes are cached when freed, up to
  // kMaxCachedBytes in total.
  static constexpr size_t kLargeBlock = size_t{32} << 10;
  static constexpr size_t kMaxCachedBytes = size_t{512} << 20;
  // Requests of at least this many bytes that the cache cannot serve are
  // refused when the system has less memory available (see allocate()).
  static constexpr size_t kCheckAvailableBytes = size_t{64} << 20;
  void copy_to_host(void* host_dst, const void* src, size_t nbytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t nbytes) override;

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

 private:
  // Relaxed atomics: statistics only, read by tests and tools, never used to
  // order memory accesses.
  std::atomic<size_t> bytes_in_use_{0};
  std::atomic<size_t> peak_bytes_in_use_{0};
  std::atomic<uint64_t> num_allocations_{0};

  // The large-block cache: free blocks by size class.
  mutable std::mutex cache_mutex_;
  std::unordered_map<size_t, std::vector<void*>> cache_;
  size_t bytes_cached_ = 0;
};

// The process-wide CPU backend (what backend_for(Device::cpu()) returns).
CpuBackend& cpu_backend();

}  // namespace tide::cpu
