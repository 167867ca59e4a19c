#include "moeflux/backend/tensor.h"

#include "moeflux/util/error.h"

namespace moeflux::backend {

std::int64_t Tensor::dim(int axis) const {
  const int n = rank();
  const int a = axis < 0 ? axis + n : axis;
  MF_ASSERT(a >= 0 && a < n, "axis ", axis, " of a tensor of rank ", n);
  return shape_[static_cast<std::size_t>(a)];
}

Tensor Tensor::view(Shape shape) const {
  MF_ASSERT(!quantized(), "view of a quantized tensor");
  MF_CHECK(format::element_count(shape) == numel(), ShapeError, "[view] cannot view ",
           format::shape_string(shape_), " as ", format::shape_string(shape));
  return Tensor(storage_, dtype_, std::move(shape), offset_);
}

Tensor Tensor::rows(std::int64_t begin, std::int64_t count) const {
  MF_ASSERT(!quantized(), "rows of a quantized tensor");
  MF_ASSERT(rank() >= 1 && begin >= 0 && count >= 0 && begin + count <= shape_[0], "rows ", begin,
            "+", count, " of ", format::shape_string(shape_));
  Shape shape = shape_;
  shape[0] = count;
  const std::int64_t row = shape_[0] == 0 ? 0 : numel() / shape_[0];
  return Tensor(storage_, dtype_, std::move(shape), offset_ + begin * row);
}

}  // namespace moeflux::backend
