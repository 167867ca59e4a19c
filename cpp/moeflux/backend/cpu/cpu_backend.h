// The CPU backend: activations live in 64-byte aligned float32 host memory; resident weights borrow
// the packed model's bytes (f32, f16, bf16 or quantized). Products with f32 weights go to OpenBLAS,
// others to our row kernels (weight.h); the rest to the plain loops of kernels.h. A backend object
// reuses its scratch buffers and its thread pool, so it is used from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moeflux/backend/backend.h"
#include "moeflux/backend/cpu/simd.h"
#include "moeflux/backend/cpu/thread_pool.h"

namespace moeflux::backend::cpu {

// A 64-byte aligned float32 buffer; contents start uninitialised.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::int64_t size);

  float* data() const { return data_.get(); }
  std::int64_t size() const { return size_; }
  // Grows to hold at least `size` elements (contents are then lost) and returns data().
  float* reserve(std::int64_t size);

 private:
  struct Free {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], Free> data_;
  std::int64_t size_ = 0;
};

// The memory behind a CPU tensor: an owned aligned buffer, or a pointer borrowed from the caller,
// who keeps it alive for as long as any tensor refers to it.
class CpuStorage final : public Storage {
 public:
  explicit CpuStorage(std::int64_t size);
  CpuStorage(float* borrowed, std::int64_t size);

  float* data() const { return data_; }
  std::int64_t size() const { return size_; }  // in float32 elements

 private:
  AlignedBuffer owned_;
  float* data_ = nullptr;
  std::int64_t size_ = 0;
};

// The bytes of a resident weight, borrowed from the packed model's mapping (which outlives the
// backend): read-only, in the stored dtype. Ops read them through weight_ref (weight.h).
class WeightStorage final : public Storage {
 public:
  WeightStorage(const std::byte* data, std::size_t nbytes) : data_(data), nbytes_(nbytes) {}
  const std::byte* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }

 private:
  const std::byte* data_;
  std::size_t nbytes_;
};

// A float32 tensor over caller-owned memory of element_count(shape) floats, without a copy.
Tensor borrow_tensor(float* data, Shape shape);

// Buffers the products reuse across calls: permuted x, group sums of x, dequantized weight tiles.
struct MatmulScratch {
  AlignedBuffer x, xsum, tile;
};

// Buffers moe_experts reuses across calls: gathered rows, projections, unaligned f32 weights.
struct MoeScratch {
  AlignedBuffer x, gate, up, y;
  AlignedBuffer gate_w, up_w, down_w;
};

// Everything a product with a stored weight needs besides its operands.
struct MatmulContext {
  ThreadPool& pool;
  Simd simd;
  MatmulScratch& scratch;
};

class CpuBackend final : public Backend {
 public:
  // `simd` picks the kernels; tests pass Simd::portable to cover processors without AVX2.
  explicit CpuBackend(const BackendOptions& options, Simd simd = best_simd());

  std::string name() const override { return "cpu"; }
  int threads() const { return threads_; }  // worker threads for the ops that split work
  Simd simd() const { return simd_; }

  Tensor resident(const format::TensorView& weight) override;
  Tensor empty(Shape shape) override;
  void upload(std::span<const float> src, Tensor& dst) override;
  void download(const Tensor& src, std::span<float> dst) override;

  void embedding(const Tensor& table, std::span<const std::int32_t> ids, Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) override;
  void rms_scale(const Tensor& x, float eps, const Tensor& y, Tensor& out) override;
  void apply_norm_weight(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) override;
  void matmul(const Tensor& x, const Tensor& w, Tensor& y) override;
  void rope(Tensor& x, std::span<const std::int32_t> positions, const RopeOptions& options) override;
  void write_rows(const Tensor& src, Tensor& dst, std::int64_t first_row) override;
  void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                 const AttentionOptions& options, Tensor& out) override;
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, Tensor& out) override;
  void sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) override;
  void copy_column_blocks(const Tensor& src, const ColumnBlocks& blocks, Tensor& dst) override;
  void moe_experts(const Tensor& x, const MoeRouting& routing, std::span<const ExpertWeights> experts,
                   Tensor& out, bool accumulate) override;
  // Gated DeltaNet (gated_delta.cpp)
  void causal_conv1d(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out) override;
  void gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                        const Tensor& beta, const DeltaRuleOptions& options, Tensor& state,
                        Tensor& out) override;
  void delta_rule_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias,
                        Tensor& g, Tensor& beta) override;
  void gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& weight, float eps,
                      Tensor& out) override;

 private:
  MatmulContext matmul_context() { return {pool_, simd_, matmul_scratch_}; }
  // rms_norm, or with normalize = false apply_norm_weight (norm.cpp).
  void norm_rows(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out, const char* op,
                 bool normalize);

  int threads_ = 1;
  Simd simd_ = Simd::portable;
  ThreadPool pool_;
  MatmulScratch matmul_scratch_;
  MoeScratch moe_scratch_;
  AlignedBuffer norm_weight_;        // a 16-bit norm weight widened per call
  AlignedBuffer conv_weight_;        // a 16-bit conv weight widened per call
  AlignedBuffer conv_window_;        // causal_conv1d: state rows then x rows
  AlignedBuffer delta_q_, delta_k_;  // gated_delta_rule: l2-normalised q and k
  std::vector<std::vector<float>> delta_scratch_;  // gated_delta_rule: one per thread
  AlignedBuffer attention_scores_;  // one score row per thread
};

}  // namespace moeflux::backend::cpu
