// WeightRef construction and checks, the exact row widening shared by embedding, download and
// norms, and the choice of row kernels by instruction set.
#include "moeflux/backend/cpu/weight.h"

#include <algorithm>
#include <cstring>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/quant_rows.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {

Simd best_simd() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return Simd::avx2;
  }
#endif
  return Simd::portable;
}

RowKernels kernels_for(Simd simd) { return simd == Simd::avx2 ? avx2_kernels() : portable_kernels(); }

WeightRef weight_ref(const format::TensorView& view, std::string_view op, std::string_view what) {
  for (const std::int64_t d : view.shape) {
    MF_CHECK(d >= 0, ShapeError, "[", op, "] ", what, " '", view.name, "' has shape ",
             format::shape_string(view.shape), " with a negative dimension");
  }
  MF_CHECK(!view.shape.empty(), ShapeError, "[", op, "] ", what, " '", view.name,
           "' is a scalar; weights have at least one axis");
  WeightRef w;
  w.dtype = view.dtype;
  w.cols = view.shape.back();
  w.rows = w.cols == 0 ? 0 : view.numel() / w.cols;
  if (w.quantized()) {
    w.quant = format::quant_params_of(view);
    format::check_quant_params(w.quant, w.cols, util::concat("[", op, "] ", what, " '", view.name, "'"));
    w.layout = format::quant_layout(view.shape, w.quant);  // ShapeError unless 2-D
  }
  const std::uint64_t needed = format::stored_nbytes(view.dtype, view.shape, w.quant);
  MF_CHECK(view.nbytes >= needed && (view.data != nullptr || needed == 0), FormatError, "[", op,
           "] ", what, " '", view.name, "' (", format::dtype_name(view.dtype), " ",
           format::shape_string(view.shape), ") needs ", needed, " bytes but its view holds ",
           view.data == nullptr ? 0 : view.nbytes, "; check the manifest entry");
  w.data = view.data;
  return w;
}

WeightRef weight_ref(const Tensor& t, std::string_view op, std::string_view what) {
  MF_CHECK(t.defined() && t.rank() >= 1, ShapeError, "[", op, "] ", what,
           " must be a defined tensor with at least one axis");
  WeightRef w;
  w.dtype = t.dtype();
  w.cols = t.dim(-1);
  w.rows = w.cols == 0 ? 0 : t.numel() / w.cols;
  if (const auto* stored = dynamic_cast<const WeightStorage*>(t.storage())) {
    if (t.quantized()) {
      MF_ASSERT(t.offset() == 0, "a quantized tensor at offset ", t.offset());
      w.quant = t.quant();
      w.layout = format::quant_layout(t.shape(), w.quant);
      MF_ASSERT(w.layout.nbytes <= stored->nbytes(), "quantized weight exceeds its storage");
      w.data = stored->data();
    } else {
      const std::size_t size = format::dtype_size(w.dtype);
      MF_ASSERT(static_cast<std::size_t>(t.offset() + t.numel()) * size <= stored->nbytes(),
                "weight view exceeds its storage");
      w.data = stored->data() + static_cast<std::size_t>(t.offset()) * size;
    }
    return w;
  }
  w.data = reinterpret_cast<const std::byte*>(data_of(t, op, what));  // float32 activations
  return w;
}

void widen_rows(const WeightRef& w, std::int64_t first, std::int64_t count, float* out) {
  MF_ASSERT(first >= 0 && count >= 0 && first + count <= w.rows, "rows ", first, "+", count);
  const auto n = static_cast<std::size_t>(count * w.cols);
  if (n == 0) return;
  if (w.quantized()) {
    for (std::int64_t r = 0; r < count; ++r) dequantize_row_exact(w, first + r, out + r * w.cols);
    return;
  }
  const std::size_t size = format::dtype_size(w.dtype);
  format::to_f32(w.data + static_cast<std::size_t>(first * w.cols) * size, w.dtype, n, out);
}

}  // namespace moeflux::backend::cpu
