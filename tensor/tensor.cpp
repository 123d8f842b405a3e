#include "tensor/tensor.h"

#include <limits>
#include <new>

#include "tensor/kernels.h"
#ifdef TIDE_HAVE_CUDA
#include "backends/cuda/cuda_backend.h"
#endif

namespace tide {

// ---------------------------------------------------------------------------
// Storage
// ---------------------------------------------------------------------------

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  // Zero-size tensors still get a distinct, valid (but unused) pointer-free storage.
  if (nbytes_ > 0) data_ = backend_for(device_).allocate(nbytes_);
}

Storage::~Storage() {
  if (data_ != nullptr) backend_for(device_).deallocate(data_, nbytes_);
}

// ---------------------------------------------------------------------------
// TensorImpl / Tensor
// ---------------------------------------------------------------------------

TensorImpl::TensorImpl(std::shared_ptr<Storage> storage, int64_t offset, Shape shape, Shape strides,
                       DType dtype)
    : storage(std::move(storage)), offset(offset), shape(shape), strides(strides), dtype(dtype) {}

TensorImpl::~TensorImpl() = default;

int64_t Tensor::size(int64_t d) const {
  return shape()[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  return strides()[wrap_dim(d, dim(), "stride")];
}

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // nothing to address (PyTorch's convention)
  int64_t expected = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape()[i] != 1 && strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  auto* base = static_cast<char*>(impl_->storage->data());
  if (base == nullptr) return nullptr;
  return base + impl_->offset * static_cast<int64_t>(dtype_size(impl_->dtype));
}

ArrayView Tensor::view() const {
  return ArrayView{raw_data(), dtype(), shape(), strides()};
}

Tensor Tensor::to(Device device) const {
  TIDE_CHECK(defined(), "to: the tensor is undefined");
  return kernels::to_device(*this, device);
}

bool cuda_is_available() {
#ifdef TIDE_HAVE_CUDA
  return cuda::is_available();
#else
  return false;
#endif
}

double Tensor::item() const {
  TIDE_CHECK(defined(), "item: the tensor is undefined");
  TIDE_CHECK(numel() == 1, "item: expected a tensor with one element, got {}", describe());
  char buffer[8];
  backend_for(device()).copy_to_host(buffer, raw_data(), dtype_size(dtype()));
  return dispatch_dtype(dtype(), [&](auto tag) {
    using T = decltype(tag);
    T value;
    std::memcpy(&value, buffer, sizeof(T));
    return static_cast<double>(value);
  });
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined";
  std::string s = fmt::format("{}{}", dtype(), shape());
  if (!device().is_cpu()) s += fmt::format(" on {}", device());
  return s;
}

bool Tensor::requires_grad() const {
  return impl_->autograd != nullptr && impl_->autograd->requires_grad;
}

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  TIDE_CHECK(!requires_grad || is_floating(dtype()),
             "set_requires_grad: only floating-point tensors can require gradients, got {}",
             describe());
  TIDE_CHECK(is_leaf() || requires_grad,
             "set_requires_grad: cannot turn off requires_grad of a non-leaf tensor {}; use "
             "detach()",
             describe());
  autograd_meta().requires_grad = requires_grad;
  return *this;
}

Tensor Tensor::grad() const {
  return impl_->autograd ? impl_->autograd->grad : Tensor();
}

void Tensor::set_grad(const Tensor& grad) {
  if (grad.defined()) {
    TIDE_CHECK(grad.shape() == shape() && grad.dtype() == dtype(),
               "set_grad: gradient {} does not match tensor {}", grad.describe(), describe());
  }
  autograd_meta().grad = grad;
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> kNone;
  return impl_->autograd ? impl_->autograd->grad_fn : kNone;
}

void Tensor::set_data(const Tensor& src) {
  TIDE_CHECK(src.defined(), "set_data: the source tensor is undefined");
  TIDE_CHECK(is_leaf(), "set_data: {} is not a leaf tensor", describe());
  TIDE_CHECK(!requires_grad() || is_floating(src.dtype()),
             "set_data: a tensor that requires grad cannot take {} data", src.dtype());
  impl_->storage = src.storage();
  impl_->offset = src.offset();
  impl_->shape = src.shape();
  impl_->strides = src.strides();
  impl_->dtype = src.dtype();
  if (impl_->autograd) impl_->autograd->grad = Tensor();  // a stale gradient would mismatch
}

AutogradMeta& Tensor::autograd_meta() {
  if (!impl_->autograd) impl_->autograd = std::make_unique<AutogradMeta>();
  return *impl_->autograd;
}

// ---------------------------------------------------------------------------
// Creation of raw tensors
// ---------------------------------------------------------------------------

Tensor empty(const Shape& shape, TensorOptions options) {
  bool has_zero = false;
  for (int64_t d : shape) {
    TIDE_CHECK(d >= 0, "empty: negative size in shape {}", shape);
    has_zero = has_zero || d == 0;
  }
  // The byte size, refusing shapes where it overflows int64 (which would wrap
  // to a small allocation). A shape with a zero size has no elements at all.
  int64_t nbytes = 0;
  if (!has_zero) {
    nbytes = static_cast<int64_t>(dtype_size(options.dtype));
    for (int64_t d : shape)
      TIDE_CHECK(!__builtin_mul_overflow(nbytes, d, &nbytes),
                 "empty: {}{} needs more than 2^63 bytes (its byte size overflows int64)",
                 options.dtype, shape);
  }
  // Out of memory is an error naming the request, not an abort.
  std::shared_ptr<Storage> storage;
  try {
    storage = std::make_shared<Storage>(static_cast<size_t>(nbytes), options.device);
  } catch (const Error& e) {
    fail("empty: cannot allocate {}{} on {}: {}", options.dtype, shape, options.device, e.what());
  } catch (const std::bad_alloc&) {
    fail("empty: cannot allocate {}{} ({} bytes) on {}: out of memory", options.dtype, shape,
         nbytes, options.device);
  }
  Tensor t(std::make_shared<TensorImpl>(std::move(storage), 0, shape, contiguous_strides(shape),
                                        options.dtype));
  if (options.requires_grad) t.set_requires_grad(true);
  return t;
}

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset,
                 const char* op) {
  // Sizes must be >= 0 and the element count must fit int64: a huge
  // broadcast view whose count wrapped around would make every op over it
  // silently wrong (a sum of nothing).
  bool empty_view = false;
  for (int i = 0; i < shape.size(); ++i) {
    TIDE_CHECK(shape[i] >= 0, "{}: negative size in shape {}", op, shape);
    if (shape[i] == 0) empty_view = true;
  }
  int64_t numel = 1;
  for (int i = 0; i < shape.size() && !empty_view; ++i)
    TIDE_CHECK(!__builtin_mul_overflow(numel, shape[i], &numel),
               "{}: shape {} has more than 2^63 elements", op, shape);
  // Bounds check: the lowest and highest element addressed must lie in storage.
  int64_t lo = offset, hi = offset;
  for (int i = 0; i < shape.size() && !empty_view; ++i) {
    int64_t extent = 0;
    bool overflow = __builtin_mul_overflow(shape[i] - 1, strides[i], &extent);
    if (!overflow)
      overflow = extent > 0 ? __builtin_add_overflow(hi, extent, &hi)
                            : __builtin_add_overflow(lo, extent, &lo);
    TIDE_CHECK(!overflow, "{}: shape {} with strides {} addresses beyond 2^63 elements", op, shape,
               strides);
  }
  int64_t capacity = static_cast<int64_t>(base.storage()->nbytes() / dtype_size(base.dtype()));
  TIDE_CHECK(empty_view || (lo >= 0 && hi < capacity),
             "{}: shape {} with strides {} at offset {} is out of bounds of a storage of {} "
             "elements",
             op, shape, strides, offset, capacity);
  return Tensor(std::make_shared<TensorImpl>(base.storage(), offset, shape, strides, base.dtype()));
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  // Copy element by element through a contiguous host buffer of the tensor's dtype.
  std::vector<T> out(static_cast<size_t>(numel()));
  if (numel() == 0) return out;
  Tensor host = *this;
  Backend& backend = backend_for(device());
  // Make a contiguous copy in the same dtype on the device, then move to host.
  Tensor packed = empty(shape(), {.dtype = dtype(), .device = device()});
  backend.copy(packed.view(), view());
  std::vector<char> bytes(static_cast<size_t>(numel()) * dtype_size(dtype()));
  backend.copy_to_host(bytes.data(), packed.raw_data(), bytes.size());
  dispatch_dtype(dtype(), [&](auto tag) {
    using S = decltype(tag);
    const S* src = reinterpret_cast<const S*>(bytes.data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<T>(src[i]);
  });
  return out;
}

template std::vector<bool> Tensor::to_vector<bool>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int> Tensor::to_vector<int>() const;

}  // namespace tide
