// The device's copy bandwidth, the yardstick of the decode benchmark's bandwidth share: copies a
// buffer of SIZE_MIB into another ROUNDS times (vkCmdCopyBuffer, one submit) and prints JSON with
// the bytes moved per second, each byte counted once read and once written.
//   vulkan_copy_bench [SIZE_MIB=1024] [ROUNDS=20] [DEVICE=""]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"

int main(int argc, char** argv) {
  using namespace moeflux::backend;
  const std::int64_t mib = argc > 1 ? std::atoll(argv[1]) : 1024;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 20;
  vk::VulkanOptions options;
  options.device = argc > 3 ? argv[3] : "";
  try {
    vk::VulkanBackend backend(options);
    const std::int64_t n = mib << 18;  // floats
    Tensor a = backend.empty({n}), b = backend.empty({n});
    vk::Recorder& recorder = backend.context().recorder;
    const vk::Binding from = vk::byte_range(a, 0, n), to = vk::byte_range(b, 0, n);
    recorder.copy(from, to);  // warm-up
    backend.finish();
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < rounds; ++r) recorder.copy(r % 2 ? to : from, r % 2 ? from : to);
    backend.finish();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double bytes = 2.0 * static_cast<double>(n) * 4.0 * rounds;
    std::printf("{\"device\": \"%s\", \"size_mib\": %lld, \"rounds\": %d, \"seconds\": %.6f, \"copy_GBs\": %.1f}\n",
                backend.device().info().name.c_str(), static_cast<long long>(mib), rounds, s, bytes / s / 1e9);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vulkan_copy_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
