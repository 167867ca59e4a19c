// Tensor: a shaped float32 (or resident-weight) view of backend-owned storage. Shapes are outer to
// inner; a view shares storage, so reshaping and taking leading rows cost nothing.
#pragma once

#include <cstdint>
#include <memory>

#include "moeflux/format/quant.h"
#include "moeflux/format/tensor_view.h"

namespace moeflux::backend {

using format::Dtype;
using format::Shape;

// Backend-specific memory (host vector, Vulkan buffer, ...). Backends downcast their own.
class Storage {
 public:
  virtual ~Storage() = default;
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<Storage> storage, Dtype dtype, Shape shape, std::int64_t offset = 0)
      : storage_(std::move(storage)), dtype_(dtype), shape_(std::move(shape)), offset_(offset) {}
  // A quantized weight [rows, cols] (format/quant.h); views of it are not allowed.
  Tensor(std::shared_ptr<Storage> storage, Dtype dtype, Shape shape, format::QuantParams quant)
      : storage_(std::move(storage)), dtype_(dtype), shape_(std::move(shape)), quant_(quant) {}

  const Shape& shape() const { return shape_; }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return format::element_count(shape_); }
  Dtype dtype() const { return dtype_; }
  bool quantized() const { return format::is_quantized(dtype_); }
  const format::QuantParams& quant() const { return quant_; }  // meaningful when quantized()
  bool defined() const { return storage_ != nullptr; }

  Storage* storage() const { return storage_.get(); }
  std::int64_t offset() const { return offset_; }  // in elements from the start of the storage

  // The same elements under another shape; throws ShapeError when the counts differ.
  Tensor view(Shape shape) const;
  // Rows [begin, begin + count) of axis 0.
  Tensor rows(std::int64_t begin, std::int64_t count) const;

 private:
  std::shared_ptr<Storage> storage_;
  Dtype dtype_ = Dtype::f32;
  Shape shape_;
  std::int64_t offset_ = 0;
  format::QuantParams quant_{};
};

}  // namespace moeflux::backend
