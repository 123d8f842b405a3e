// Creating tensors: constants, ranges, data from C++ containers, and random
// tensors drawn from an explicit Generator.
#pragma once

#include <initializer_list>
#include <vector>

#include "tensor/generator.h"
#include "tensor/tensor.h"

namespace tide {

Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor zeros_like(const Tensor& x);
Tensor ones_like(const Tensor& x);
Tensor full_like(const Tensor& x, double value);
Tensor empty_like(const Tensor& x);
// A 0-d tensor.
Tensor scalar(double value, TensorOptions options = {});

// [start, end) in steps of step (dtype from options; float32 by default).
Tensor arange(double end, TensorOptions options = {});
Tensor arange(double start, double end, double step = 1, TensorOptions options = {});
// `steps` evenly spaced values from start to end inclusive.
Tensor linspace(double start, double end, int64_t steps, TensorOptions options = {});
Tensor eye(int64_t n, TensorOptions options = {});
Tensor eye(int64_t n, int64_t m, TensorOptions options = {});

// From host data; the dtype defaults to that of T (options.dtype overrides it
// only when given explicitly through from_vector's dtype-taking overload).
template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape, TensorOptions options);
template <typename T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape) {
  return from_vector(data, shape, TensorOptions{.dtype = dtype_of<T>});
}
template <typename T>
Tensor from_vector(const std::vector<T>& data) {
  return from_vector(data, Shape{static_cast<int64_t>(data.size())});
}
// tensor({1.f, 2.f, 3.f}) or tensor({1.0, 2.0}, {2, 1}).
inline Tensor tensor(std::initializer_list<float> values, const Shape& shape = {-1}) {
  std::vector<float> v(values);
  return from_vector(v, shape[0] == -1 ? Shape{static_cast<int64_t>(v.size())} : shape);
}
inline Tensor tensor(std::initializer_list<double> values, const Shape& shape = {-1}) {
  std::vector<double> v(values);
  return from_vector(v, shape[0] == -1 ? Shape{static_cast<int64_t>(v.size())} : shape);
}
inline Tensor tensor(std::initializer_list<int64_t> values, const Shape& shape = {-1}) {
  std::vector<int64_t> v(values);
  return from_vector(v, shape[0] == -1 ? Shape{static_cast<int64_t>(v.size())} : shape);
}

// Random tensors. Each call advances the generator by numel blocks.
Tensor rand(const Shape& shape, Generator& gen, TensorOptions options = {});   // U[0, 1)
Tensor randn(const Shape& shape, Generator& gen, TensorOptions options = {});  // N(0, 1)
Tensor uniform(const Shape& shape, double low, double high, Generator& gen,
               TensorOptions options = {});
Tensor normal(const Shape& shape, double mean, double std, Generator& gen,
              TensorOptions options = {});
// Integers in [low, high); int64 unless options say otherwise.
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen,
               TensorOptions options = {.dtype = DType::Int64});
// 1 with probability p (elementwise, p a tensor of probabilities or a number).
Tensor bernoulli(const Shape& shape, double p, Generator& gen, TensorOptions options = {});
// A random permutation of 0 .. n-1 (int64).
Tensor randperm(int64_t n, Generator& gen, TensorOptions options = {.dtype = DType::Int64});

}  // namespace tide
