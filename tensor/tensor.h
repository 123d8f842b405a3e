// Tensor: a strided view (shape, strides, offset, dtype) onto shared Storage.
//
// A Tensor is a cheap handle (one shared_ptr) to a TensorImpl. Copying a Tensor
// shares the same impl, like a Python reference; views such as reshape or
// transpose make a new impl over the same Storage. This file knows nothing
// about autograd beyond storing its bookkeeping (AutogradMeta): the ops that
// record graphs live one layer up, in autograd/.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backends/backend.h"
#include "backends/types.h"

namespace tide {

class Node;  // autograd/node.h: a backward function in the graph
class Tensor;

// A block of device memory shared by every view of it.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  // Bumped by every in-place write; autograd uses it to detect saved tensors
  // that were modified before backward read them.
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  uint64_t version_ = 0;
};

// Per-tensor autograd bookkeeping; allocated only for tensors that take part
// in differentiation, so plain tensors pay nothing.
struct AutogradMeta;

class TensorImpl {
 public:
  TensorImpl(std::shared_ptr<Storage> storage, int64_t offset, Shape shape, Shape strides,
             DType dtype);
  ~TensorImpl();

  std::shared_ptr<Storage> storage;
  int64_t offset;  // in elements
  Shape shape;
  Shape strides;  // in elements
  DType dtype;
  std::unique_ptr<AutogradMeta> autograd;
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (like an empty Python slot)
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

  // --- metadata ---
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device(); }
  const Shape& shape() const { return impl_->shape; }
  const Shape& strides() const { return impl_->strides; }
  int64_t offset() const { return impl_->offset; }
  int dim() const { return impl_->shape.size(); }
  int64_t size(int64_t dim) const;    // negative dims count from the end
  int64_t stride(int64_t dim) const;  // in elements
  int64_t numel() const { return impl_->shape.numel(); }
  bool is_contiguous() const;
  bool is_floating_point() const { return is_floating(dtype()); }
  const std::shared_ptr<Storage>& storage() const { return impl_->storage; }

  // --- data access (CPU) ---
  // Pointer to element [0, ..., 0]; checks that T matches the dtype.
  template <typename T>
  T* data_ptr() const {
    TIDE_CHECK(dtype_of<T> == dtype(), "data_ptr: tensor has dtype {}, requested {}", dtype(),
               dtype_of<T>);
    TIDE_CHECK(device().is_cpu(),
               "data_ptr: {} is on {}; host code must read a copy (tensor.to(Device::cpu()))",
               describe(), device());
    return static_cast<T*>(raw_data());
  }
  void* raw_data() const;
  // The strided window a backend primitive reads or writes.
  ArrayView view() const;
  // A copy on `device` (this tensor itself when it is already there). Not
  // differentiable: tide::to(x, device) in autograd/ops.h records the move.
  Tensor to(Device device) const;
  // The single element of a one-element tensor, converted to double.
  double item() const;
  template <typename T>
  T item() const {
    return static_cast<T>(item());
  }
  // All elements in row-major order, converted to T (copies from any device).
  template <typename T>
  std::vector<T> to_vector() const;

  // --- autograd state (the graph-building ops are in autograd/) ---
  bool requires_grad() const;
  // Marks a leaf as requiring gradients; only floating-point tensors may.
  Tensor& set_requires_grad(bool requires_grad = true);
  // The accumulated gradient of a leaf (undefined until a backward reaches it).
  Tensor grad() const;
  void set_grad(const Tensor& grad);
  // The node that produced this tensor, or null for leaves.
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return grad_fn() == nullptr; }
  AutogradMeta& autograd_meta();  // creates the meta on first use
  AutogradMeta* autograd_meta_if_any() const { return impl_->autograd.get(); }

  // Makes this tensor (and every handle sharing its impl) refer to src's data,
  // keeping its autograd identity: how modules move parameters between dtypes
  // and devices without invalidating references to them (PyTorch's .data =).
  void set_data(const Tensor& src);

  // A short description for error messages: "float32[2, 3]".
  std::string describe() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;                           // accumulated gradient (leaves)
  std::shared_ptr<Node> grad_fn;         // producer (non-leaves)
  std::weak_ptr<Node> grad_accumulator;  // the sink node of a leaf
};

// Creation options, used with designated initializers:
//   tide::zeros({2, 3}, {.dtype = DType::Float64, .requires_grad = true})
struct TensorOptions {
  DType dtype = DType::Float32;
  Device device = Device::cpu();
  bool requires_grad = false;
};

// A new, uninitialised contiguous tensor.
Tensor empty(const Shape& shape, TensorOptions options = {});

// True when Tide was built with the CUDA backend and a CUDA device is present
// (Device::cuda() tensors can be made). Never throws.
bool cuda_is_available();
// A tensor viewing `storage` with the given geometry; checks the bounds.
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset,
                 const char* op = "view");

}  // namespace tide
