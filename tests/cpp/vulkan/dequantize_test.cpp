// common/dequant.glsl through the dequantize shader, against format::dequantize_rows bit for bit:
// every bit width, group size and scale dtype, row ranges, and sections bound as windows.
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/format/quant.h"
#include "moeflux/util/error.h"
#include "vulkan_harness.h"

namespace moeflux::test {
namespace {

class VulkanDequantize : public VulkanParamTest<OpCase> {};

TEST_P(VulkanDequantize, MatchesFormat) {
  unsigned seed = 900;
  for (const int bits : {8, 4, 3, 2}) {
    for (const int group : {32, 64, 128}) {
      for (const format::Dtype scale : {format::Dtype::bf16, format::Dtype::f16}) {
        // 4224 columns: rows past 4096, and under smallrange a window of three rows at a time.
        const std::int64_t rows = 7, cols = group * (group == 128 ? 33 : 3), first = 2, n = 4;
        SCOPED_TRACE(util::concat("bits=", bits, " group=", group, " scales=", format::dtype_name(scale)));
        const format::QuantParams params{.bits = bits, .group_size = group, .scale_dtype = scale};
        const format::Shape shape{rows, cols};
        const format::QuantLayout layout = format::quant_layout(shape, params);
        const std::vector<float> values = random_values(static_cast<std::size_t>(rows * cols), ++seed, -3.0f, 3.0f);
        std::vector<std::byte> bytes(layout.nbytes);
        format::quantize(values.data(), layout, params, bytes.data());
        std::vector<float> want(static_cast<std::size_t>(n * cols));
        format::dequantize_rows(bytes.data(), layout, params, first, n, want.data());
        const format::TensorView view{"q.weight", format::quantized_dtype(bits), shape, bytes.data(), bytes.size(),
                                      group, scale};
        const Tensor w = gpu_->resident(view);
        Guarded out(*gpu_, {n, cols});
        gpu_->dequantize(w, first, out.tensor());
        expect_same_bits(out.values(), want, "dequantize");
        out.expect_guards_intact("dequantize");
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, VulkanDequantize, ::testing::ValuesIn(op_cases()), op_case_name);

}  // namespace
}  // namespace moeflux::test
