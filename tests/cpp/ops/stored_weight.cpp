// Stored test weights: quantized or rounded once with format's own plain code, then widened by it, so
// the references multiply exactly the values the kernels must reproduce.
#include "stored_weight.h"

#include "harness.h"
#include "moeflux/format/dtype.h"

namespace moeflux::test {

format::TensorView StoredWeight::view(const std::string& name) const {
  format::TensorView v{name, dtype, shape, bytes.data(), bytes.size()};
  if (format::is_quantized(dtype)) {
    v.group_size = quant.group_size;
    v.scale_dtype = quant.scale_dtype;
  }
  return v;
}

StoredWeight make_weight(format::Dtype dtype, std::int64_t rows, std::int64_t cols, unsigned seed,
                         const format::QuantParams& quant, float lo, float hi) {
  StoredWeight w;
  w.dtype = dtype;
  w.shape = {rows, cols};
  const std::vector<float> src = random_values(static_cast<std::size_t>(rows * cols), seed, lo, hi);
  w.values.resize(src.size());
  if (format::is_quantized(dtype)) {
    w.quant = quant;
    w.quant.bits = format::quant_bits(dtype);
    const format::QuantLayout layout = format::quant_layout(w.shape, w.quant);
    w.bytes.resize(layout.nbytes);
    format::quantize(src.data(), layout, w.quant, w.bytes.data());
    format::dequantize_rows(w.bytes.data(), layout, w.quant, 0, rows, w.values.data());
  } else {
    w.bytes.resize(src.size() * format::dtype_size(dtype));
    format::from_f32(src.data(), dtype, src.size(), w.bytes.data());
    format::to_f32(w.bytes.data(), dtype, src.size(), w.values.data());
  }
  return w;
}

}  // namespace moeflux::test
