// The expert store's read throughput during misses, on a synthetic packed model with real record
// sizes (random bytes), to hold against io_uring_bench at the same record size and queue depth.
// Usage: expert_store_bench dir=DIR [layers=8] [experts=128] [record=2654208] [batch=8]
//          [tokens=200] [cache=BYTES] [io=direct|buffered] [qd=64]
// Writes DIR unless it already holds a model of that shape. Each token fetches `batch` random
// experts of every layer (k for decode, more for a prefill chunk). Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "moeflux/experts/expert_store.h"
#include "moeflux/format/manifest.h"
#include "moeflux/format/packed_model.h"
#include "moeflux/util/error.h"

namespace {

namespace format = moeflux::format;

std::map<std::string, std::string> parse_args(int argc, char** argv) {
  std::map<std::string, std::string> args{{"layers", "8"}, {"experts", "128"}, {"record", "2654208"},
                                          {"batch", "8"},  {"tokens", "200"},  {"io", "direct"},
                                          {"qd", "64"}};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto eq = arg.find('=');
    if (eq == std::string::npos) throw std::invalid_argument("arguments are key=value, not " + arg);
    args[arg.substr(0, eq)] = arg.substr(eq + 1);
  }
  if (!args.count("dir")) throw std::invalid_argument("dir=DIR is required");
  return args;
}

// A packed model of `layers` MoE layers with three bf16 blocks per record filling `record` bytes.
format::Manifest synthetic_manifest(int layers, int experts, std::uint64_t record) {
  const std::int64_t cols = 256, rows = static_cast<std::int64_t>(record / 3 / (2 * cols));
  format::Manifest m;
  m.model_type = "synthetic_moe";
  m.dense_size = format::kFileAlignment;
  m.dense.push_back({"model.norm.weight", format::Dtype::bf16, {64}, 0, 128, 0, format::Dtype::bf16});
  for (int l = 0; l < layers; ++l) {
    format::ExpertLayerEntry entry;
    entry.layer = l;
    entry.file = "experts/layer_" + std::to_string(1000 + l).substr(1) + ".bin";
    entry.n_experts = experts;
    const auto nbytes = static_cast<std::uint64_t>(2 * rows * cols);
    entry.blocks = {{"gate_proj", format::Dtype::bf16, {rows, cols}, 0, nbytes, 0, format::Dtype::bf16},
                    {"up_proj", format::Dtype::bf16, {rows, cols}, nbytes, nbytes, 0, format::Dtype::bf16},
                    {"down_proj", format::Dtype::bf16, {cols, rows}, 2 * nbytes, nbytes, 0, format::Dtype::bf16}};
    entry.stride = format::align_up(entry.record_bytes(), format::kFileAlignment);
    m.expert_layers.push_back(entry);
  }
  return m;
}

void write_model(const std::string& dir, const format::Manifest& m) {
  std::filesystem::create_directories(dir + "/experts");
  std::ofstream(dir + "/config.json") << "{\"model_type\": \"synthetic_moe\"}";
  std::ofstream(dir + "/dense.bin", std::ios::binary) << std::string(m.dense_size, '\0');
  std::mt19937_64 rng(7);
  std::vector<std::uint64_t> chunk((64u << 20) / 8);
  for (const auto& entry : m.expert_layers) {
    std::ofstream out(dir + "/" + entry.file, std::ios::binary);
    for (std::uint64_t left = entry.file_size(); left > 0;) {
      for (auto& word : chunk) word = rng();  // random bytes: no disk may compress or dedupe them
      const std::uint64_t n = std::min<std::uint64_t>(left, chunk.size() * 8);
      out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(n));
      left -= n;
    }
  }
  m.write(dir + "/moeflux.json");
}

std::uint64_t rss_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const auto args = parse_args(argc, argv);
  const std::string dir = args.at("dir");
  const int layers = std::stoi(args.at("layers")), n_experts = std::stoi(args.at("experts"));
  const int batch = std::stoi(args.at("batch")), tokens = std::stoi(args.at("tokens"));
  const format::Manifest manifest = synthetic_manifest(layers, n_experts, std::stoull(args.at("record")));
  bool same = false;
  try {
    same = format::Manifest::read(dir + "/moeflux.json").to_json() == manifest.to_json();
  } catch (const moeflux::Error&) {  // no model there yet, or another one
  }
  if (!same) write_model(dir, manifest);

  const auto model = format::PackedModel::open(dir);
  const std::uint64_t stride = manifest.expert_layers[0].stride;
  moeflux::experts::StoreOptions options;
  options.experts_per_token = batch;
  const std::uint64_t one_batch_per_layer =
      static_cast<std::uint64_t>(layers) * static_cast<std::uint64_t>(batch) * stride;
  options.cache_bytes = args.count("cache") ? std::stoull(args.at("cache")) : one_batch_per_layer;
  options.io = args.at("io") == "buffered" ? moeflux::experts::IoMode::buffered : moeflux::experts::IoMode::direct;
  options.queue_depth = static_cast<unsigned>(std::stoul(args.at("qd")));
  moeflux::experts::ExpertStore store(model, options);

  std::mt19937 rng(11);
  std::vector<std::int32_t> all(static_cast<std::size_t>(n_experts));
  for (int e = 0; e < n_experts; ++e) all[static_cast<std::size_t>(e)] = e;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < tokens; ++t) {
    for (int l = 0; l < layers; ++l) {
      std::shuffle(all.begin(), all.end(), rng);
      std::vector<std::int32_t> chosen(all.begin(), all.begin() + batch);
      std::sort(chosen.begin(), chosen.end());
      store.fetch(l, chosen);
    }
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const moeflux::experts::StoreStats s = store.stats();
  std::printf(
      "{\"layers\": %d, \"experts\": %d, \"record_bytes\": %llu, \"batch\": %d, \"tokens\": %d, \"io\": \"%s\", "
      "\"queue_depth\": %u, \"cache_bytes\": %llu, \"hits\": %llu, \"misses\": %llu, \"bytes_read\": %llu, "
      "\"read_wait_seconds\": %.3f, \"read_mb_per_s\": %.1f, \"wall_seconds\": %.3f, \"wall_mb_per_s\": %.1f, "
      "\"rss_bytes\": %llu, \"dense_bytes\": %llu}\n",
      layers, n_experts, static_cast<unsigned long long>(stride), batch, tokens, s.io.c_str(), options.queue_depth,
      static_cast<unsigned long long>(s.cache_bytes), static_cast<unsigned long long>(s.hits),
      static_cast<unsigned long long>(s.misses), static_cast<unsigned long long>(s.bytes_read), s.read_wait_seconds,
      s.read_bytes_per_second() / 1e6, wall, static_cast<double>(s.bytes_read) / wall / 1e6,
      static_cast<unsigned long long>(rss_bytes()), static_cast<unsigned long long>(manifest.dense_size));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "expert_store_bench: %s\n", e.what());
  return 1;
}
