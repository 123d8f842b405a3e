// In-place updates, for optimizers and initialisers. Autograd does not record
// them: a tensor that takes part in a graph may only be overwritten with grad
// mode off (NoGradGuard). Every write bumps the storage's version, so a
// backward that later reads a saved tensor which was overwritten throws
// instead of silently using the new values.
#include "autograd/ops.h"
#include "tensor/kernels.h"

namespace tide {

namespace {

// The checks every in-place op makes on its destination.
void check_writable(const Tensor& dst, const char* op) {
  TIDE_CHECK(dst.defined(), "{}: got an undefined destination tensor", op);
  TIDE_CHECK(!(GradMode::is_enabled() && dst.requires_grad()),
             "{}: in-place update of a tensor that requires grad ({}); autograd cannot record "
             "in-place ops. Do the update under NoGradGuard (as optimizers do) or use the "
             "out-of-place op",
             op, dst.describe());
  // A stride of 0 over a dim longer than 1 (an expanded view) means several
  // elements share one memory location: the result would depend on write order.
  for (int i = 0; i < dst.dim(); ++i)
    TIDE_CHECK(dst.strides()[i] != 0 || dst.shape()[i] <= 1,
               "{}: cannot write into {}: dim {} has stride 0, so its elements share memory "
               "(an expanded view); clone it first",
               op, dst.describe(), i);
}

// An in-place op would silently drop the gradient path of a source that
// requires grad, so that is refused too while grad mode is on.
void check_source(const Tensor& src, const char* op) {
  TIDE_CHECK(src.defined(), "{}: got an undefined source tensor", op);
  TIDE_CHECK(!(GradMode::is_enabled() && src.requires_grad()),
             "{}: the source {} requires grad, but in-place ops are not recorded by autograd; "
             "use NoGradGuard or an out-of-place op",
             op, src.describe());
}

// Writes `result` (already dst's shape) back into dst. Like PyTorch, a float
// result may go into a float tensor of another width, but not into an integer
// tensor, where its fractional part would be silently dropped.
void store(const Tensor& dst, const Tensor& result, const char* op) {
  TIDE_CHECK(!is_floating(result.dtype()) || is_floating(dst.dtype()),
             "{}: the result has dtype {}, which cannot be stored in {} without loss", op,
             result.dtype(), dst.describe());
  kernels::copy_(dst, result);  // bumps the storage version
}

}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  check_writable(dst, "copy_");
  check_source(src, "copy_");
  kernels::copy_(dst, src);  // broadcasts src, converts its dtype, bumps the version
}

void fill_(const Tensor& dst, double value) {
  check_writable(dst, "fill_");
  kernels::fill_(dst, value);
}

void zero_(const Tensor& dst) {
  check_writable(dst, "zero_");
  kernels::fill_(dst, 0.0);
}

void add_(const Tensor& dst, const Tensor& src, double alpha) {
  check_writable(dst, "add_");
  check_source(src, "add_");
  kernels::check_same_device(dst, src, "add_");
  TIDE_CHECK(dst.dtype() != DType::Bool, "add_: cannot add into the bool tensor {}",
             dst.describe());
  TIDE_CHECK(kernels::broadcast_shapes(dst.shape(), src.shape(), "add_") == dst.shape(),
             "add_: cannot add {} into {} (src must broadcast to dst's shape)", src.describe(),
             dst.describe());
  // The backend contract does not let an output alias an input, so the sum
  // goes through a temporary and is then copied back.
  Tensor scaled =
      alpha == 1.0 ? src : kernels::binary(BinaryOp::Mul, src, kernels::scalar_like(alpha, src));
  store(dst, kernels::binary(BinaryOp::Add, dst, scaled), "add_");
}

void mul_(const Tensor& dst, double value) {
  check_writable(dst, "mul_");
  TIDE_CHECK(dst.dtype() != DType::Bool, "mul_: cannot multiply the bool tensor {}",
             dst.describe());
  store(dst, kernels::binary(BinaryOp::Mul, dst, kernels::scalar_like(value, dst)), "mul_");
}

}  // namespace tide
