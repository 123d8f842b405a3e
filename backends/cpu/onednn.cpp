// oneDNN fast paths (see onednn.h). Everything oneDNN-specific stays in this
// file, written against names that survive in oneDNN v3 (softmax_v2,
// eltwise_gelu_erf, ...), so a port only touches the descriptor code here.
#include "backends/cpu/onednn.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "backends/cpu/loops.h"
#include "backends/cpu/math.h"
#include "backends/cpu/threads.h"

namespace tide::cpu::onednn {

namespace {

using dnnl::algorithm;
using dnnl::memory;

constexpr size_t kCacheCapacity = 256;

std::atomic<bool> g_enabled{true};  // see set_enabled()

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
// Plans and the plan cache
// ---------------------------------------------------------------------------

// Everything that defines a primitive, as a short list of words. Fixed
// capacity, so building a key on every call allocates nothing.
class Key {
 public:
  Key& add(int64_t v) {
    TIDE_CHECK(size_ < kMaxWords, "onednn: plan key overflow");
    words_[size_++] = v;
    return *this;
  }
  Key& add(double v) {
    int64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    return add(bits);
  }
  bool operator==(const Key& other) const {
    return size_ == other.size_ && std::equal(words_, words_ + size_, other.words_);
  }
  size_t hash() const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the words
    for (int i = 0; i < size_; ++i) h = (h ^ static_cast<uint64_t>(words_[i])) * 1099511628211ull;
    return static_cast<size_t>(h);
  }

 private:
  static constexpr int kMaxWords = 64;
  int64_t words_[kMaxWords];
  int size_ = 0;
};

struct KeyHash {
  size_t operator()(const Key& k) const { return k.hash(); }
};

// A built primitive with one memory object per argument. Each call points
// the memory objects at the caller's buffers (set_data_handle), which costs
// far less than creating them (~300 ns each). The scratchpad is the running
// thread's own buffer (user scratchpad mode): oneDNN's library-managed one
// (with its default build options) must not be used from a thread other than
// the one that built the primitive, and a cached plan runs on whichever
// application thread or pool worker needs it.
struct Plan {
  dnnl::primitive primitive;
  std::unordered_map<int, memory> args;
  std::mutex mutex;  // one caller at a time rebinds and runs this plan
};
// Null means oneDNN has no implementation for that key (remembered too).
using PlanPtr = std::shared_ptr<Plan>;

// Attributes every primitive is built with: the caller provides the scratchpad.
dnnl::primitive_attr plan_attr() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

// A plan running primitive descriptor `pd` (built with plan_attr()), with a
// memory object per argument and one for the scratchpad if it needs one.
template <typename PrimitiveDesc>
PlanPtr make_plan(const PrimitiveDesc& pd,
                  std::initializer_list<std::pair<int, memory::desc>> args) {
  auto plan = std::make_shared<Plan>();
  plan->primitive = dnnl::primitive(pd);
  for (const auto& [id, md] : args) plan->args.emplace(id, memory(md, cpu_engine(), nullptr));
  const memory::desc scratchpad = pd.scratchpad_desc();
  if (scratchpad.get_size() > 0)
    plan->args.emplace(DNNL_ARG_SCRATCHPAD, memory(scratchpad, cpu_engine(), nullptr));
  return plan;
}

// Key -> plan with least-recently-used eviction. Plans are shared pointers,
// so an eviction never frees a plan that another thread is running.
class PlanCache {
 public:
  template <typename Build>
  PlanPtr get(const Key& key, Build&& build) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = index_.find(key);
      if (it != index_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second);
        return it->second->second;
      }
    }
    // Built outside the lock: creating a primitive can take a millisecond.
    built_.fetch_add(1, std::memory_order_relaxed);
    PlanPtr plan;
    try {
      plan = build();
    } catch (const dnnl::error&) {
      plan = nullptr;  // unsupported layout or shape: the caller falls back
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
  size_t built() const { return built_.load(std::memory_order_relaxed); }

 private:
  std::atomic<size_t> built_{0};
  std::mutex mutex_;
  std::list<std::pair<Key, PlanPtr>> lru_;  // most recently used first
  std::unordered_map<Key, std::list<std::pair<Key, PlanPtr>>::iterator, KeyHash> index_;
};

PlanCache& plan_cache() {
  static PlanCache cache;
  return cache;
}

// This thread's scratchpad, grown to at least `bytes`.
void* thread_scratchpad(size_t bytes) {
  struct alignas(64) Line {
    char bytes[64];
  };
  thread_local std::vector<Line> buffer;
  if (buffer.size() * sizeof(Line) < bytes)
    buffer.resize((bytes + sizeof(Line) - 1) / sizeof(Line));
  return buffer.data();
}

// Points the plan's arguments at the given buffers and runs it on this thread
// alone: callers that want several threads cut the work into chunks, one
// primitive per chunk, on Tide's pool (ChunkedJob below).
void run(Plan& plan, std::initializer_list<std::pair<int, const void*>> buffers) {
  std::lock_guard<std::mutex> lock(plan.mutex);
  for (const auto& [id, data] : buffers) plan.args.at(id).set_data_handle(const_cast<void*>(data));
  auto scratchpad = plan.args.find(DNNL_ARG_SCRATCHPAD);
  if (scratchpad != plan.args.end())
    scratchpad->second.set_data_handle(thread_scratchpad(scratchpad->second.get_desc().get_size()));
  SingleOmpThread one_thread;
  dnnl::stream& stream = thread_stream();
  plan.primitive.execute(stream, plan.args);
  stream.wait();
}

// A job cut into chunks of [0, n), one per thread of Tide's pool (each at
// least `grain` long; see chunk_count in loops.h), with a plan per chunk.
// The chunk index is part of each plan's key, so two chunks never wait on one
// plan's mutex. Every plan is built before any chunk runs: if oneDNN declines
// one, nothing has been written and the caller's loops take over.
class ChunkedJob {
 public:
  static constexpr int64_t kMaxChunks = 64;

  // One chunk per thread, each at least `grain` long: for primitives whose
  // every output element comes out the same however the work is cut.
  // build(chunk, begin, end) returns the plan for that chunk (null: none).
  template <typename Build>
  bool plan(int64_t n, int64_t grain, Build&& build) {
    return plan_chunks(n, std::min(chunk_count(n, grain), kMaxChunks), 0, build);
  }

  // Chunks of `size` (the last one shorter), whatever the thread count: for
  // primitives whose rounding depends on the shape they are given (matmul).
  template <typename Build>
  bool plan_fixed(int64_t n, int64_t size, Build&& build) {
    size = std::max(size, (n + kMaxChunks - 1) / kMaxChunks);
    return plan_chunks(n, (n + size - 1) / size, size, build);
  }

  // Calls body(plan, begin, end) for every chunk, in parallel.
  template <typename Body>
  void run(Body&& body) {
    run_tasks(chunks_, [&](int64_t i, int64_t) {
      int64_t begin, end;
      range(i, begin, end);
      body(*plans_[i], begin, end);
    });
  }

 private:
  template <typename Build>
  bool plan_chunks(int64_t n, int64_t chunks, int64_t fixed_size, Build&& build) {
    n_ = n;
    chunks_ = std::max<int64_t>(chunks, 1);
    fixed_size_ = fixed_size;
    for (int64_t i = 0; i < chunks_; ++i) {
      int64_t begin, end;
      range(i, begin, end);
      plans_[i] = build(i, begin, end);
      if (!plans_[i]) return false;
    }
    return true;
  }

  void range(int64_t i, int64_t& begin, int64_t& end) const {
    if (fixed_size_ == 0) return chunk_range(n_, chunks_, i, begin, end);
    begin = i * fixed_size_;
    end = std::min(n_, begin + fixed_size_);
  }

  int64_t n_ = 0, chunks_ = 0, fixed_size_ = 0;
  std::array<PlanPtr, kMaxChunks> plans_;
};

// Elementwise primitives are cut at multiples of this many elements, so every
// chunk but the last starts on a 64-byte line and runs whole vectors.
constexpr int64_t kEltwiseUnit = 16;

enum class Kind : int64_t {
  Eltwise,
  Matmul,
  Softmax,
  Binary,
  EltwiseBackward,
  LayerNorm,
  LayerNormBackward,
  LinearWeightGrad
};

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
      first = {algorithm::eltwise_elu, static_cast<float>(scalar::kSeluAlpha)};
      second = {algorithm::eltwise_linear, static_cast<float>(scalar::kSeluScale), 0.f};
      return true;
    default:
      return false;
  }
}

PlanPtr eltwise_plan(const EltwiseStep& step, int64_t n, int64_t chunk) {
  Key key;
  key.add(int64_t(Kind::Eltwise)).add(n).add(chunk).add(int64_t(step.alg));
  key.add(double(step.alpha)).add(double(step.beta));
  return plan_cache().get(key, [&] {
    const memory::desc md({n}, memory::data_type::f32, memory::dims{1});
    dnnl::eltwise_forward::desc desc(dnnl::prop_kind::forward_inference, step.alg, md, step.alpha,
                                     step.beta);
    dnnl::eltwise_forward::primitive_desc pd(desc, plan_attr(), cpu_engine());
    return make_plan(pd, {{DNNL_ARG_SRC, md}, {DNNL_ARG_DST, md}});
  });
}

// Elements [begin, end) of n, for a chunk [begin, end) of kEltwiseUnit blocks.
void unit_range(int64_t n, int64_t& begin, int64_t& end) {
  begin *= kEltwiseUnit;
  end = std::min(end * kEltwiseUnit, n);
}

// Plans `step` over n elements, chunked in units of kEltwiseUnit.
bool plan_eltwise(ChunkedJob& job, const EltwiseStep& step, int64_t n) {
  const int64_t units = (n + kEltwiseUnit - 1) / kEltwiseUnit;
  return job.plan(units, kEltwiseMinParallel / kEltwiseUnit,
                  [&](int64_t chunk, int64_t begin, int64_t end) {
                    unit_range(n, begin, end);
                    return eltwise_plan(step, end - begin, chunk);
                  });
}

void run_eltwise(ChunkedJob& job, int64_t n, const float* src, float* dst) {
  job.run([&](Plan& plan, int64_t begin, int64_t end) {
    unit_range(n, begin, end);
    run(plan, {{DNNL_ARG_SRC, src + begin}, {DNNL_ARG_DST, dst + begin}});
  });
}

}  // namespace

bool try_unary(UnaryOp op, const ArrayView& dst, const ArrayView& src, double alpha, double beta) {
  EltwiseStep first, second;
  if (!enabled() || !eltwise_steps(op, alpha, first, second)) return false;
  if (!dst.is_contiguous() || !src.is_contiguous()) return false;
  const int64_t n = dst.numel();
  const bool two_steps = second.alg != algorithm::undef;
  ChunkedJob job1, job2;
  if (!plan_eltwise(job1, first, n) || (two_steps && !plan_eltwise(job2, second, n))) return false;
  run_eltwise(job1, n, src.ptr<const float>(), dst.ptr<float>());
  if (two_steps) run_eltwise(job2, n, dst.ptr<float>(), dst.ptr<float>());
  return true;
}

// ---------------------------------------------------------------------------
// Matmul
// ---------------------------------------------------------------------------

namespace {

// The oneDNN view of one matmul operand: batch dims first, then the matrix.
struct Operand {
  int rank = 0;
  int64_t dims[kMaxDims], strides[kMaxDims];

  void push(int64_t dim, int64_t stride) {
    dims[rank] = dim;
    strides[rank] = stride;
    ++rank;
  }
  memory::desc desc() const {
    return memory::desc(memory::dims(dims, dims + rank), memory::data_type::f32,
                        memory::dims(strides, strides + rank));
  }
  void add_to(Key& key) const {
    key.add(int64_t(rank));
    for (int d = 0; d < rank; ++d) key.add(dims[d]).add(strides[d]);
  }
};

// oneDNN wants one of the two matrix strides to be 1. A size-1 matrix dim may
// take any stride, so it gets 1 when that helps. False if the layout is
// neither plain nor transposed.
bool normalize_matrix_strides(int64_t rows, int64_t cols, int64_t& row_stride,
                              int64_t& col_stride) {
  if (cols == 1) {
    col_stride = 1;
  } else if (rows == 1 && col_stride != 1) {
    row_stride = 1;
  }
  return row_stride == 1 || col_stride == 1;
}

// An Operand from the coalesced batch dims of `batches` (operand k) and a
// matrix [rows, cols]. Batch dims with stride 0 become size 1, which oneDNN
// broadcasts.
Operand make_operand(const LoopPlan<3>& batches, int k, int64_t rows, int64_t cols,
                     int64_t row_stride, int64_t col_stride) {
  Operand op;
  const int64_t span = (rows - 1) * row_stride + (cols - 1) * col_stride + 1;
  for (int d = 0; d < batches.rank; ++d) {
    const int64_t stride = batches.strides[k][d];
    op.push(stride == 0 ? 1 : batches.sizes[d], stride == 0 ? span : stride);
  }
  op.push(rows, row_stride);
  op.push(cols, col_stride);
  return op;
}

// A Linear bias as oneDNN wants it: {1, ..., 1, N}, of the output's rank.
memory::desc bias_desc(int rank, int64_t n) {
  memory::dims dims(rank, 1), strides(rank, n);
  dims[rank - 1] = n;
  strides[rank - 1] = 1;
  return memory::desc(dims, memory::data_type::f32, strides);
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
      ops.append_eltwise(1.f, algorithm::eltwise_elu, static_cast<float>(scalar::kSeluAlpha), 0.f);
      ops.append_eltwise(1.f, algorithm::eltwise_linear, static_cast<float>(scalar::kSeluScale),
                         0.f);
      break;
  }
}

PlanPtr matmul_plan(const Operand& a, const Operand& b, const Operand& dst, bool has_bias,
                    Epilogue epilogue, int64_t chunk) {
  Key key;
  key.add(int64_t(Kind::Matmul)).add(chunk);
  a.add_to(key);
  b.add_to(key);
  dst.add_to(key);
  key.add(int64_t(has_bias)).add(int64_t(epilogue));
  return plan_cache().get(key, [&] {
    const memory::desc a_md = a.desc(), b_md = b.desc(), dst_md = dst.desc();
    const memory::desc bias_md = bias_desc(dst.rank, dst.dims[dst.rank - 1]);
    dnnl::primitive_attr attr = plan_attr();
    dnnl::post_ops ops;
    add_post_ops(epilogue, ops);
    attr.set_post_ops(ops);
    const auto desc = has_bias ? dnnl::matmul::desc(a_md, b_md, bias_md, dst_md)
                               : dnnl::matmul::desc(a_md, b_md, dst_md);
    dnnl::matmul::primitive_desc pd(desc, attr, cpu_engine());
    if (has_bias) {
      return make_plan(pd, {{DNNL_ARG_SRC, a_md},
                            {DNNL_ARG_WEIGHTS, b_md},
                            {DNNL_ARG_BIAS, bias_md},
                            {DNNL_ARG_DST, dst_md}});
    }
    return make_plan(pd, {{DNNL_ARG_SRC, a_md}, {DNNL_ARG_WEIGHTS, b_md}, {DNNL_ARG_DST, dst_md}});
  });
}

// How try_matmul cuts a product (batches of [m, k] @ [k, n]) into chunks, one
// primitive each. oneDNN rounds a product differently for different shapes
// when K is long (its blocking over K follows M and N). Up to
// kMatmulSplitExactK every cut of rows or columns gives the full product's
// bits, so the work is cut one chunk per thread; above it the chunks are cut
// by shape alone, never by thread count: about kMatmulChunkWork multiply-adds
// each, as rows (at least a quarter of M, as oneDNN's kernels lose 16% at
// 1024^3 in chunks of 64 rows, and between kMatmulChunkRows and 8x that) or,
// with fewer than 2 * kMatmulChunkRows rows, kMatmulChunkCols columns.
struct MatmulCut {
  bool rows;        // cut rows (else columns)
  int64_t extent;   // what is cut: m or n
  bool per_thread;  // one chunk per thread, each at least `grain` long
  int64_t grain;
  int64_t size;    // else chunks of `size` (the last one shorter)
  int64_t wanted;  // how many chunks the work asks for
};

MatmulCut cut_matmul(int64_t m, int64_t n, int64_t k, int64_t batches) {
  // Narrow products (N or K of a few) are bound by reading a and writing
  // dst, so that traffic counts as work too.
  const double macs = double(m) * double(n) * double(k);
  const double traffic = 16.0 * (double(m) * double(k) + double(m) * double(n));
  const double work = std::max(macs, traffic) * double(batches);
  MatmulCut cut;
  cut.rows = m >= 2 * kMatmulChunkRows || n < 2 * kMatmulChunkCols;
  cut.extent = cut.rows ? m : n;
  cut.per_thread = k <= kMatmulSplitExactK;
  cut.grain = std::max<int64_t>(
      16, static_cast<int64_t>(
              std::ceil(double(kMatmulSplitWork) * double(cut.extent) / std::max(work, 1.0))));
  cut.wanted = static_cast<int64_t>(std::min(work / double(kMatmulChunkWork), 1e6));
  cut.size = cut.extent;
  if (cut.wanted >= 2 && cut.rows) {
    const int64_t rows = std::max((m + cut.wanted - 1) / cut.wanted, m / 4);
    cut.size = std::clamp((rows + 15) / 16 * 16, kMatmulChunkRows, 8 * kMatmulChunkRows);
  } else if (cut.wanted >= 2) {
    cut.size = kMatmulChunkCols;
  }
  return cut;
}

}  // namespace

bool try_matmul(const ArrayView& dst, const ArrayView& a, const ArrayView& b, const ArrayView& bias,
                Epilogue epilogue) {
  const int r = dst.rank();
  const int64_t m = dst.shape[r - 2], n = dst.shape[r - 1], k = a.shape[r - 1];
  if (!enabled() || k == 0 || double(m) * double(n) * double(k) < double(kMatmulMinWork))
    return false;
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
  const bool has_bias = bias.data != nullptr;
  const float* bias_data = has_bias ? bias.ptr<const float>() : nullptr;
  auto run_at = [&](Plan& plan, int64_t dst_off, int64_t a_off, int64_t b_off, int64_t bias_off) {
    if (has_bias) {
      run(plan, {{DNNL_ARG_SRC, a.ptr<const float>() + a_off},
                 {DNNL_ARG_WEIGHTS, b.ptr<const float>() + b_off},
                 {DNNL_ARG_BIAS, bias_data + bias_off},
                 {DNNL_ARG_DST, dst.ptr<float>() + dst_off}});
    } else {
      run(plan, {{DNNL_ARG_SRC, a.ptr<const float>() + a_off},
                 {DNNL_ARG_WEIGHTS, b.ptr<const float>() + b_off},
                 {DNNL_ARG_DST, dst.ptr<float>() + dst_off}});
    }
  };
  const MatmulCut cut = cut_matmul(m, n, k, batches.numel);

  // One batched primitive per chunk when oneDNN accepts the batch strides...
  const LoopPlan<3> none;
  ChunkedJob job;
  auto build = [&](int64_t chunk, int64_t begin, int64_t end) {
    const int64_t rows = cut.rows ? end - begin : m;
    const int64_t cols = cut.rows ? n : end - begin;
    return matmul_plan(make_operand(batches, 1, rows, k, a_row, a_col),
                       make_operand(batches, 2, k, cols, b_row, b_col),
                       make_operand(batches, 0, rows, cols, n, 1), has_bias, epilogue, chunk);
  };
  const bool batched = cut.per_thread ? job.plan(cut.extent, cut.grain, build)
                                      : job.plan_fixed(cut.extent, cut.size, build);
  if (batched) {
    job.run([&](Plan& plan, int64_t begin, int64_t end) {
      if (cut.rows) {
        run_at(plan, begin * n, begin * a_row, 0, 0);
      } else {
        run_at(plan, begin, 0, begin * b_col, begin);
      }
    });
    return true;
  }
  if (batches.rank == 0) return false;
  // ...else one 2-D primitive per matrix, the chunks cutting the batch.
  const int64_t per_chunk =
      cut.wanted >= 2 ? std::max<int64_t>(1, kMatmulChunkWork / std::max<int64_t>(1, m * n * k))
                      : batches.numel;
  if (!job.plan_fixed(batches.numel, per_chunk, [&](int64_t chunk, int64_t, int64_t) {
        return matmul_plan(make_operand(none, 1, m, k, a_row, a_col),
                           make_operand(none, 2, k, n, b_row, b_col),
                           make_operand(none, 0, m, n, n, 1), has_bias, epilogue, chunk);
      }))
    return false;
  job.run([&](Plan& plan, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t off[3];
      offsets_at(batches, i, off);
      run_at(plan, off[0], off[1], off[2], 0);
    }
  });
  return true;
}

// ---------------------------------------------------------------------------
// Softmax
// ---------------------------------------------------------------------------

bool try_softmax(const ArrayView& dst, const ArrayView& src, bool log) {
  const int64_t n = src.numel();
  const int64_t row = src.rank() == 0 ? 1 : src.shape[src.rank() - 1];
  if (!enabled() || n < kSoftmaxMinElements || row < kSoftmaxMinRow) return false;
  const algorithm alg = log ? algorithm::softmax_log : algorithm::softmax_accurate;
  ChunkedJob job;  // chunks of whole rows
  const int64_t rows = n / row;
  if (!job.plan(rows, (kEltwiseMinParallel + row - 1) / row,
                [&](int64_t chunk, int64_t begin, int64_t end) {
                  Key key;
                  key.add(int64_t(Kind::Softmax)).add(end - begin).add(row).add(chunk);
                  key.add(int64_t(alg));
                  return plan_cache().get(key, [&] {
                    const memory::desc md({end - begin, row}, memory::data_type::f32,
                                          memory::dims{row, 1});
                    dnnl::softmax_v2_forward::desc desc(dnnl::prop_kind::forward_inference, alg, md,
                                                        md, 1);
                    dnnl::softmax_v2_forward::primitive_desc pd(desc, plan_attr(), cpu_engine());
                    return make_plan(pd, {{DNNL_ARG_SRC, md}, {DNNL_ARG_DST, md}});
                  });
                }))
    return false;
  job.run([&](Plan& plan, int64_t begin, int64_t) {
    run(plan, {{DNNL_ARG_SRC, src.ptr<const float>() + begin * row},
               {DNNL_ARG_DST, dst.ptr<float>() + begin * row}});
  });
  return true;
}

// ---------------------------------------------------------------------------
// Binary
// ---------------------------------------------------------------------------

namespace {

// Only ops whose oneDNN result is bit-identical to the loops' (IEEE add, sub,
// mul, div). Maximum and Minimum stay on the loops: see onednn.h.
algorithm binary_algorithm(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add:
      return algorithm::binary_add;
    case BinaryOp::Sub:
      return algorithm::binary_sub;
    case BinaryOp::Mul:
      return algorithm::binary_mul;
    case BinaryOp::Div:
      return algorithm::binary_div;
    default:
      return algorithm::undef;
  }
}

// Operand k of `loop` as oneDNN sees it: a dim where it has stride 0 becomes
// size 1, which oneDNN broadcasts. False unless what is left is dense
// row-major (strided inputs would run in oneDNN's slow reference code).
bool binary_operand(const LoopPlan<3>& loop, int k, Operand& op) {
  op.rank = loop.rank;
  int64_t expected = 1;
  for (int d = loop.rank - 1; d >= 0; --d) {
    const int64_t stride = loop.strides[k][d];
    const int64_t size = stride == 0 ? 1 : loop.sizes[d];
    if (size > 1 && stride != expected) return false;
    op.dims[d] = size;
    op.strides[d] = expected;
    expected *= size;
  }
  return true;
}

bool is_broadcast(const Operand& op, const LoopPlan<3>& loop) {
  for (int d = 0; d < loop.rank; ++d)
    if (op.dims[d] != loop.sizes[d]) return true;
  return false;
}

}  // namespace

bool try_binary(BinaryOp op, const ArrayView& dst, const ArrayView& a, const ArrayView& b) {
  const algorithm alg = binary_algorithm(op);
  if (!enabled() || alg == algorithm::undef || !dst.is_contiguous()) return false;
  // Coalesced dims: a contiguous [256, 64] + [256, 64] is one run of 16384.
  const auto loop = make_loop_plan<3>({&dst, &a, &b});
  if (loop.rank == 0) return false;
  Operand src0, src1, out;
  if (!binary_operand(loop, 1, src0) || !binary_operand(loop, 2, src1)) return false;
  binary_operand(loop, 0, out);
  const void* data0 = a.data;
  const void* data1 = b.data;
  // oneDNN 2.6 broadcasts only its second input; add and mul commute exactly.
  if (is_broadcast(src0, loop)) {
    if (is_broadcast(src1, loop) || (op != BinaryOp::Add && op != BinaryOp::Mul)) return false;
    std::swap(src0, src1);
    std::swap(data0, data1);
  }
  Key key;
  key.add(int64_t(Kind::Binary)).add(int64_t(alg));
  src0.add_to(key);
  src1.add_to(key);
  const PlanPtr plan = plan_cache().get(key, [&] {
    const memory::desc md0 = src0.desc(), md1 = src1.desc(), dst_md = out.desc();
    dnnl::binary::primitive_desc pd(dnnl::binary::desc(alg, md0, md1, dst_md), plan_attr(),
                                    cpu_engine());
    return make_plan(pd, {{DNNL_ARG_SRC_0, md0}, {DNNL_ARG_SRC_1, md1}, {DNNL_ARG_DST, dst_md}});
  });
  if (!plan) return false;
  // One primitive on the calling thread: this path is not routed (onednn.h).
  run(*plan, {{DNNL_ARG_SRC_0, data0}, {DNNL_ARG_SRC_1, data1}, {DNNL_ARG_DST, dst.data}});
  return true;
}

// ---------------------------------------------------------------------------
// Eltwise backward
// ---------------------------------------------------------------------------

namespace {

// The oneDNN algorithm whose backward is the *Grad op's definition, for the
// ops where it is faster (onednn.h). Both agree with the loops in binary.cpp
// for x = +-0, NaN and +-Inf (tests/test_backend_onednn.cpp).
algorithm eltwise_grad_algorithm(BinaryOp op) {
  switch (op) {
    case BinaryOp::GeluErfGrad:
      return algorithm::eltwise_gelu_erf;
    case BinaryOp::GeluTanhGrad:
      return algorithm::eltwise_gelu_tanh;
    default:
      return algorithm::undef;
  }
}

}  // namespace

bool try_eltwise_backward(BinaryOp op, const ArrayView& grad_src, const ArrayView& grad_dst,
                          const ArrayView& x) {
  const algorithm alg = eltwise_grad_algorithm(op);
  if (!enabled() || alg == algorithm::undef) return false;
  if (!grad_src.is_contiguous() || !grad_dst.is_contiguous() || !x.is_contiguous()) return false;
  const int64_t n = grad_src.numel();
  ChunkedJob job;
  if (!job.plan((n + kEltwiseUnit - 1) / kEltwiseUnit, kEltwiseMinParallel / kEltwiseUnit,
                [&](int64_t chunk, int64_t begin, int64_t end) {
                  unit_range(n, begin, end);
                  const int64_t size = end - begin;
                  Key key;
                  key.add(int64_t(Kind::EltwiseBackward)).add(size).add(chunk).add(int64_t(alg));
                  return plan_cache().get(key, [&] {
                    const memory::desc md({size}, memory::data_type::f32, memory::dims{1});
                    // oneDNN 2.6 builds a backward primitive from a forward one (its "hint").
                    dnnl::eltwise_forward::primitive_desc hint(
                        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, md, 0.f,
                                                    0.f),
                        cpu_engine());
                    dnnl::eltwise_backward::primitive_desc pd(
                        dnnl::eltwise_backward::desc(alg, md, md, 0.f, 0.f), plan_attr(),
                        cpu_engine(), hint);
                    return make_plan(
                        pd, {{DNNL_ARG_SRC, md}, {DNNL_ARG_DIFF_DST, md}, {DNNL_ARG_DIFF_SRC, md}});
                  });
                }))
    return false;
  job.run([&](Plan& plan, int64_t begin, int64_t end) {
    unit_range(n, begin, end);
    run(plan, {{DNNL_ARG_SRC, x.ptr<const float>() + begin},
               {DNNL_ARG_DIFF_DST, grad_dst.ptr<const float>() + begin},
               {DNNL_ARG_DIFF_SRC, grad_src.ptr<float>() + begin}});
  });
  return true;
}

// ---------------------------------------------------------------------------
// Layer normalization
// ---------------------------------------------------------------------------

namespace {

struct LayerNormShape {
  int64_t rows, length;
  memory::desc data() const {
    return memory::desc({rows, length}, memory::data_type::f32, memory::dims{length, 1});
  }
  memory::desc stats() const {
    return memory::desc({rows}, memory::data_type::f32, memory::dims{1});
  }
  memory::desc params() const {
    return memory::desc({length}, memory::data_type::f32, memory::dims{1});
  }
};

LayerNormShape layer_norm_shape(const ArrayView& x) {
  const int64_t length = x.rank() == 0 ? 1 : x.shape[x.rank() - 1];
  return {length == 0 ? 0 : x.numel() / length, length};
}

dnnl::normalization_flags layer_norm_flags(bool scale, bool shift) {
  auto flags = dnnl::normalization_flags::none;
  if (scale) flags |= dnnl::normalization_flags::use_scale;
  if (shift) flags |= dnnl::normalization_flags::use_shift;
  return flags;
}

// The forward primitive desc, also the hint the backward one is built from.
// Training mode: mean and variance are outputs.
dnnl::layer_normalization_forward::primitive_desc layer_norm_forward_pd(
    const LayerNormShape& shape, float eps, dnnl::normalization_flags flags) {
  return dnnl::layer_normalization_forward::primitive_desc(
      dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_training, shape.data(),
                                              shape.stats(), eps, flags),
      plan_attr(), cpu_engine());
}

}  // namespace

bool try_layer_norm(const ArrayView& dst, const ArrayView& mean, const ArrayView& rstd,
                    const ArrayView& x, const ArrayView& weight, const ArrayView& bias,
                    double eps) {
  if (!enabled()) return false;
  const LayerNormShape shape = layer_norm_shape(x);
  if (shape.rows == 0) return false;
  const bool has_weight = weight.data != nullptr, has_bias = bias.data != nullptr;
  const float eps_f = static_cast<float>(eps);
  const auto flags = layer_norm_flags(has_weight, has_bias);
  ChunkedJob job;  // chunks of whole rows
  if (!job.plan(shape.rows, (kEltwiseMinParallel + shape.length - 1) / shape.length,
                [&](int64_t chunk, int64_t begin, int64_t end) {
                  const LayerNormShape part{end - begin, shape.length};
                  Key key;
                  key.add(int64_t(Kind::LayerNorm)).add(part.rows).add(part.length).add(chunk);
                  key.add(int64_t(flags)).add(double(eps_f));
                  return plan_cache().get(key, [&] {
                    const auto pd = layer_norm_forward_pd(part, eps_f, flags);
                    return make_plan(pd, {{DNNL_ARG_SRC, part.data()},
                                          {DNNL_ARG_DST, part.data()},
                                          {DNNL_ARG_MEAN, part.stats()},
                                          {DNNL_ARG_VARIANCE, part.stats()},
                                          {DNNL_ARG_SCALE, part.params()},
                                          {DNNL_ARG_SHIFT, part.params()}});
                  });
                }))
    return false;
  job.run([&](Plan& plan, int64_t begin, int64_t end) {
    const int64_t offset = begin * shape.length;
    float* r = rstd.ptr<float>();
    // oneDNN writes the variance; rstd's buffer holds it until converted below.
    run(plan, {{DNNL_ARG_SRC, x.ptr<const float>() + offset},
               {DNNL_ARG_DST, dst.ptr<float>() + offset},
               {DNNL_ARG_MEAN, mean.ptr<float>() + begin},
               {DNNL_ARG_VARIANCE, r + begin},
               {DNNL_ARG_SCALE, weight.data},
               {DNNL_ARG_SHIFT, bias.data}});
    for (int64_t i = begin; i < end; ++i) r[i] = 1.f / std::sqrt(r[i] + eps_f);
  });
  return true;
}

bool try_layer_norm_backward(const ArrayView& grad_x, const ArrayView& grad_dst, const ArrayView& x,
                             const ArrayView& mean, const ArrayView& rstd,
                             const ArrayView& weight) {
  if (!enabled() || mean.data == nullptr || rstd.data == nullptr) return false;
  const LayerNormShape shape = layer_norm_shape(x);
  if (shape.rows == 0) return false;
  const bool has_weight = weight.data != nullptr;
  const auto flags = layer_norm_flags(has_weight, false);
  // backward_data computes grad_x only, but 2.6 has it without a scale alone;
  // with a weight, full backward also writes the weight gradient, into a
  // scratch buffer (its per-thread sums are not what Tide returns).
  const auto prop = has_weight ? dnnl::prop_kind::backward : dnnl::prop_kind::backward_data;
  Key key;
  key.add(int64_t(Kind::LayerNormBackward)).add(shape.rows).add(shape.length).add(int64_t(flags));
  const PlanPtr plan = plan_cache().get(key, [&] {
    // Epsilon 0: the variance passed in below is 1 / rstd^2, eps included.
    const auto hint = layer_norm_forward_pd(shape, 0.f, flags);
    dnnl::layer_normalization_backward::primitive_desc pd(
        dnnl::layer_normalization_backward::desc(prop, shape.data(), shape.data(), shape.stats(),
                                                 0.f, flags),
        plan_attr(), cpu_engine(), hint);
    return make_plan(pd, {{DNNL_ARG_SRC, shape.data()},
                          {DNNL_ARG_MEAN, shape.stats()},
                          {DNNL_ARG_VARIANCE, shape.stats()},
                          {DNNL_ARG_DIFF_DST, shape.data()},
                          {DNNL_ARG_SCALE, shape.params()},
                          {DNNL_ARG_DIFF_SRC, shape.data()},
                          {DNNL_ARG_DIFF_SCALE, shape.params()}});
  });
  if (!plan) return false;
  // Tide saves rstd = 1 / sqrt(var + eps); oneDNN wants a variance.
  thread_local std::vector<float> variance, scratch_grad_weight;
  variance.resize(shape.rows);
  scratch_grad_weight.resize(has_weight ? shape.length : 0);
  const float* r = rstd.ptr<float>();
  for (int64_t i = 0; i < shape.rows; ++i) variance[i] = 1.f / (r[i] * r[i]);
  run(*plan, {{DNNL_ARG_SRC, x.data},
              {DNNL_ARG_MEAN, mean.data},
              {DNNL_ARG_VARIANCE, variance.data()},
              {DNNL_ARG_DIFF_DST, grad_dst.data},
              {DNNL_ARG_SCALE, weight.data},
              {DNNL_ARG_DIFF_SRC, grad_x.data},
              {DNNL_ARG_DIFF_SCALE, has_weight ? scratch_grad_weight.data() : nullptr}});
  return true;
}

// ---------------------------------------------------------------------------
// Linear weight gradients (inner product backward weights)
// ---------------------------------------------------------------------------

bool try_linear_weight_grad(const ArrayView& weight_grad, const ArrayView& bias_grad,
                            const ArrayView& grad_out, const ArrayView& input) {
  if (!enabled() || !grad_out.is_contiguous() || !input.is_contiguous()) return false;
  const int64_t m = input.shape[0], k = input.shape[1], n = grad_out.shape[1];
  if (m == 0 || k == 0 || n == 0) return false;
  const bool has_bias = bias_grad.data != nullptr;
  Key key;
  key.add(int64_t(Kind::LinearWeightGrad)).add(m).add(k).add(n).add(int64_t(has_bias));
  const PlanPtr plan = plan_cache().get(key, [&] {
    // src [M, K], weights [N, K] (Linear's own layout), dst [M, N], all plain.
    const memory::desc src_md({m, k}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc weights_md({n, k}, memory::data_type::f32, memory::format_tag::ab);
    const memory::desc bias_md({n}, memory::data_type::f32, memory::format_tag::a);
    const memory::desc dst_md({m, n}, memory::data_type::f32, memory::format_tag::ab);
    // The backward primitive needs a forward descriptor as its hint.
    const dnnl::inner_product_forward::primitive_desc hint(
        dnnl::inner_product_forward::desc(dnnl::prop_kind::forward_training, src_md, weights_md,
                                          bias_md, dst_md),
        cpu_engine());
    if (has_bias) {
      const dnnl::inner_product_backward_weights::primitive_desc pd(
          dnnl::inner_product_backward_weights::desc(src_md, weights_md, bias_md, dst_md),
          plan_attr(), cpu_engine(), hint);
      return make_plan(pd, {{DNNL_ARG_SRC, src_md},
                            {DNNL_ARG_DIFF_DST, dst_md},
                            {DNNL_ARG_DIFF_WEIGHTS, weights_md},
                            {DNNL_ARG_DIFF_BIAS, bias_md}});
    }
    const dnnl::inner_product_backward_weights::primitive_desc pd(
        dnnl::inner_product_backward_weights::desc(src_md, weights_md, dst_md), plan_attr(),
        cpu_engine(), hint);
    return make_plan(
        pd,
        {{DNNL_ARG_SRC, src_md}, {DNNL_ARG_DIFF_DST, dst_md}, {DNNL_ARG_DIFF_WEIGHTS, weights_md}});
  });
  if (!plan) return false;
  if (has_bias) {
    run(*plan, {{DNNL_ARG_SRC, input.data},
                {DNNL_ARG_DIFF_DST, grad_out.data},
                {DNNL_ARG_DIFF_WEIGHTS, weight_grad.data},
                {DNNL_ARG_DIFF_BIAS, bias_grad.data}});
  } else {
    run(*plan, {{DNNL_ARG_SRC, input.data},
                {DNNL_ARG_DIFF_DST, grad_out.data},
                {DNNL_ARG_DIFF_WEIGHTS, weight_grad.data}});
  }
  return true;
}

size_t cached_plans() {
  return plan_cache().size();
}

size_t plans_built() {
  return plan_cache().built();
}

void set_enabled(bool enabled) {
  g_enabled.store(enabled, std::memory_order_relaxed);
}

bool enabled() {
  return g_enabled.load(std::memory_order_relaxed);
}

}  // namespace tide::cpu::onednn
