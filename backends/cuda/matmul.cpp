// matmul: dst[..., M, N] = epilogue(a[..., M, K] @ b[..., K, N] + bias[N]).
//
// float32 and float64 go through cuBLASLt. cuBLASLt is column-major and Tide
// row-major; a row-major [R, C] matrix is the column-major [C, R] matrix, so
// dst = a @ b is computed as the column-major product dst^T = b^T a^T:
//   cuBLASLt  m = N, n = M, k = K;  A = b,  B = a,  D = dst (ld = dst row stride)
// A transposed view (unit stride along rows) is passed with op T instead of
// being copied; only views with no unit stride at all are packed first.
//
// Epilogues: bias and ReLU run inside cuBLASLt (BIAS, RELU, RELU_BIAS);
// tanh, sigmoid and SELU have no cuBLASLt epilogue and run as one elementwise
// kernel after the matmul. (cuBLASLt's ReLU is max(x, 0), which turns NaN into
// 0 where the CPU keeps it.)
//
// Batches: batch dims are coalesced; the innermost becomes a strided batch
// (stride 0 for a broadcast operand) and any outer ones are looped on the host.
//
// Descriptors, layouts and the chosen algorithm are cached per problem
// (shapes, strides, dtype, epilogue, precision mode and pointer alignment);
// only the pointers change from call to call.
//
// int64 has no cuBLAS routine: a simple kernel (matmul_kernels.cu).
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "backends/checks.h"
#include "backends/cuda/check.h"
#include "backends/cuda/cuda_backend.h"
#include "backends/cuda/plan.h"

namespace tide::cuda {

// ---------------------------------------------------------------------------
// The precision setting
// ---------------------------------------------------------------------------

namespace {

enum class Precision : int { Float32 = 0, TF32 = 1, BF16 = 2 };
std::atomic<int> g_precision{static_cast<int>(Precision::Float32)};

cublasComputeType_t compute_type(DType dtype) {
  if (dtype == DType::Float64) return CUBLAS_COMPUTE_64F;
  switch (static_cast<Precision>(g_precision.load(std::memory_order_relaxed))) {
    case Precision::TF32:
      return CUBLAS_COMPUTE_32F_FAST_TF32;
    case Precision::BF16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
    case Precision::Float32:
      break;
  }
  return CUBLAS_COMPUTE_32F;
}

}  // namespace

void set_matmul_precision(const std::string& mode) {
  Precision p;
  if (mode == "float32" || mode == "highest")
    p = Precision::Float32;
  else if (mode == "tf32" || mode == "high")
    p = Precision::TF32;
  else if (mode == "bf16" || mode == "medium")
    p = Precision::BF16;
  else
    fail("set_matmul_precision: unknown mode '{}' (expected float32, tf32 or bf16)", mode);
  g_precision.store(static_cast<int>(p), std::memory_order_relaxed);
}

std::string matmul_precision() {
  switch (static_cast<Precision>(g_precision.load(std::memory_order_relaxed))) {
    case Precision::TF32:
      return "tf32";
    case Precision::BF16:
      return "bf16";
    case Precision::Float32:
      break;
  }
  return "float32";
}

// ---------------------------------------------------------------------------
// The descriptor cache
// ---------------------------------------------------------------------------

namespace {

// Everything that decides the descriptors and the algorithm.
struct PlanKey {
  std::array<int64_t, 20> v{};
  bool operator==(const PlanKey& o) const { return v == o.v; }
};
struct PlanKeyHash {
  size_t operator()(const PlanKey& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the fields
    for (int64_t x : k.v) h = (h ^ static_cast<uint64_t>(x)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool has_algo = false;  // false: cuBLASLt offered no algorithm for this epilogue
};

void destroy_plan(Plan& p) {
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.d) cublasLtMatrixLayoutDestroy(p.d);
  if (p.op) cublasLtMatmulDescDestroy(p.op);
}

// The largest power of two (up to 256) dividing the address: the alignment
// cuBLASLt may assume for this operand.
int64_t alignment_of(const void* ptr, int64_t stride_bytes = 0) {
  uint64_t bits = reinterpret_cast<uintptr_t>(ptr) | static_cast<uint64_t>(stride_bytes) | 256u;
  return static_cast<int64_t>(bits & (~bits + 1));
}

}  // namespace

class MatmulCache {
 public:
  ~MatmulCache() {
    for (auto& [key, plan] : plans_) destroy_plan(plan);
  }
  std::mutex mutex;
  std::unordered_map<PlanKey, Plan, PlanKeyHash> plans_;
};

MatmulCache* create_matmul_cache() {
  return new MatmulCache;
}
void MatmulCacheDeleter::operator()(MatmulCache* cache) const {
  delete cache;
}

// ---------------------------------------------------------------------------
// The matmul
// ---------------------------------------------------------------------------

namespace {

using checks::check_matmul_args;

// How a row-major [rows, cols] matrix with strides (rs, cs) looks to a
// column-major library: either the [cols, rows] matrix with ld = rs (op N,
// needs unit column stride) or, transposed, the [rows, cols] matrix with
// ld = cs (op T, needs unit row stride).
struct ColMajor {
  bool ok = false;
  bool transpose = false;
  int64_t ld = 0;
};

ColMajor as_col_major(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  const int64_t min_n = std::max<int64_t>(cols, 1), min_t = std::max<int64_t>(rows, 1);
  if (cols == 1 || cs == 1) {
    const int64_t ld = rows == 1 ? min_n : rs;
    if (ld >= min_n) return {true, false, ld};
  }
  if (rows == 1 || rs == 1) {
    const int64_t ld = cols == 1 ? min_t : cs;
    if (ld >= min_t) return {true, true, ld};
  }
  return {};
}

// A copy of v with each matrix contiguous; batch dims where v is broadcast
// (stride 0) stay broadcast.
ArrayView packed_layout(const ArrayView& v, void* data) {
  ArrayView out = v;
  out.data = data;
  int64_t stride = 1;
  for (int d = v.rank() - 1; d >= 0; --d) {
    const bool broadcast = d < v.rank() - 2 && v.strides[d] == 0;
    out.strides[d] = broadcast ? 0 : stride;
    if (!broadcast) stride *= v.shape[d];
  }
  return out;
}

size_t packed_bytes(const ArrayView& v) {
  int64_t n = 1;
  for (int d = 0; d < v.rank(); ++d)
    if (!(d < v.rank() - 2 && v.strides[d] == 0)) n *= v.shape[d];
  return static_cast<size_t>(n) * dtype_size(v.dtype);
}

}  // namespace

void CudaBackend::matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                         const ArrayView& bias, Epilogue epilogue) {
  check_matmul_args(dst, a, b, bias, epilogue);
  if (dst.numel() == 0) return;
  const int r = dst.rank();
  if (dst.dtype == DType::Int64) {
    kern::GemmPlan g;
    Shape batch_shape, sd, sa, sb;
    for (int d = 0; d < r - 2; ++d) {
      batch_shape.push_back(dst.shape[d]);
      sd.push_back(dst.strides[d]);
      sa.push_back(a.strides[d]);
      sb.push_back(b.strides[d]);
    }
    g.batches = make_loop<3>(batch_shape, {&sd, &sa, &sb});
    g.m = dst.shape[r - 2];
    g.n = dst.shape[r - 1];
    g.k = a.shape[r - 1];
    g.a_row = a.strides[r - 2];
    g.a_col = a.strides[r - 1];
    g.b_row = b.strides[r - 2];
    g.b_col = b.strides[r - 1];
    g.c_row = dst.strides[r - 2];
    g.c_col = dst.strides[r - 1];
    kern::matmul_int64(g, dst.ptr<int64_t>(), a.ptr<int64_t>(), b.ptr<int64_t>(),
                       bias.ptr<int64_t>(), stream_);
    TIDE_CUDA_CHECK_LAUNCH("matmul");
    return;
  }
  const int64_t m = dst.shape[r - 2], n = dst.shape[r - 1], k = a.shape[r - 1];
  if (k == 0) {  // an empty sum: dst = epilogue(0 + bias)
    fill(dst, 0.0);
    if (bias.data != nullptr || epilogue != Epilogue::None) {
      kern::bias_epilogue(loop_of(dst), dst.data, bias.data, n,
                          static_cast<kern::Epilogue>(epilogue), elem(dst.dtype), stream_);
      TIDE_CUDA_CHECK_LAUNCH("matmul");
    }
    return;
  }
  // Operands cuBLASLt cannot read in place are packed into scratch copies.
  const ColMajor a_cm = as_col_major(m, k, a.strides[r - 2], a.strides[r - 1]);
  const ColMajor b_cm = as_col_major(k, n, b.strides[r - 2], b.strides[r - 1]);
  const ColMajor d_cm = as_col_major(m, n, dst.strides[r - 2], dst.strides[r - 1]);
  if (!a_cm.ok) {
    Scratch packed(*this, packed_bytes(a));
    const ArrayView view = packed_layout(a, packed.get());
    copy(view, a);
    return matmul(dst, view, b, bias, epilogue);
  }
  if (!b_cm.ok) {
    Scratch packed(*this, packed_bytes(b));
    const ArrayView view = packed_layout(b, packed.get());
    copy(view, b);
    return matmul(dst, a, view, bias, epilogue);
  }
  if (!d_cm.ok || d_cm.transpose) {
    // A dst without unit column stride: compute into a packed copy first.
    Scratch packed(*this, static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype));
    ArrayView view = dst;
    view.data = packed.get();
    view.strides = contiguous_strides(dst.shape);
    matmul(view, a, b, bias, epilogue);
    copy(dst, view);
    return;
  }
  matmul_float(dst, a, b, bias, epilogue);
}

bool CudaBackend::matmul_float(const ArrayView& dst, const ArrayView& a, const ArrayView& b,
                               const ArrayView& bias, Epilogue epilogue, bool bias_grad) {
  const int r = dst.rank();
  const int64_t m = dst.shape[r - 2], n = dst.shape[r - 1], k = a.shape[r - 1];
  const ColMajor a_cm = as_col_major(m, k, a.strides[r - 2], a.strides[r - 1]);
  const ColMajor b_cm = as_col_major(k, n, b.strides[r - 2], b.strides[r - 1]);
  const ColMajor d_cm = as_col_major(m, n, dst.strides[r - 2], dst.strides[r - 1]);

  // Batch dims: the innermost coalesced one is cuBLASLt's strided batch, the
  // others are walked here.
  Shape batch_shape, sd, sa, sb;
  for (int d = 0; d < r - 2; ++d) {
    batch_shape.push_back(dst.shape[d]);
    sd.push_back(dst.strides[d]);
    sa.push_back(a.strides[d]);
    sb.push_back(b.strides[d]);
  }
  const kern::Loop<3> batches = make_loop<3>(batch_shape, {&sd, &sa, &sb});
  const int inner = batches.rank - 1;
  const int64_t batch_count = batches.rank > 0 ? batches.sizes[inner] : 1;
  const int64_t stride_d = batches.rank > 0 ? batches.strides[0][inner] : 0;
  const int64_t stride_a = batches.rank > 0 ? batches.strides[1][inner] : 0;
  const int64_t stride_b = batches.rank > 0 ? batches.strides[2][inner] : 0;
  const int64_t outer_count = batches.numel / batch_count;

  // Which epilogue runs inside cuBLASLt.
  const bool has_bias = bias.data != nullptr;
  cublasLtEpilogue_t lt_epilogue = has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  if (bias_grad) lt_epilogue = CUBLASLT_EPILOGUE_BGRADB;  // reduces cuBLASLt's B = Tide's a
  if (epilogue == Epilogue::Relu)
    lt_epilogue = has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;

  // Alignment over every batch's pointers.
  const int64_t esize = static_cast<int64_t>(dtype_size(dst.dtype));
  int64_t outer_strides_bytes = 0;
  for (int d = 0; d < inner; ++d)
    for (int op = 0; op < 3; ++op) outer_strides_bytes |= batches.strides[op][d] * esize;
  const int64_t align_a = alignment_of(b.data, (stride_b * esize) | outer_strides_bytes);
  const int64_t align_b = alignment_of(a.data, (stride_a * esize) | outer_strides_bytes);
  const int64_t align_d = alignment_of(dst.data, (stride_d * esize) | outer_strides_bytes);
  const int64_t align_bias = has_bias ? alignment_of(bias.data) : 256;

  const cublasComputeType_t compute = compute_type(dst.dtype);
  const cudaDataType_t data_type = dst.dtype == DType::Float64 ? CUDA_R_64F : CUDA_R_32F;
  PlanKey key;
  key.v = {static_cast<int64_t>(dst.dtype),
           static_cast<int64_t>(compute),
           lt_epilogue,
           m,
           n,
           k,
           a_cm.transpose,
           a_cm.ld,
           b_cm.transpose,
           b_cm.ld,
           d_cm.ld,
           batch_count,
           stride_a,
           stride_b,
           stride_d,
           align_a,
           align_b,
           align_d,
           align_bias,
           0};

  std::unique_lock<std::mutex> lock(matmul_cache_->mutex);
  auto [it, inserted] = matmul_cache_->plans_.try_emplace(key);
  Plan& plan = it->second;
  if (inserted) {
    try {
      const cudaDataType_t scale_type = dst.dtype == DType::Float64 ? CUDA_R_64F : CUDA_R_32F;
      TIDE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.op, compute, scale_type));
      // cuBLASLt's A is Tide's b, its B is Tide's a (see the file comment).
      const cublasOperation_t op_a = b_cm.transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
      const cublasOperation_t op_b = a_cm.transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
      TIDE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_a,
                                                       sizeof(op_a)));
      TIDE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_b,
                                                       sizeof(op_b)));
      TIDE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                       &lt_epilogue, sizeof(lt_epilogue)));
      // Stored (not logical) shapes: op N stores m x k, op T stores k x m.
      TIDE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.a, data_type, b_cm.transpose ? k : n,
                                                   b_cm.transpose ? n : k, b_cm.ld));
      TIDE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.b, data_type, a_cm.transpose ? m : k,
                                                   a_cm.transpose ? k : m, a_cm.ld));
      TIDE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan.d, data_type, n, m, d_cm.ld));
      if (batch_count > 1) {
        const int32_t count = static_cast<int32_t>(batch_count);
        const std::pair<cublasLtMatrixLayout_t, int64_t> layouts[] = {
            {plan.a, stride_b}, {plan.b, stride_a}, {plan.d, stride_d}};
        for (const auto& [layout, stride] : layouts) {
          TIDE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
              layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
          TIDE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
              layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
        }
      }
      cublasLtMatmulPreference_t pref = nullptr;
      TIDE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
      const uint64_t workspace = workspace_bytes_;
      const uint32_t aligns[] = {static_cast<uint32_t>(align_a), static_cast<uint32_t>(align_b),
                                 static_cast<uint32_t>(align_d), static_cast<uint32_t>(align_d)};
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                           &workspace, sizeof(workspace));
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                           &aligns[0], sizeof(uint32_t));
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                           &aligns[1], sizeof(uint32_t));
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                                           &aligns[2], sizeof(uint32_t));
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
                                           &aligns[3], sizeof(uint32_t));
      cublasLtMatmulHeuristicResult_t result{};
      int found = 0;
      const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
          cublas_, plan.op, plan.a, plan.b, plan.d, plan.d, pref, 1, &result, &found);
      cublasLtMatmulPreferenceDestroy(pref);
      plan.has_algo = status == CUBLAS_STATUS_SUCCESS && found > 0;
      if (plan.has_algo) plan.algo = result.algo;
    } catch (...) {
      destroy_plan(plan);
      matmul_cache_->plans_.erase(it);
      throw;
    }
  }

  if (!plan.has_algo && bias_grad) return false;  // the caller runs the unfused form
  if (!plan.has_algo) {
    TIDE_CHECK(lt_epilogue != CUBLASLT_EPILOGUE_DEFAULT,
               "matmul: cuBLASLt has no algorithm for {} [{}, {}] @ [{}, {}] (batch {})", dst.dtype,
               m, k, k, n, batches.numel);
    // No algorithm with the fused epilogue (e.g. some float64 cases): a plain
    // matmul, then bias and activation as a kernel.
    ArrayView no_bias = bias;
    no_bias.data = nullptr;
    lock.unlock();
    matmul_float(dst, a, b, no_bias, Epilogue::None);
    kern::bias_epilogue(loop_of(dst), dst.data, bias.data, n, static_cast<kern::Epilogue>(epilogue),
                        elem(dst.dtype), stream_);
    TIDE_CUDA_CHECK_LAUNCH("matmul");
    return true;
  }

  if (has_bias) {
    TIDE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &bias.data, sizeof(bias.data)));
  }
  const float alpha_f = 1.0f, beta_f = 0.0f;
  const double alpha_d = 1.0, beta_d = 0.0;
  const bool f64 = dst.dtype == DType::Float64;
  const void* alpha = f64 ? static_cast<const void*>(&alpha_d) : &alpha_f;
  const void* beta = f64 ? static_cast<const void*>(&beta_d) : &beta_f;
  for (int64_t outer = 0; outer < outer_count; ++outer) {
    // Offsets of this outer batch (all batch dims but the innermost).
    int64_t off_d = 0, off_a = 0, off_b = 0, rest = outer;
    for (int d = inner - 1; d >= 0; --d) {
      const int64_t coord = rest % batches.sizes[d];
      rest /= batches.sizes[d];
      off_d += coord * batches.strides[0][d];
      off_a += coord * batches.strides[1][d];
      off_b += coord * batches.strides[2][d];
    }
    const char* pa = static_cast<const char*>(a.data) + off_a * esize;
    const char* pb = static_cast<const char*>(b.data) + off_b * esize;
    char* pd = static_cast<char*>(dst.data) + off_d * esize;
    TIDE_CUBLAS_CHECK(cublasLtMatmul(cublas_, plan.op, alpha, pb, plan.a, pa, plan.b, beta, pd,
                                     plan.d, pd, plan.d, &plan.algo, workspace_, workspace_bytes_,
                                     stream_));
  }
  if (epilogue == Epilogue::Tanh || epilogue == Epilogue::Sigmoid || epilogue == Epilogue::Selu) {
    kern::bias_epilogue(loop_of(dst), dst.data, nullptr, n, static_cast<kern::Epilogue>(epilogue),
                        elem(dst.dtype), stream_);
    TIDE_CUDA_CHECK_LAUNCH("matmul");
  }
  return true;
}

// ---------------------------------------------------------------------------
// linear_weight_grad
// ---------------------------------------------------------------------------

// dW[N, K] = dY[M, N]^T @ X[M, K] is matmul's dst = a @ b with a = dY^T (a
// transposed view) and b = X, so cuBLASLt sees m = K, n = N, k = M, A = X,
// B = dY^T (op T on dY's rows), D = dW: backends.md section 8's row-major
// table. BGRADB sums B over k, which is db[N] = sum of dY over the M rows,
// in the same call. Used for float32 and float64 when both operands are in a
// layout cuBLASLt reads, the bias gradient is 16-byte aligned and cuBLASLt
// offers an algorithm; else (and for M = 0) Backend's unfused default.
void CudaBackend::linear_weight_grad(const ArrayView& weight_grad, const ArrayView& bias_grad,
                                     const ArrayView& grad_out, const ArrayView& input) {
  checks::check_linear_weight_grad(weight_grad, bias_grad, grad_out, input);
  const int64_t m = input.shape[0], k = input.shape[1], n = grad_out.shape[1];
  if (n == 0) return;               // both outputs are empty
  ArrayView grad_out_t = grad_out;  // [N, M]
  grad_out_t.shape = {n, m};
  grad_out_t.strides = {grad_out.strides[1], grad_out.strides[0]};
  const bool fusable = bias_grad.data != nullptr && m > 0 && k > 0 &&
                       as_col_major(n, m, grad_out_t.strides[0], grad_out_t.strides[1]).ok &&
                       as_col_major(m, k, input.strides[0], input.strides[1]).ok &&
                       alignment_of(bias_grad.data) >= 16;
  if (fusable && matmul_float(weight_grad, grad_out_t, input, bias_grad, Epilogue::None,
                              /*bias_grad=*/true))
    return;
  Backend::linear_weight_grad(weight_grad, bias_grad, grad_out, input);
}

}  // namespace tide::cuda
