// The Vulkan test harness: configurations, backends, comparisons.
#include "vulkan_harness.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "moeflux/format/dtype.h"
#include "moeflux/util/error.h"

namespace moeflux::test {

const std::vector<VulkanConfig>& vulkan_configs() {
  static const std::vector<VulkanConfig> configs = {
      {"default", true, true, 0},
      {"no16bit", false, true, 0},
      {"nosubgroup", true, false, 0},
      {"smallrange", true, true, 64 << 10},
  };
  return configs;
}

const VulkanConfig& vulkan_config(const std::string& name) {
  for (const VulkanConfig& c : vulkan_configs()) {
    if (c.name == name) return c;
  }
  throw std::invalid_argument("no Vulkan test configuration " + name);
}

std::vector<OpCase> op_cases(std::initializer_list<format::Dtype> dtypes) {
  std::vector<OpCase> out;
  for (const format::Dtype d : dtypes) {
    for (const VulkanConfig& c : vulkan_configs()) out.push_back({d, c});
  }
  return out;
}

std::string op_case_name(const ::testing::TestParamInfo<OpCase>& info) {
  return util::concat(format::dtype_name(info.param.dtype), "_", info.param.config.name);
}

void PrintTo(const OpCase& c, std::ostream* os) { *os << format::dtype_name(c.dtype) << " " << c.config.name; }

std::unique_ptr<backend::vk::VulkanBackend> make_vulkan(const VulkanConfig& config) {
  backend::vk::VulkanOptions options = backend::vk::options_from_environment("");
  options.storage16 = config.storage16;
  options.subgroups = config.subgroups;
  options.max_storage_range = config.max_storage_range;
  options.max_groups = config.max_groups;
  options.max_storage_buffers = config.max_storage_buffers;
  options.profile = config.profile;
  auto gpu = std::make_unique<backend::vk::VulkanBackend>(options);
  if (options.validation) {
    EXPECT_TRUE(gpu->device().validation_enabled())
        << "MOEFLUX_VULKAN_VALIDATION=1 but VK_LAYER_KHRONOS_validation is not installed "
           "(Debian: vulkan-validationlayers)";
  }
  return gpu;
}

void expect_no_validation_messages(backend::vk::VulkanBackend& gpu) {
  EXPECT_NO_THROW(gpu.finish());
  auto& log = gpu.context().device.validation_log();
  EXPECT_EQ(log.count(), 0u) << "validation messages, the first: "
                             << (log.messages().empty() ? "" : log.messages().front());
}

void VulkanTest::start(const VulkanConfig& config) {
  cpu_ = make_backend();
  gpu_ = make_vulkan(config);
}

void VulkanTest::TearDown() {
  if (gpu_) expect_no_validation_messages(*gpu_);
}

void expect_near_cpu(std::span<const float> got, std::span<const float> want, std::span<const double> scale,
                     double rtol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  Reference ref;
  ref.value.assign(want.begin(), want.end());
  ref.scale.assign(scale.begin(), scale.end());
  expect_close(got, ref, rtol, what);
}

void expect_near_cpu(std::span<const float> got, std::span<const float> want, double rtol, const std::string& what) {
  std::vector<double> scale(want.size());
  for (std::size_t i = 0; i < want.size(); ++i) scale[i] = std::abs(static_cast<double>(want[i]));
  expect_near_cpu(got, want, scale, rtol, what);
}

void expect_same_bits(std::span<const float> got, std::span<const float> want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  std::size_t differ = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0 && differ++ == 0) first = i;
  }
  EXPECT_EQ(differ, 0u) << what << ": " << differ << " of " << got.size() << " elements differ; the first at ["
                        << first << "]: got " << (differ ? got[first] : 0.0f) << ", want "
                        << (differ ? want[first] : 0.0f);
}

StoredWeight::StoredWeight(format::Dtype d, backend::Shape s, std::span<const float> values)
    : rounded(values.size()), dtype(d), shape(std::move(s)), bytes(values.size() * format::dtype_size(d)) {
  format::from_f32(values.data(), dtype, values.size(), bytes.data());
  format::to_f32(bytes.data(), dtype, values.size(), rounded.data());
}

format::TensorView StoredWeight::view() const {
  format::TensorView v;
  v.name = "test.weight";
  v.dtype = dtype;
  v.shape = shape;
  v.data = bytes.data();
  v.nbytes = bytes.size();
  return v;
}

QuantizedWeight::QuantizedWeight(const format::QuantParams& p, backend::Shape s, std::span<const float> v)
    : params(p), shape(std::move(s)) {
  const format::QuantLayout layout = format::quant_layout(shape, params);
  bytes.resize(layout.nbytes);
  values.resize(v.size());
  format::quantize(v.data(), layout, params, bytes.data());
  format::dequantize_rows(bytes.data(), layout, params, 0, layout.rows, values.data());
}

format::TensorView QuantizedWeight::view(std::string name) const {
  return {std::move(name), format::quantized_dtype(params.bits), shape, bytes.data(), bytes.size(),
          params.group_size, params.scale_dtype};
}

}  // namespace moeflux::test
