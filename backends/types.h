// The vocabulary shared by every layer of Tide: element types, devices, shapes
// and the single error type. It lives in backends/ because the backends are the
// bottom layer and already need all of it.
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace tide {

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

// Every invalid call into Tide throws this. The message always names the
// operation and the offending shapes, dtypes, dims or file offsets.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws tide::Error with a formatted message: fail("matmul: {} vs {}", a, b).
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// TIDE_CHECK(cond, "op: message {}", x) throws when cond is false. The message
// is only formatted on failure, so checks are cheap on the hot path.
#define TIDE_CHECK(cond, ...)    \
  do {                           \
    if (!(cond)) [[unlikely]] {  \
      ::tide::fail(__VA_ARGS__); \
    }                            \
  } while (0)

// ---------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------

// Ordered by the type promotion lattice: Bool < Int64 < Float32 < Float64.
// promote_types(a, b) is simply the larger of the two (see README, "Type
// promotion").
enum class DType : uint8_t { Bool = 0, Int64 = 1, Float32 = 2, Float64 = 3 };
inline constexpr int kNumDTypes = 4;

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::Bool:
      return 1;
    case DType::Int64:
      return 8;
    case DType::Float32:
      return 4;
    case DType::Float64:
      return 8;
  }
  return 0;
}

inline constexpr const char* dtype_name(DType t) {
  switch (t) {
    case DType::Bool:
      return "bool";
    case DType::Int64:
      return "int64";
    case DType::Float32:
      return "float32";
    case DType::Float64:
      return "float64";
  }
  return "?";
}

inline constexpr bool is_floating(DType t) {
  return t == DType::Float32 || t == DType::Float64;
}

inline constexpr DType promote_types(DType a, DType b) {
  return static_cast<uint8_t>(a) >= static_cast<uint8_t>(b) ? a : b;
}

// Maps a C++ element type to its DType: dtype_of<float> == DType::Float32.
template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<bool> {
  static constexpr DType value = DType::Bool;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::Int64;
};
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::Float32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::Float64;
};
template <typename T>
inline constexpr DType dtype_of = DTypeOf<T>::value;

// Calls fn with a value of the C++ type matching `t`: the one place where a
// runtime dtype becomes a compile-time type.
//   dispatch_dtype(t, [&](auto tag) { using T = decltype(tag); ... });
template <typename Fn>
decltype(auto) dispatch_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::Bool:
      return fn(bool{});
    case DType::Int64:
      return fn(int64_t{});
    case DType::Float32:
      return fn(float{});
    case DType::Float64:
      return fn(double{});
  }
  fail("dispatch_dtype: invalid dtype {}", static_cast<int>(t));
}

// ---------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------

enum class DeviceKind : uint8_t { CPU = 0, CUDA = 1 };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;

  static constexpr Device cpu() { return {DeviceKind::CPU, 0}; }
  static constexpr Device cuda(int i = 0) { return {DeviceKind::CUDA, i}; }
  bool is_cpu() const { return kind == DeviceKind::CPU; }
  bool is_cuda() const { return kind == DeviceKind::CUDA; }
  friend bool operator==(const Device&, const Device&) = default;
  std::string str() const {
    return kind == DeviceKind::CPU ? std::string("cpu") : fmt::format("cuda:{}", index);
  }
};

// ---------------------------------------------------------------------------
// Shapes
// ---------------------------------------------------------------------------

// Tensors have at most this many dimensions. A fixed bound lets shapes live
// inline (no heap allocation per tensor), which matters for per-op overhead.
inline constexpr int kMaxDims = 8;

// A small inline array of int64: used for sizes and for strides.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }
  template <typename It>
  Shape(It first, It last) {
    assign(first, last);
  }
  static Shape filled(int rank, int64_t value) {
    Shape s;
    s.resize(rank, value);
    return s;
  }

  int size() const { return rank_; }
  bool empty() const { return rank_ == 0; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t& operator[](int i) { return dims_[i]; }
  const int64_t* begin() const { return dims_; }
  const int64_t* end() const { return dims_ + rank_; }
  int64_t* begin() { return dims_; }
  int64_t* end() { return dims_ + rank_; }
  int64_t back() const { return dims_[rank_ - 1]; }

  void push_back(int64_t v) {
    TIDE_CHECK(rank_ < kMaxDims, "Shape: more than {} dimensions are not supported", kMaxDims);
    dims_[rank_++] = v;
  }
  void insert(int pos, int64_t v) {
    TIDE_CHECK(rank_ < kMaxDims, "Shape: more than {} dimensions are not supported", kMaxDims);
    for (int i = rank_; i > pos; --i) dims_[i] = dims_[i - 1];
    dims_[pos] = v;
    ++rank_;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < rank_; ++i) dims_[i] = dims_[i + 1];
    --rank_;
  }
  void resize(int rank, int64_t fill_value = 0) {
    TIDE_CHECK(rank >= 0 && rank <= kMaxDims, "Shape: rank {} is outside [0, {}]", rank, kMaxDims);
    for (int i = rank_; i < rank; ++i) dims_[i] = fill_value;
    rank_ = rank;
  }

  // Number of elements: the product of the sizes (1 for a scalar's empty shape).
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  std::vector<int64_t> vec() const { return {begin(), end()}; }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  std::string str() const { return fmt::format("[{}]", fmt::join(begin(), end(), ", ")); }

 private:
  template <typename It>
  void assign(It first, It last) {
    rank_ = 0;
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  int64_t dims_[kMaxDims] = {};
  int rank_ = 0;
};

// Row-major (C order) strides for a shape, in elements.
inline Shape contiguous_strides(const Shape& shape) {
  Shape strides = Shape::filled(shape.size(), 1);
  int64_t s = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    strides[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
  return strides;
}

// Wraps a possibly negative dim index into [0, rank); `op` names the caller.
inline int wrap_dim(int64_t dim, int rank, const char* op) {
  int64_t r = rank == 0 ? 1 : rank;  // a scalar accepts dim 0 and -1, like PyTorch
  TIDE_CHECK(dim >= -r && dim < r, "{}: dim {} is out of range for a tensor of rank {}", op, dim,
             rank);
  return static_cast<int>(dim < 0 ? dim + r : dim);
}

}  // namespace tide

template <>
struct fmt::formatter<tide::Shape> : fmt::formatter<std::string> {
  auto format(const tide::Shape& s, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
template <>
struct fmt::formatter<tide::DType> : fmt::formatter<const char*> {
  auto format(tide::DType t, fmt::format_context& ctx) const {
    return fmt::formatter<const char*>::format(tide::dtype_name(t), ctx);
  }
};
template <>
struct fmt::formatter<tide::Device> : fmt::formatter<std::string> {
  auto format(const tide::Device& d, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
