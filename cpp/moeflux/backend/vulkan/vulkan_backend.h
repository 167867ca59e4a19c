// The Vulkan backend: tensors live in device memory (memory.h), ops record compute dispatches
// (ops/, one file per family) into batches that download() submits and waits for. Weights keep
// their stored dtype where the device has 16-bit storage; activations are f32.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "moeflux/backend/backend.h"
#include "moeflux/backend/vulkan/context.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"

namespace moeflux::backend::vk {

class DeviceExpertCache;

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(const VulkanOptions& options);
  ~VulkanBackend() override;

  std::string name() const override { return "vulkan"; }
  Context& context() { return *context_; }
  const Device& device() const { return context_->device; }
  void finish() { context_->recorder.finish(); }  // waits for all recorded work
  // out [n, cols] = rows [first_row, first_row + n) of a quantized weight, widened exactly as
  // format::dequantize_rows (ops/dequantize.cpp).
  void dequantize(const Tensor& w, std::int64_t first_row, Tensor& out);

  Tensor resident(const format::TensorView& weight) override;
  Tensor empty(Shape shape) override;
  void upload(std::span<const float> src, Tensor& dst) override;
  void download(const Tensor& src, std::span<float> dst) override;
  void download_all(std::span<const TensorDownload> items) override;

  void embedding(const Tensor& table, std::span<const std::int32_t> ids, Tensor& out) override;
  void rms_norm(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) override;
  void rms_scale(const Tensor& x, float eps, const Tensor& y, Tensor& out) override;
  void apply_norm_weight(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) override;
  void matmul(const Tensor& x, const Tensor& w, Tensor& y) override;
  void matmul_add(const Tensor& x, const Tensor& w, Tensor& y) override;
  void norm_matmul(const Tensor& x, const Tensor& norm_weight, const NormOptions& options, std::span<const Tensor> ws,
                   std::span<Tensor> ys, Tensor* normed) override;
  void router(const Tensor& x, const Tensor& norm_weight, const NormOptions& norm, const Tensor& router,
              const RouteOptions& options, Tensor& logits, Tensor& routing, Tensor& normed) override;
  void rope(Tensor& x, std::span<const std::int32_t> positions, const RopeOptions& options) override;
  void write_rows(const Tensor& src, Tensor& dst, std::int64_t first_row) override;
  void attention_inputs(Tensor& q, Tensor& k, const Tensor& v, const Tensor& q_norm, const Tensor& k_norm,
                        const NormOptions& norm, std::span<const std::int32_t> positions, const RopeOptions& rope,
                        Tensor& k_cache, Tensor& v_cache, std::int64_t first_row) override;
  void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                 const AttentionOptions& options, Tensor& out) override;
  void attention_with_inputs(Tensor& q, Tensor& k, const Tensor& v, const Tensor& q_norm, const Tensor& k_norm,
                             const NormOptions& norm, std::span<const std::int32_t> positions, const RopeOptions& rope,
                             Tensor& k_cache, Tensor& v_cache, const AttentionOptions& options, Tensor& out,
                             const InputScale* input_scale = nullptr) override;
  void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, Tensor& out) override;
  void sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) override;
  void moe_experts(const Tensor& x, const MoeRouting& routing, std::span<const ExpertWeights> experts,
                   Tensor& out, bool accumulate) override;
  void route_softmax_topk(const Tensor& logits, const RouteOptions& options, Tensor& routing) override;
  bool can_route_on_device(int layer, std::int64_t n_tokens) const override;
  void moe_experts_routed(const Tensor& x, const Tensor& routing, int layer, Tensor& out, bool accumulate,
                          const FoldedNorm* next = nullptr) override;
  bool folds_input_norm(std::int64_t n_tokens) const override;
  void copy_column_blocks(const Tensor& src, const ColumnBlocks& blocks, Tensor& dst) override;  // ops/column_blocks.cpp
  // Gated DeltaNet (ops/gated_delta.cpp)
  void causal_conv1d(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out) override;
  void delta_rule_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias,
                        Tensor& g, Tensor& beta) override;
  void gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                        const DeltaRuleOptions& options, Tensor& state, Tensor& out) override;
  void gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& weight, float eps, Tensor& out) override;

  // The device tier of the expert cache (device_expert_cache.cpp).
  std::uint64_t expert_slot_bytes(const ExpertCacheLayout& layout) const override;
  void configure_expert_cache(const ExpertCacheLayout& layout, std::uint64_t budget_bytes) override;
  DeviceMemoryInfo memory_info() const override;
  bool expert_cache_holds_all() const override;
  int expert_capacity(int layer) const override;
  std::vector<bool> experts_held(int layer, std::span<const std::int32_t> experts) const override;
  void begin_expert_uploads(int layer, std::span<const std::int32_t> batch) override;
  bool upload_expert(const ExpertWeights& expert) override;
  void load_experts(std::span<const ExpertWeights> experts) override;
  std::map<std::string, double> stats() const override;
  void reset_stats() override;
  const DeviceExpertCache* expert_cache() const { return expert_cache_.get(); }  // for tests

 private:
  std::shared_ptr<VulkanStorage> allocate(VkDeviceSize bytes, std::string_view what);  // device memory
  // matmul, matmul_add (accumulate) and one product of norm_matmul (`norm`: x normalised in the
  // product, which then takes the decode matvec) after their checks; the quantized path in
  // ops/quantized.cpp.
  struct InputNorm {
    const Tensor& weight;
    const NormOptions& options;
  };
  void record_matmul(const Tensor& x, const Tensor& w, Tensor& y, bool accumulate, const InputNorm* norm);
  void matmul_quantized(const Tensor& x, const Tensor& w, Tensor& y, bool accumulate, const InputNorm* norm);
  // norm_matmul folds the norm into the matvecs up to this many rows in all: each row's team then
  // also squares x and multiplies it by the norm weight, which costs more than the rms_norm step
  // it saves once the rows are many (on an H200, Qwen3-30B-A3B's q, k and v with the norm folded
  // took 32.6 instead of 21.5 us a layer; its 128-row router 6.3 instead of 5.1).
  static constexpr std::int64_t kNormFoldRows = 1024;
  void check_norm_matmul(const Tensor& x, const Tensor& norm_weight, std::span<const Tensor> ws,
                         std::span<const Tensor> ys) const;
  // Whether norm_matmul can fold the norm into the product of x [T, K] with w (a decode matvec).
  bool norm_fits_matvec(std::int64_t T, const Tensor& w, const Tensor& norm_weight) const;
  // Whether T rows of x times a quantized w take matmul_vec_q_quads (its first row range).
  bool quantized_matvec_takes_quads(std::int64_t T, const Tensor& w) const;
  void embedding_quantized(const Tensor& table, std::span<const std::int32_t> ids, Tensor& out);
  void fill(Tensor& out, float value);  // ops/moe.cpp
  // The chunked form of gated_delta_rule for T > 1 (ops/gated_delta.cpp); false when its scratch
  // does not fit one binding (the caller then runs the recurrence).
  bool gated_delta_chunked(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g, const Tensor& beta,
                           const DeltaRuleOptions& options, Tensor& state, Tensor& out, float scale);
  // How a weight lies on the device (dtype, bytes; f16/bf16 widened without 16-bit storage),
  // after checking its view; and the upload of its bytes into t, a tensor of that form.
  struct WeightForm {
    Dtype dtype = Dtype::f32;
    std::uint64_t bytes = 0;
    format::QuantParams quant{};
  };
  WeightForm weight_form(const format::TensorView& weight, std::string_view op) const;
  Tensor weight_tensor(std::shared_ptr<VulkanStorage> storage, const WeightForm& form, const Shape& shape) const;
  // on_transfer: on the transfer lane (expert slots), else in compute order.
  void write_weight(const format::TensorView& weight, const Tensor& t, bool on_transfer = false);
  // gate, up, down of a batch of experts of one layer (at most the tier's capacity when cached):
  // device slots for named experts where the tier exists (misses uploaded), else fresh uploads.
  std::vector<std::array<Tensor, 3>> expert_tensors(std::span<const ExpertWeights> batch);
  std::uint32_t expert_batch(std::span<const ExpertWeights> experts) const;  // experts per batch
  // The tensors of w's blocks in device slot `slot` (ShapeError when one does not fit), and the
  // upload of w's bytes into them on the transfer lane, started at once.
  std::array<Tensor, 3> slot_tensors(std::uint32_t slot, const ExpertWeights& w) const;
  void upload_to_slot(const ExpertWeights& w, const std::array<Tensor, 3>& blocks);
  // Called first by moe_experts: ends the upload batch. The slots uploaded ahead are this call's
  // only when it runs the batch begun; any other call (after a batch given up on an error) drops
  // their marks, so that its lookups count hits as usual.
  void close_expert_uploads(std::span<const ExpertWeights> experts);

  // The pair kernels of few tokens (ops/moe_pairs.cpp): every (token, slot) of `routing` [T, 2k]
  // whose expert has an entry in `table` (E entries of 6 words: block addresses) runs
  // moe_gate_up then moe_down into out (accumulating when asked). `forms` are the layer's
  // expert blocks (gate, up, down) as stored on the device.
  struct ExpertForms {
    std::array<WeightForm, 3> role;
    Shape gate_shape, down_shape;
  };
  static bool stored_alike(const WeightForm& a, const WeightForm& b);  // same dtype and quantization
  static bool pair_kernels_fit(const ExpertForms& forms);  // gate and up alike, shapes that chain
  // Every expert stored alike, gate like up, shapes that chain: one kernel variant serves them.
  bool experts_alike(std::span<const ExpertWeights> experts) const;
  // moe_experts takes the pair kernels: few tokens, every expert stored alike.
  bool pair_path_fits(const MoeRouting& routing, std::span<const ExpertWeights> experts) const;
  // rms_norm, or with normalize = false apply_norm_weight (ops/norm.cpp).
  void norm_rows(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out, const char* op,
                 bool normalize);
  void check_folded_norm(const FoldedNorm& next, const Tensor& out) const;  // ShapeError where it does not fit
  // With `next`, moe_down also writes next->scaled = out * w (FoldedNorm).
  void moe_pairs(const Tensor& x, const Window& routing, std::uint32_t k, const Window& table, std::uint32_t E,
                 const ExpertForms& forms, Tensor& out, bool accumulate, const FoldedNorm* next = nullptr);
  // The experts of moe_experts through the pair kernels (few tokens): one staged table per batch.
  void moe_experts_pairs(const Tensor& x, const MoeRouting& routing, std::span<const ExpertWeights> experts,
                         Tensor& out, bool accumulate);
  // The experts of moe_experts for many tokens as one tiled product per batch (ops/moe_grouped.cpp):
  // rows sorted by expert, then moe_combine. False (nothing recorded) when a buffer would exceed
  // one binding; the caller then takes the per-expert path.
  bool moe_experts_grouped(const Tensor& x, const MoeRouting& routing, std::span<const ExpertWeights> experts,
                           Tensor& out, bool accumulate);
  // moe_grouped's gate-up and down over the rows of a plan (`grouped`: n_tiles tiles), then
  // moe_combine into out; act and y hold the plan's rows.
  void record_grouped(const Tensor& x, const ExpertForms& forms, const Window& table, std::uint32_t E,
                      const Window& grouped, const Window& combine, std::int64_t n_tiles, const Tensor& act,
                      const Tensor& y, std::int64_t k, Tensor& out, bool accumulate);
  // Whether T tokens' k experts of E fit the grouped kernels' bindings whatever their routing.
  bool grouped_routing_fits(const ExpertForms& forms, std::int64_t T, std::int64_t k, std::int64_t E) const;
  // The experts of many tokens, every one in the tier (`table`): the routing downloaded (the
  // layer's sync point), planned on the host, then record_grouped.
  void moe_grouped_routed(const Tensor& x, const Tensor& routing, const Window& table, std::uint32_t E,
                          const ExpertForms& forms, Tensor& out, bool accumulate);
  std::vector<ExpertForms> layer_forms_;  // per MoE layer of the device tier, from its layout
  int layout_k_ = 1;                      // experts per token, as the tier was configured
  std::vector<std::array<format::TensorView, 3>> layer_blocks_;  // its blocks (no bytes), likewise
  // `experts` with the blocks of those on the device filled in from the layout (still no bytes);
  // ShapeError when one marked on_device is not held.
  std::vector<ExpertWeights> held_expert_views(std::span<const ExpertWeights> experts) const;

  std::shared_ptr<Context> context_;
  std::unique_ptr<DeviceExpertCache> expert_cache_;
  int upload_layer_ = -1;                   // MoE layer of the batch begun by begin_expert_uploads
  std::vector<std::int32_t> upload_batch_;  // its experts, ascending

  // RoPE's cos and sin for `positions` on the device (ops/rope.cpp's rope_table): the table of the
  // last positions and options asked for is kept, so the layers of one forward step (a prefill's
  // hundreds of positions) compute and upload it once.
  Window rope_window(std::span<const std::int32_t> positions, const RopeOptions& options);
  Tensor rope_table_;
  // Counters of finished workgroups that a shader's last workgroup sets back to 0: `counters`, made
  // (zeroed) or grown to at least n the first time a shader needs them.
  const Tensor& zeroed_counters(Tensor& counters, std::int64_t n);
  Tensor route_counter_;       // matmul_vec_norm_route's
  Tensor attention_counters_;  // attention_decode_step's, one per KV head
  std::vector<std::int32_t> rope_positions_;
  RopeOptions rope_options_;
};

}  // namespace moeflux::backend::vk
