#include "backends/cpu/onednn.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstring>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "backends/cpu/loops.h"
#include "backends/cpu/math.h"
#include "backends/cpu/threads.h"

namespace tide::cpu::onednn {

namespace {

using dnnl::algorithm;
using dnnl::memory;

constexpr size_t kCacheCapacity = 256;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A CPU stream runs primitives synchronously on the calling thread; one per
// application thread keeps concurrent callers apart.
dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

// ---------------------------------------------------------------------------
// The plan cache
// ---------------------------------------------------------------------------

// Everything that defines a primitive, as a flat list of words.
class Key {
 public:
  Key& add(int64_t v) {
    words_.push_back(v);
    return *this;
  }
  Key& add(double v) {
    int64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return add(bits);
  }
  Key& add(const memory::dims& dims) {
    add(static_cast<int64_t>(dims.size()));
    for (int64_t d : dims) add(d);
    return *this;
  }
  bool operator==(const Key& other) const = default;
  size_t hash() const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the words
    for (int64_t w : words_) h = (h ^ static_cast<uint64_t>(w)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }

 private:
  std::vector<int64_t> words_;
};

struct KeyHash {
  size_t operator()(const Key& k) const { return k.hash(); }
};

// A built primitive; ok == false records that oneDNN has no implementation.
struct Plan {
  dnnl::primitive primitive;
  bool ok = false;
};

// Key -> Plan with least-recently-used eviction. Plans are returned by value
// (a primitive is a reference-counted handle), so an eviction never pulls a
// primitive from under a thread that is running it.
class PlanCache {
 public:
  template <typename Build>
  Plan get(const Key& key, Build&& build) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = index_.find(key);
      if (it != index_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);
        return it->second->second;
      }
    }
    // Built outside the lock: primitive creation can take a millisecond.
    Plan plan;
    try {
      plan.primitive = build();
      plan.ok = true;
    } catch (const dnnl::error&) {
      plan.ok = false;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (index_.find(key) == index_.end()) {
      lru_.emplace_front(key, plan);
      index_.emplace(key, lru_.begin());
      while (lru_.size() > kCacheCapacity) {
        index_.erase(lru_.back().first);
        lru_.pop_back();
      }
    }
    return plan;
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lru_.size();
  }

 private:
  std::mutex mutex_;
  std::list<std::pair<Key, Plan>> lru_;  // most recently used first
  std::unordered_map<Key, std::list<std::pair<Key, Plan>>::iterator, KeyHash> index_;
};

PlanCache& plan_cache() {
  static PlanCache cache;
  return cache;
}

enum class Kind : int64_t { Eltwise, Binary, Matmul, Softmax };

memory::desc f32_desc(const memory::dims& dims, const memory::dims& strides) {
  return memory::desc(dims, memory::data_type::f32, strides);
}

// A Linear bias as oneDNN wants it: {1, ..., 1, N}, of the output's rank.
memory::desc bias_desc(size_t rank, int64_t n) {
  memory::dims dims(rank, 1), strides(rank, n);
  dims[rank - 1] = n;
  strides[rank - 1] = 1;
  return memory::desc(dims, memory::data_type::f32, strides);
}

memory wrap(const memory::desc& md, const void* data) {
  return memory(md, cpu_engine(), const_cast<void*>(data));
}

// Runs a primitive with the thread count Tide's own loops use.
void execute(const dnnl::primitive& primitive, const std::unordered_map<int, memory>& args) {
  sync_omp_threads();
  dnnl::stream& stream = thread_stream();
  primitive.execute(stream, args);
  stream.wait();
}

// ---------------------------------------------------------------------------
// Eltwise
// ---------------------------------------------------------------------------

struct EltwiseStep {
  algorithm alg = algorithm::undef;
  float alpha = 0, beta = 0;
};

// The oneDNN algorithm for a unary op, plus an optional second step applied
// in place to the output (SELU = scale * elu). Only ops where oneDNN's JIT
// beat Tide's own vectorized loops (measured at 8K-256K elements) are listed;
// simple ones (abs, affine, sigmoid, ...) are memory bound and faster
// without the ~1 us oneDNN call. Sqrt is listed because GCC only vectorizes
// std::sqrt when the whole build uses -fno-math-errno. Avoided on purpose:
// relu and exp map NaN to numbers, log is only accurate to ~50 ulp, and an
// eltwise post-op on an eltwise primitive gave wrong results in 2.6.3 (hence
// a second primitive for SELU).
bool eltwise_steps(UnaryOp op, double alpha, EltwiseStep& first, EltwiseStep& second) {
  const float a = static_cast<float>(alpha);
  switch (op) {
    case UnaryOp::Sqrt:
      first = {algorithm::eltwise_sqrt};
      return true;
    case UnaryOp::Tanh:
      first = {algorithm::eltwise_tanh};
      return true;
    case UnaryOp::GeluErf:
      first = {algorithm::eltwise_gelu_erf};
      return true;
    case UnaryOp::GeluTanh:
      first = {algorithm::eltwise_gelu_tanh};
      return true;
    case UnaryOp::Elu:
      first = {algorithm::eltwise_elu, a};
      return true;
    case UnaryOp::Selu:
      first = {algorithm::eltwise_elu, static_cast<float>(kSeluAlpha)};
      second = {algorithm::eltwise_linear, static_cast<float>(kSeluScale), 0.f};
      return true;
    default:
      return false;
  }
}

Plan eltwise_plan(const EltwiseStep& step, const memory::dims& dims) {
  Key key;
  key.add(int64_t(Kind::Eltwise)).add(dims);
  key.add(int64_t(step.alg)).add(double(step.alpha)).add(double(step.beta));
  return plan_cache().get(key, [&] {
    dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_inference, step.alg,
                                     f32_desc(dims, {1}), step.alpha, step.beta);
    return dnnl::primitive(dnnl::eltwise_forward::primitive_desc(desc, cpu_engine()));
  });
}

}  // namespace

bool try_unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha, double beta) {
  EltwiseStep first, second;
  if (!eltwise_steps(op, alpha, first, second)) return false;
  if (!dst.is_contiguous() || !src.is_contiguous()) return false;
  const memory::dims dims = {dst.numel()};
  const memory::desc md = f32_desc(dims, {1});
  const Plan plan1 = eltwise_plan(first, dims);
  if (!plan1.ok) return false;
  Plan plan2;
  if (second.alg != algorithm::undef) {
    plan2 = eltwise_plan(second, dims);
    if (!plan2.ok) return false;
  }
  const memory out = wrap(md, dst.data);
  execute(plan1.primitive, {{DNNL_ARG_SRC, wrap(md, src.data)}, {DNNL_ARG_DST, out}});
  if (plan2.ok) execute(plan2.primitive, {{DNNL_ARG_SRC, out}, {DNNL_ARG_DST, out}});
  return true;
}

bool try_binary(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b) {
  return false;
}

// ---------------------------------------------------------------------------
// Matmul
// ---------------------------------------------------------------------------

namespace {

// The oneDNN view of one matmul operand: dims and strides, batch dims first.
struct Operand {
  memory::dims dims, strides;
};

// oneDNN wants one of the two matrix strides to be 1. A size-1 matrix dim may
// take any stride, so it gets 1 when that helps. False if the layout is
// neither plain nor transposed.
bool normalize_matrix_strides(int64_t rows, int64_t cols, int64_t& row_stride,
                              int64_t& col_stride) {
  if (cols == 1)
    col_stride = 1;
  else if (rows == 1 && col_stride != 1)
    row_stride = 1;
  return row_stride == 1 || col_stride == 1;
}

// An Operand from the coalesced batch dims of `batches` (operand k) and a
// matrix [rows, cols]. Batch dims with stride 0 become size 1: oneDNN
// broadcasts those.
Operand make_operand(const LoopPlan<3>& batches, int k, int64_t rows, int64_t cols,
                     int64_t row_stride, int64_t col_stride) {
  Operand op;
  const int64_t span = (rows - 1) * row_stride + (cols - 1) * col_stride + 1;
  for (int d = 0; d < batches.rank; ++d) {
    const int64_t stride = batches.strides[k][d];
    op.dims.push_back(stride == 0 ? 1 : batches.sizes[d]);
    op.strides.push_back(stride == 0 ? span : stride);
  }
  op.dims.push_back(rows);
  op.dims.push_back(cols);
  op.strides.push_back(row_stride);
  op.strides.push_back(col_stride);
  return op;
}

void add_post_ops(Epilogue epilogue, dnnl::post_ops& ops) {
  switch (epilogue) {
    case Epilogue::None:
      break;
    case Epilogue::Relu:
      ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
      break;
    case Epilogue::Tanh:
      ops.append_eltwise(1.f, algorithm::eltwise_tanh, 0.f, 0.f);
      break;
    case Epilogue::Sigmoid:
      ops.append_eltwise(1.f, algorithm::eltwise_logistic, 0.f, 0.f);
      break;
    case Epilogue::Selu:  // selu(x) = scale * elu_alpha(x)
      ops.append_eltwise(1.f, algorithm::eltwise_elu, static_cast<float>(kSeluAlpha), 0.f);
      ops.append_eltwise(1.f, algorithm::eltwise_linear, static_cast<float>(kSeluScale), 0.f);
      break;
  }
}

Plan matmul_plan(const Operand& a, const Operand& b, const Operand& dst, bool has_bias,
                 Epilogue epilogue) {
  Key key;
  key.add(int64_t(Kind::Matmul)).add(a.dims).add(a.strides).add(b.dims).add(b.strides);
  key.add(dst.dims).add(dst.strides).add(int64_t(has_bias)).add(int64_t(epilogue));
  return plan_cache().get(key, [&] {
    const memory::desc a_md = f32_desc(a.dims, a.strides), b_md = f32_desc(b.dims, b.strides),
                       dst_md = f32_desc(dst.dims, dst.strides);
    dnnl::primitive_attr attr;
    dnnl::post_ops ops;
    add_post_ops(epilogue, ops);
    attr.set_post_ops(ops);
    if (has_bias) {
      const memory::desc bias_md = bias_desc(dst.dims.size(), dst.dims[dst.dims.size() - 1]);
      dnnl::matmul::desc desc(a_md, b_md, bias_md, dst_md);
      return dnnl::primitive(dnnl::matmul::primitive_desc(desc, attr, cpu_engine()));
    }
    dnnl::matmul::desc desc(a_md, b_md, dst_md);
    return dnnl::primitive(dnnl::matmul::primitive_desc(desc, attr, cpu_engine()));
  });
}

}  // namespace

bool try_matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b, const ArrayView& bias,
                Epilogue epilogue) {
  const int r = dst.rank();
  const int64_t m = dst.shape[r - 2], n = dst.shape[r - 1], k = a.shape[r - 1];
  if (k == 0 || double(m) * double(n) * double(k) < double(kMatmulMinWork)) return false;
  if (!dst.is_contiguous()) return false;
  int64_t a_row = a.strides[r - 2], a_col = a.strides[r - 1];
  int64_t b_row = b.strides[r - 2], b_col = b.strides[r - 1];
  if (!normalize_matrix_strides(m, k, a_row, a_col) ||
      !normalize_matrix_strides(k, n, b_row, b_col))
    return false;

  LoopPlan<3> batches;  // operands: dst, a, b
  batches.numel = 1;
  for (int d = 0; d < r - 2; ++d) {
    batches.push_dim(dst.shape[d], {dst.strides[d], a.strides[d], b.strides[d]});
    batches.numel *= dst.shape[d];
  }
  const Operand a_op = make_operand(batches, 1, m, k, a_row, a_col);
  const Operand b_op = make_operand(batches, 2, k, n, b_row, b_col);
  const Operand dst_op = make_operand(batches, 0, m, n, n, 1);
  const bool has_bias = bias.data != nullptr;

  auto args = [&](const Plan& plan, const Operand& ao, const Operand& bo, const Operand& dso,
                  int64_t a_off, int64_t b_off, int64_t dst_off) {
    std::unordered_map<int, memory> map = {
        {DNNL_ARG_SRC, wrap(f32_desc(ao.dims, ao.strides), a.ptr<float>() + a_off)},
        {DNNL_ARG_WEIGHTS, wrap(f32_desc(bo.dims, bo.strides), b.ptr<float>() + b_off)},
        {DNNL_ARG_DST, wrap(f32_desc(dso.dims, dso.strides), dst.ptr<float>() + dst_off)}};
    if (has_bias) map.emplace(DNNL_ARG_BIAS, wrap(bias_desc(dso.dims.size(), n), bias.data));
    return map;
  };

  // One batched primitive when oneDNN accepts the batch strides...
  Plan plan = matmul_plan(a_op, b_op, dst_op, has_bias, epilogue);
  if (plan.ok) {
    execute(plan.primitive, args(plan, a_op, b_op, dst_op, 0, 0, 0));
    return true;
  }
  if (batches.rank == 0) return false;
  // ...else one 2-D primitive run batch by batch.
  const LoopPlan<3> none;
  const Operand a2 = make_operand(none, 1, m, k, a_row, a_col);
  const Operand b2 = make_operand(none, 2, k, n, b_row, b_col);
  const Operand d2 = make_operand(none, 0, m, n, n, 1);
  plan = matmul_plan(a2, b2, d2, has_bias, epilogue);
  if (!plan.ok) return false;
  for (int64_t i = 0; i < batches.numel; ++i) {
    int64_t off[3];
    offsets_at(batches, i, off);
    execute(plan.primitive, args(plan, a2, b2, d2, off[1], off[2], off[0]));
  }
  return true;
}

// ---------------------------------------------------------------------------
// Softmax
// ---------------------------------------------------------------------------

bool try_softmax(const ArrayView& dst, const ArrayView& src, bool log) {
  const int64_t n = src.numel();
  const int64_t row = src.rank() == 0 ? 1 : src.shape[src.rank() - 1];
  if (n < kSoftmaxMinElements || row < kSoftmaxMinRow) return false;
  const memory::dims dims = {n / row, row};
  const memory::desc md = f32_desc(dims, {row, 1});
  const algorithm alg = log ? algorithm::softmax_log : algorithm::softmax_accurate;
  Key key;
  key.add(int64_t(Kind::Softmax)).add(dims).add(int64_t(alg));
  Plan plan = plan_cache().get(key, [&] {
    dnnl::softmax_v2_forward::desc desc(dnnl::prop_kind::forward_inference, alg, md, md, 1);
    return dnnl::primitive(dnnl::softmax_v2_forward::primitive_desc(desc, cpu_engine()));
  });
  if (!plan.ok) return false;
  execute(plan.primitive, {{DNNL_ARG_SRC, wrap(md, src.data)}, {DNNL_ARG_DST, wrap(md, dst.data)}});
  return true;
}

size_t cached_plans() {
  return plan_cache().size();
}

}  // namespace tide::cpu::onednn
