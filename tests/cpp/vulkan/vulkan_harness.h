// The Vulkan op tests: each case runs an op on the CPU backend (the reference) and on a Vulkan
// backend in one of several configurations (device defaults, forced fallbacks, a tiny storage-
// binding limit), on the same inputs, into NaN-poisoned outputs with sentinel guards (ops/harness.h).
// Every test ends by asserting that the validation layer reported nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/format/quant.h"
#include "ops/harness.h"

namespace moeflux::test {

struct VulkanConfig {
  std::string name;
  bool storage16 = true;
  bool subgroups = true;
  std::uint64_t max_storage_range = 0;  // > 0: pretend the device's limit is this small
  std::uint32_t max_groups = 0;         // > 0: pretend the device's group counts are this small
  bool profile = false;                 // GPU timestamps: stats() counts commands per shader
  std::uint32_t max_storage_buffers = 0;  // > 0: pretend the device binds at most this many per shader
};

// default; no16bit (weights widened to f32); nosubgroup (shared-memory reductions); smallrange
// (64 KiB bindings: every large tensor goes through windows and split dispatches).
const std::vector<VulkanConfig>& vulkan_configs();
const VulkanConfig& vulkan_config(const std::string& name);

// An op test's parameter: the weight dtype (f32 for ops without weights) and the configuration.
struct OpCase {
  format::Dtype dtype = format::Dtype::f32;
  VulkanConfig config;
};
// Every configuration, for each of `dtypes`.
std::vector<OpCase> op_cases(std::initializer_list<format::Dtype> dtypes = {format::Dtype::f32});
std::string op_case_name(const ::testing::TestParamInfo<OpCase>& info);  // "bf16_smallrange"
void PrintTo(const OpCase& c, std::ostream* os);

// MOEFLUX_VULKAN_VALIDATION=1 in the environment: the validation layer must be active.
std::unique_ptr<backend::vk::VulkanBackend> make_vulkan(const VulkanConfig& config = {});

// Asserts the backend finished without error and the validation layer reported nothing.
void expect_no_validation_messages(backend::vk::VulkanBackend& gpu);

// A fixture with a CPU and a Vulkan backend; TearDown checks the validation log.
class VulkanTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }
  void TearDown() override;
  void start(const VulkanConfig& config);

  std::unique_ptr<Backend> cpu_;
  std::unique_ptr<backend::vk::VulkanBackend> gpu_;
};

// As VulkanTest, for TEST_P over a parameter whose `config` names the Vulkan configuration.
template <typename Param>
class VulkanParamTest : public VulkanTest, public ::testing::WithParamInterface<Param> {
 protected:
  void SetUp() override { start(this->GetParam().config); }
};

// Compares got with the CPU's result: |got - want| <= rtol * scale per element (scale: the
// magnitude the float32 rounding errors grow with), and every element finite.
void expect_near_cpu(std::span<const float> got, std::span<const float> want, std::span<const double> scale,
                     double rtol, const std::string& what);
// scale = |want| per element.
void expect_near_cpu(std::span<const float> got, std::span<const float> want, double rtol, const std::string& what);
// Bit for bit (copies).
void expect_same_bits(std::span<const float> got, std::span<const float> want, const std::string& what);

// A stored weight: values rounded to `dtype`, its bytes (kept alive for the CPU backend, which
// borrows them) and a view of them.
struct StoredWeight {
  StoredWeight(format::Dtype dtype, backend::Shape shape, std::span<const float> values);
  format::TensorView view() const;
  std::vector<float> rounded;  // the values as the dtype holds them
  format::Dtype dtype;
  backend::Shape shape;
  std::vector<std::byte> bytes;
};

// A quantized weight: values quantized with format::quantize, its bytes (kept alive for the CPU
// backend) and its exactly dequantized values.
struct QuantizedWeight {
  QuantizedWeight(const format::QuantParams& params, backend::Shape shape, std::span<const float> values);
  format::TensorView view(std::string name = "test.weight") const;
  format::QuantParams params;
  backend::Shape shape;
  std::vector<std::byte> bytes;
  std::vector<float> values;  // dequantized, [rows, cols]
};

}  // namespace moeflux::test
