// How the converter stores each tensor: the choice of dtype (float or quantized) from the options and
// the tensor's role, and the encoding itself: a copy when nothing changes, else through f32 in slices
// of rows, so no tensor is ever held whole in f32.
#include <algorithm>
#include <cstring>

#include "moeflux/format/convert_detail.h"
#include "moeflux/util/error.h"

namespace moeflux::format::detail {

namespace {

constexpr std::size_t kSliceElements = std::size_t{1} << 20;  // f32 elements per slice of rows

bool same_quantization(const TensorView& source, const StoredType& type) {
  return source.dtype == type.dtype && source.group_size == type.quant.group_size &&
         source.scale_dtype == type.quant.scale_dtype;
}

}  // namespace

StoredType stored_type(const TensorView& source, bool quantizable, std::optional<int> bits,
                       const ConvertOptions& options) {
  if (quantizable && bits) return {quantized_dtype(*bits), {*bits, options.group_size, options.scale_dtype}};
  if (is_quantized(source.dtype) && quantizable)
    return {source.dtype, {quant_bits(source.dtype), source.group_size, source.scale_dtype}};
  if (is_quantized(source.dtype)) return {options.dtype.value_or(Dtype::f32), {}};
  return {options.dtype.value_or(source.dtype), {}};
}

std::uint64_t stored_size(const SourceTensor& source, const StoredType& type) {
  return stored_nbytes(type.dtype, source.view.shape, type.quant);
}

void encode_tensor(const SourceTensor& source, const StoredType& type, std::byte* dst,
                   std::vector<float>& scratch) {
  const TensorView& view = source.view;
  const bool from_quantized = is_quantized(view.dtype);
  const bool to_quantized = is_quantized(type.dtype);
  if (!from_quantized && !to_quantized) {
    convert_elements(view.data, view.dtype, static_cast<std::size_t>(view.numel()), type.dtype, dst);
    return;
  }
  MF_ASSERT(view.shape.size() == 2, "quantized tensor ", view.name, " of shape ", shape_string(view.shape));
  const QuantParams in_params = from_quantized ? quant_params_of(view) : QuantParams{};
  const QuantLayout in = from_quantized ? quant_layout(view.shape, in_params) : QuantLayout{};
  const QuantLayout out = to_quantized ? quant_layout(view.shape, type.quant) : QuantLayout{};
  if (to_quantized) std::memset(dst, 0, out.nbytes);
  if (same_quantization(view, type)) {  // an MLX triple, kept bit for bit
    std::memcpy(dst + out.weights_offset, view.data,
                static_cast<std::size_t>(in.row_bytes * static_cast<std::uint64_t>(in.rows)));
    const auto section = static_cast<std::size_t>(in.rows * in.groups_per_row * 2);  // 16-bit scales
    std::memcpy(dst + out.scales_offset, source.scales, section);
    std::memcpy(dst + out.biases_offset, source.biases, section);
    return;
  }
  const std::int64_t rows = view.shape[0];
  const std::int64_t cols = view.shape[1];
  const std::int64_t slice =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(kSliceElements) / std::max<std::int64_t>(cols, 1));
  for (std::int64_t r = 0; r < rows; r += slice) {
    const std::int64_t n = std::min(slice, rows - r);
    const auto count = static_cast<std::size_t>(n * cols);
    scratch.resize(count);
    if (from_quantized) {
      dequantize_rows(source.sections(), in, in_params, r, n, scratch.data());
    } else {
      to_f32(view.data + static_cast<std::size_t>(r * cols) * dtype_size(view.dtype), view.dtype, count,
             scratch.data());
    }
    if (to_quantized) {
      quantize_rows(scratch.data(), out, type.quant, r, n, dst);
    } else {
      from_f32(scratch.data(), type.dtype, count,
               dst + static_cast<std::size_t>(r * cols) * dtype_size(type.dtype));
    }
  }
}

void convert_elements(const std::byte* src, Dtype src_dtype, std::size_t count, Dtype dst_dtype,
                      std::byte* dst) {
  if (src_dtype == dst_dtype) {
    std::memcpy(dst, src, count * dtype_size(src_dtype));
    return;
  }
  constexpr std::size_t kChunk = 4096;
  float buffer[kChunk];
  for (std::size_t done = 0; done < count; done += kChunk) {
    const std::size_t n = std::min(kChunk, count - done);
    to_f32(src + done * dtype_size(src_dtype), src_dtype, n, buffer);
    from_f32(buffer, dst_dtype, n, dst + done * dtype_size(dst_dtype));
  }
}

}  // namespace moeflux::format::detail
