// Decode-sized kernels in isolation on the Vulkan backend: for each case, REPEAT calls recorded
// back to back, either as a chain (each call overwrites the previous one's output, so a barrier
// separates them: the latency a decode step pays per op) or independent (outputs rotate over
// several tensors, so calls overlap: the throughput); matrix-vector products with their weight
// warm in the GPU's caches or cold (rotating over copies larger than the caches, as in decode);
// decode attention at a few context lengths, alone and as a layer's whole step. Prints one JSON line per case with the wall time per
// call and, with the profiler on, the GPU time per command.
//   vulkan_kernel_bench [REPEAT=400] [DEVICE=""] [ONLY=""]   (ONLY: run the cases whose name holds it)
#include <chrono>
#include <cstring>
#include <memory>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/format/quant.h"

namespace {

using namespace moeflux;
using backend::Shape;
using backend::Tensor;

std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// A quantized [N, K] weight resident on the device (its bytes kept alive by the caller).
struct Quantized {
  std::vector<std::byte> bytes;
  format::TensorView view;
  Quantized(int bits, std::int64_t N, std::int64_t K) {
    const format::QuantParams params{.bits = bits, .group_size = 64, .scale_dtype = format::Dtype::bf16};
    const format::QuantLayout layout = format::quant_layout({N, K}, params);
    bytes.resize(layout.nbytes);
    const std::vector<float> v = random_values(static_cast<std::size_t>(N * K), 7);
    format::quantize(v.data(), layout, params, bytes.data());
    view = {"bench.weight", format::quantized_dtype(bits), {N, K}, bytes.data(), bytes.size(), 64,
            format::Dtype::bf16};
  }
};

struct Bf16 {
  std::vector<std::uint16_t> bits;
  format::TensorView view;
  Bf16(std::int64_t N, std::int64_t K) {
    const std::vector<float> v = random_values(static_cast<std::size_t>(N * K), 9);
    bits.resize(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::uint32_t u;
      std::memcpy(&u, &v[i], 4);
      bits[i] = static_cast<std::uint16_t>(u >> 16);
    }
    view = {"bench.weight", format::Dtype::bf16, {N, K}, reinterpret_cast<const std::byte*>(bits.data()),
            bits.size() * 2, 0, format::Dtype::bf16};
  }
};

std::string only;  // run only the cases whose name contains this

// Runs `call(i)` `repeat` times after a warm-up and prints the case's line.
void measure(backend::vk::VulkanBackend& gpu, const std::string& name, const std::string& mode, int repeat,
             double bytes_per_call, const std::function<void(int)>& call) {
  if (name.find(only) == std::string::npos) return;
  // Warm-up long enough for the GPU to raise its clocks (idle, it drops them within a second).
  const auto warm_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  for (int i = 0; std::chrono::steady_clock::now() < warm_until; ++i) {
    call(i);
    if (i % 64 == 63) gpu.finish();
  }
  gpu.finish();
  gpu.reset_stats();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeat; ++i) call(i);
  gpu.finish();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double gpu_s = 0.0;
  for (const auto& [k, v] : gpu.stats()) {
    if (k.rfind("gpu_seconds.", 0) == 0) gpu_s += v;
  }
  std::printf("{\"case\": \"%s\", \"mode\": \"%s\", \"wall_us_per_call\": %.2f, \"gpu_us_per_call\": %.2f, "
              "\"GBs_gpu\": %.1f}\n",
              name.c_str(), mode.c_str(), 1e6 * s / repeat, 1e6 * gpu_s / repeat,
              gpu_s > 0 ? bytes_per_call * repeat / gpu_s / 1e9 : 0.0);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int repeat = argc > 1 ? std::atoi(argv[1]) : 400;
  backend::vk::VulkanOptions options;
  options.device = argc > 2 ? argv[2] : "";
  only = argc > 3 ? argv[3] : "";
  options.profile = true;
  try {
    backend::vk::VulkanBackend gpu(options);
    constexpr int kRotate = 16;
    const auto tensors = [&](Shape shape, int n) {
      std::vector<Tensor> out;
      const std::vector<float> v = random_values(static_cast<std::size_t>(format::element_count(shape)), 3);
      for (int i = 0; i < n; ++i) {
        out.push_back(gpu.empty(shape));
        gpu.upload(v, out.back());
      }
      return out;
    };
    const std::int64_t H = 2048;
    // The floor: a tiny elementwise op.
    {
      std::vector<Tensor> a = tensors({1, H}, kRotate), b = tensors({1, H}, 1);
      measure(gpu, "add 1x2048", "chain", repeat, 3.0 * H * 4, [&](int) { gpu.add(a[0], b[0], a[0]); });
      measure(gpu, "add 1x2048", "independent", repeat, 3.0 * H * 4,
              [&](int i) { gpu.add(b[0], b[0], a[static_cast<std::size_t>(i % kRotate)]); });
    }
    {  // streaming: a + b of 64 Mi floats each (3 x 256 MiB moved per call)
      constexpr std::int64_t n = 64ll << 20;
      std::vector<Tensor> a = tensors({n}, 2);
      measure(gpu, "add 64Mi", "chain", repeat / 20, 3.0 * n * 4, [&](int) { gpu.add(a[0], a[0], a[1]); });
    }
    {
      std::vector<Tensor> x = tensors({1, H}, kRotate), out = tensors({1, H}, kRotate);
      const std::vector<Tensor> w = tensors({H}, 1);
      measure(gpu, "rms_norm 1x2048", "chain", repeat, 3.0 * H * 4, [&](int) { gpu.rms_norm(x[0], w[0], {}, x[0]); });
      measure(gpu, "rms_norm 1x2048", "independent", repeat, 3.0 * H * 4, [&](int i) {
        const auto r = static_cast<std::size_t>(i % kRotate);
        gpu.rms_norm(x[r], w[0], {}, out[r]);
      });
    }
    // Decode attention (one query row, Qwen3-30B-A3B's 32 query / 4 KV heads of 128) at contexts
    // of one chunk, of a few hundred keys (a 512-token prompt) and of thousands.
    {
      const std::int64_t nh = 32, nkv = 4, D = 128, capacity = 8192;
      std::vector<Tensor> q = tensors({1, nh, D}, 1), out = tensors({1, nh, D}, 1);
      std::vector<Tensor> kc = tensors({capacity, nkv, D}, 1), vc = tensors({capacity, nkv, D}, 1);
      for (const std::int64_t keys : {48, 600, 1200, 2000, 4000}) {
        backend::AttentionOptions o;
        o.scale = 0.088f;
        o.n_past = keys - 1;
        const double bytes = 2.0 * static_cast<double>(keys * nkv * D * 4);
        measure(gpu, "attention " + std::to_string(keys) + " keys", "chain", repeat, bytes,
                [&](int) { gpu.attention(q[0], kc[0], vc[0], o, out[0]); });
      }
    }
    // A decode layer's whole attention step (attention_with_inputs: q and the new key normalised and
    // rotated, the new row written, the chunks merged), plain and with a folded norm's input scale.
    {
      const std::int64_t nh = 32, nkv = 4, D = 128, capacity = 8192;
      std::vector<Tensor> q = tensors({1, nh, D}, 1), k = tensors({1, nkv, D}, 1), v = tensors({1, nkv * D}, 1);
      std::vector<Tensor> kc = tensors({capacity, nkv * D}, 1), vc = tensors({capacity, nkv * D}, 1);
      std::vector<Tensor> out = tensors({1, nh, D}, 1), norms = tensors({D}, 2), x = tensors({1, H}, 1);
      backend::RopeOptions rope;
      rope.rotary_dim = static_cast<int>(D);
      for (std::int64_t j = 0; j < D / 2; ++j) rope.inv_freq.push_back(1.0f / static_cast<float>(j + 1));
      const backend::InputScale scale{x[0], 1e-6f};
      for (const std::int64_t keys : {48, 600, 1200}) {
        backend::AttentionOptions o;
        o.scale = 0.088f;
        o.n_past = keys - 1;
        const std::vector<std::int32_t> positions = {static_cast<std::int32_t>(keys - 1)};
        const double bytes = 2.0 * static_cast<double>(keys * nkv * D * 4);
        for (const bool scaled : {false, true}) {
          measure(gpu, "attention step " + std::to_string(keys) + " keys" + (scaled ? " scaled" : ""), "chain", repeat,
                  bytes, [&](int) {
                    gpu.attention_with_inputs(q[0], k[0], v[0], norms[0], norms[1], {}, positions, rope, kc[0], vc[0],
                                              o, out[0], scaled ? &scale : nullptr);
                  });
        }
      }
    }
    struct MatCase {
      int bits;  // 0: bf16
      std::int64_t N, K;
    };
    // Weights rotate over copies filling kColdBytes (well past the L2 caches of today's GPUs), as a
    // decode step streams each weight from memory; "warm" reads one copy again and again.
    constexpr double kColdBytes = 256e6;
    for (const MatCase c : {MatCase{8, 4096, 2048}, MatCase{8, 512, 2048}, MatCase{8, 2048, 4096}, MatCase{4, 1536, 2048},
                            MatCase{4, 2048, 768}, MatCase{0, 128, 2048}, MatCase{8, 151936, 2048}}) {
      std::vector<std::unique_ptr<Quantized>> q;
      std::unique_ptr<Bf16> f;
      std::vector<Tensor> w;
      double bytes;
      if (c.bits > 0) {
        q.push_back(std::make_unique<Quantized>(c.bits, c.N, c.K));
        bytes = static_cast<double>(q[0]->bytes.size());
      } else {
        f = std::make_unique<Bf16>(c.N, c.K);
        bytes = static_cast<double>(f->bits.size() * 2);
      }
      const int copies = std::max(1, static_cast<int>(kColdBytes / bytes));
      for (int i = 0; i < copies; ++i) w.push_back(gpu.resident(c.bits > 0 ? q[0]->view : f->view));
      const std::string name = (c.bits ? "q" + std::to_string(c.bits) : std::string("bf16")) + " matvec " +
                               std::to_string(c.N) + "x" + std::to_string(c.K);
      std::vector<Tensor> x = tensors({1, c.K}, 1), y = tensors({1, c.N}, kRotate);
      const int n = c.N > 100000 ? repeat / 20 : repeat;
      const auto at = [&](int i) { return static_cast<std::size_t>(i % copies); };
      measure(gpu, name, "chain warm", n, bytes, [&](int) { gpu.matmul(x[0], w[0], y[0]); });
      measure(gpu, name, "chain cold", n, bytes, [&](int i) { gpu.matmul(x[0], w[at(i)], y[0]); });
      measure(gpu, name, "independent cold", n, bytes,
              [&](int i) { gpu.matmul(x[0], w[at(i)], y[static_cast<std::size_t>(i % kRotate)]); });
      // With x's RMSNorm folded in (norm_matmul), as the decode's projections run.
      const std::vector<Tensor> g = tensors({c.K}, 1);
      measure(gpu, name, "chain cold, input norm", n, bytes, [&](int i) {
        gpu.norm_matmul(x[0], g[0], {}, std::span(&w[at(i)], 1), std::span(&y[0], 1), nullptr);
      });
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vulkan_kernel_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
