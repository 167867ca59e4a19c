// The op interface every backend implements (cpu/ now, vulkan/ next). The forward pass of each
// architecture is written once against it. Activations are float32 [rows, cols], outer to inner;
// ops may run asynchronously, and download() is the only point where the host waits.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "moeflux/backend/tensor.h"
#include "moeflux/format/tensor_view.h"

namespace moeflux::backend {

struct NormOptions {
  float eps = 1e-6f;
  bool zero_centered = false;  // weight applied as (1 + w) (Qwen3-Next / Qwen3.5)
};

// A layer's input norm folded into the steps around it, so that a decode step has no rms_norm of
// its own there: the MoE step before it, which writes x, also writes `scaled` = x * w (w as
// `options` applies it; moe_experts_routed fuses it, apply_norm_weight writes the same bits); the
// layer projects `scaled`, and its attention scales q, k and v by 1 / rms(x). A row's projections
// are linear in it, so these are the projections of rms_norm(x).
struct FoldedNorm {
  Tensor weight;  // the norm's weight [H]
  NormOptions options;
  Tensor scaled;  // [T, H]: x * w
};

// Inputs of attention_with_inputs projected from a FoldedNorm's `scaled`: q, k and v are scaled
// by 1 / sqrt(mean(x^2) + eps), per row of x [T, H], before anything else.
struct InputScale {
  Tensor x;
  float eps = 1e-6f;
};

struct RopeOptions {
  int rotary_dim = 0;             // the first rotary_dim channels of each head rotate (NeoX pairing)
  std::vector<float> inv_freq;    // [rotary_dim / 2]
  float attention_scaling = 1.0f; // multiplies cos and sin (YaRN); 1 otherwise
};

// Column blocks of a row-major matrix: src viewed [T, groups, group_stride]; for every group g,
// columns [src_col, src_col + width) go to dst columns [dst_col + g * width, ...). Splits the
// per-head interleaved projections (gated attention's query/gate, Qwen3-Next's q/k/v/z and b/a).
struct ColumnBlocks {
  std::int64_t groups = 1;
  std::int64_t group_stride = 0;  // src columns per group
  std::int64_t src_col = 0;       // first column of the block within each group
  std::int64_t width = 0;         // columns per group
  std::int64_t dst_col = 0;       // first dst column of group 0
};

// The gated delta rule's algorithm; both compute the same recurrence (float32 state).
struct DeltaRuleOptions {
  // Tokens per chunk of the chunked (UT-transform) form, used for calls of more than one token;
  // 1 runs the per-token recurrence throughout.
  std::int64_t chunk_size = 64;
};

struct RouteOptions {
  int k = 1;
  bool normalize = false;  // the k weights divided by their sum (norm_topk_prob)
};

struct AttentionOptions {
  float scale = 1.0f;          // multiplies q.k
  std::int64_t n_past = 0;     // query t attends to cache rows [0, n_past + t]
  std::int64_t sliding_window = 0;  // 0: none; else query i sees keys j with i - W < j <= i
};

// One expert's weights as stored (f32/f16/bf16 or quantized): gate [I, H], up [I, H], down [H, I].
// (layer, expert) names the record: its bytes never change during a model's life, so a backend may
// cache them by it (-1: unnamed, never cached).
struct ExpertWeights {
  format::TensorView gate, up, down;
  int layer = -1;
  std::int32_t expert = -1;
  bool on_device = false;  // the device tier holds it (experts_held): the views carry no bytes
  // Block r: gate (0), up (1) or down (2).
  const format::TensorView& block(std::size_t r) const { return r == 0 ? gate : r == 1 ? up : down; }
};

// The routed experts as a backend with a device tier sees them: per MoE layer, its decoder layer,
// its expert count and one record's blocks (gate, up, down: name, dtype, shape, nbytes; no data).
struct ExpertCacheLayout {
  struct Layer {
    int layer = 0;
    int n_experts = 0;
    std::vector<format::TensorView> blocks;
  };
  int k = 1;  // experts per token: the budget must hold one layer's k records
  std::vector<Layer> layers;
};

// One tensor of download_all and where its elements go (as many as it has).
struct TensorDownload {
  const Tensor* src = nullptr;
  std::span<float> dst;
};

// Device memory as the budget planner sees it (bytes of the device-local heaps).
struct DeviceMemoryInfo {
  std::uint64_t heap_bytes = 0;       // size of the device-local heaps
  std::uint64_t free_bytes = 0;       // budget minus usage (memory-budget extension), else heap minus ours
  std::uint64_t allocated_bytes = 0;  // device memory this backend holds
  bool from_budget_extension = false;
};

// The routing of T tokens, on the host: experts and weights [T, k]. `unique` lists the experts
// that occur (ascending), `weights_of` their weights, parallel to `unique`.
struct MoeRouting {
  std::int64_t n_tokens = 0;
  int k = 0;
  std::span<const std::int32_t> experts;  // [T, k]
  std::span<const float> weights;         // [T, k]
  std::span<const std::int32_t> unique;   // ascending
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // --- memory
  // Keeps a weight for the model's lifetime: f32/f16/bf16 or quantized, in the stored format (the
  // CPU backend borrows the mapped bytes, which must outlive the backend).
  virtual Tensor resident(const format::TensorView& weight) = 0;
  virtual Tensor empty(Shape shape) = 0;  // float32, contents unspecified
  virtual void upload(std::span<const float> src, Tensor& dst) = 0;
  virtual void download(const Tensor& src, std::span<float> dst) = 0;  // waits for pending work
  // download() of several tensors with one host wait where the backend can (the end of a forward
  // call: its logits and its routing); this default downloads them one by one.
  virtual void download_all(std::span<const TensorDownload> items);

  // --- ops (x, y: activations; w: resident weights)
  // out[t] = table[ids[t]]; table [V, H], out [T, H]
  virtual void embedding(const Tensor& table, std::span<const std::int32_t> ids, Tensor& out) = 0;
  // out[r] = x[r] / rms(x[r]) * w; x, out [R, C], w [C]
  virtual void rms_norm(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out) = 0;
  // y = x w^T; x [T, K], w [N, K] (any stored dtype, quantized included), y [T, N]
  virtual void matmul(const Tensor& x, const Tensor& w, Tensor& y) = 0;
  // y += x w^T, as matmul (a residual block's output added into the stream; fused where the
  // backend can, this default runs matmul into scratch, then add).
  virtual void matmul_add(const Tensor& x, const Tensor& w, Tensor& y);
  // ys[i] = rms_norm(x) ws[i]^T for every i: x [T, K] normalised with norm_weight [K] as rms_norm
  // does, ws[i] [N_i, K], ys[i] [T, N_i]; where `normed` is not null ([T, K]) it receives
  // rms_norm(x) too. One op so that a backend can fuse the norm into the products (Vulkan's decode
  // matvecs each recompute x's norm, so no step of its own writes it first); this default runs
  // rms_norm, then the matmuls.
  virtual void norm_matmul(const Tensor& x, const Tensor& norm_weight, const NormOptions& options,
                           std::span<const Tensor> ws, std::span<Tensor> ys, Tensor* normed);
  // Rotates x [T, heads, D] in place at the given positions [T].
  virtual void rope(Tensor& x, std::span<const std::int32_t> positions, const RopeOptions& options) = 0;
  // dst rows [first_row, first_row + T) = src; src [T, C], dst [capacity, C]
  virtual void write_rows(const Tensor& src, Tensor& dst, std::int64_t first_row) = 0;
  // A layer's attention inputs in one op (fused where the backend can; this default runs the ops
  // one by one): q [T, nh, D] and k [T, nkv, D] normalised per head with q_norm, k_norm ([D];
  // skipped when undefined) and rotated at `positions`, then k and v ([T, nkv * Dv]) written into
  // rows [first_row, first_row + T) of k_cache [capacity, nkv * D] and v_cache [capacity, nkv * Dv].
  // q is updated in place; k may be.
  virtual void attention_inputs(Tensor& q, Tensor& k, const Tensor& v, const Tensor& q_norm, const Tensor& k_norm,
                                const NormOptions& norm, std::span<const std::int32_t> positions,
                                const RopeOptions& rope, Tensor& k_cache, Tensor& v_cache, std::int64_t first_row);
  // Causal attention with grouped KV heads (head h uses KV head h / (nh / nkv)).
  // q [T, nh, D], k_cache [capacity, nkv, D], v_cache [capacity, nkv, Dv], out [T, nh, Dv]
  virtual void attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                         const AttentionOptions& options, Tensor& out) = 0;
  // A layer's attention of its new rows: attention_inputs at cache row options.n_past, then
  // attention over the caches (viewed as [capacity, nkv, D] and [capacity, nkv, Dv]) into out
  // [T, nh, Dv]. One op so that a backend can fuse them (Vulkan's decode step normalises and
  // rotates q in the attention's workgroups and merges their chunks in the last one); q and k
  // hold scratch afterwards. With `input_scale`, q, k and v are scaled first (FoldedNorm). This
  // default runs the ops.
  virtual void attention_with_inputs(Tensor& q, Tensor& k, const Tensor& v, const Tensor& q_norm,
                                     const Tensor& k_norm, const NormOptions& norm,
                                     std::span<const std::int32_t> positions, const RopeOptions& rope,
                                     Tensor& k_cache, Tensor& v_cache, const AttentionOptions& options, Tensor& out,
                                     const InputScale* input_scale = nullptr);
  // out[r] = x[r] * w, or * (1 + w): rms_norm's weight alone (a FoldedNorm's scaled copy where the
  // step before does not write it); shapes as rms_norm's.
  virtual void apply_norm_weight(const Tensor& x, const Tensor& w, const NormOptions& options, Tensor& out);
  // out[t] = y[t] / sqrt(mean(x[t]^2) + eps); x [T, H], y and out [T, ...] (out may alias y).
  virtual void rms_scale(const Tensor& x, float eps, const Tensor& y, Tensor& out);
  // out = silu(gate) * up; all [T, I]
  virtual void swiglu(const Tensor& gate, const Tensor& up, Tensor& out) = 0;
  // out = a + b; same shapes (out may alias a or b)
  virtual void add(const Tensor& a, const Tensor& b, Tensor& out) = 0;
  // out = sigmoid(gate) * x with gate [T, G] broadcast over groups of C / G columns of x [T, C]
  virtual void sigmoid_mul(const Tensor& gate, const Tensor& x, Tensor& out) = 0;
  // dst[t, blocks.dst_col + g * width + c] = src[t, g * group_stride + src_col + c]; src [T, ...]
  // (T rows, groups * group_stride columns), dst [T, C]; other dst columns are left as they are.
  virtual void copy_column_blocks(const Tensor& src, const ColumnBlocks& blocks, Tensor& dst);
  // out[t] (+)= sum over slots s of weights[t, s] * SwiGLU_{experts[t, s]}(x[t]) for the slots whose
  // expert is in routing.unique, accumulated in ascending expert order. x, out [T, H]; `experts`
  // parallel to routing.unique. With accumulate = false, out is zeroed first; a caller that splits
  // the unique experts into ascending batches passes true after the first, and gets the same bits.
  virtual void moe_experts(const Tensor& x, const MoeRouting& routing,
                           std::span<const ExpertWeights> experts, Tensor& out, bool accumulate = false) = 0;

  // A MoE block's router in one op: normed = rms_norm(x), logits = normed router^T, and routing
  // their softmax top k (as route_softmax_topk). Fused where the backend can (Vulkan routes in
  // the router product's last workgroup, which saves a step); this default runs norm_matmul then
  // route_softmax_topk. x, normed [T, H]; router [E, H]; logits [T, E]; routing [T, 2k].
  virtual void router(const Tensor& x, const Tensor& norm_weight, const NormOptions& norm, const Tensor& router,
                      const RouteOptions& options, Tensor& logits, Tensor& routing, Tensor& normed);

  // --- routing left on the device. A routing tensor is float32 [T, 2k]: per token its k experts
  // (the int32 bit patterns) in descending probability, ties to the lower expert, then their
  // weights; read it with routing_from_tensor (backend/routing.h).
  // Softmax top-k of router logits [T, E] (the reference: backend::softmax_topk on the host; this
  // default runs it there through download and upload).
  virtual void route_softmax_topk(const Tensor& logits, const RouteOptions& options, Tensor& routing);
  // True when moe_experts_routed can run `layer` for n_tokens tokens: every expert of the layer is
  // on the device, so the host need not see the routing.
  virtual bool can_route_on_device(int /*layer*/, std::int64_t /*n_tokens*/) const { return false; }
  // moe_experts for every slot of `routing`, the experts of `layer` taken from the device tier
  // (accumulate: as moe_experts'). With `next`, also next->scaled = out * w (folds_input_norm).
  virtual void moe_experts_routed(const Tensor& x, const Tensor& routing, int layer, Tensor& out, bool accumulate,
                                  const FoldedNorm* next = nullptr);
  // True when moe_experts_routed takes a FoldedNorm for n_tokens tokens (where it runs at all).
  virtual bool folds_input_norm(std::int64_t /*n_tokens*/) const { return false; }

  // --- Gated DeltaNet (linear attention); the base throws Unsupported for backends without it.
  // Depthwise causal conv: out[t][c] = silu(sum_i w[c][i] * x_{t-K+1+i}[c]), the left context from
  // `state`, which then holds the last K-1 inputs. x, out [T, C]; weight [C, K] (HF conv1d.weight
  // [C, 1, K] viewed); state [K-1, C], oldest first.
  virtual void causal_conv1d(const Tensor& x, const Tensor& weight, Tensor& state, Tensor& out);
  // The per-token gated delta rule, value head h reading key head h / (HV / HK):
  // q^ = l2n(q) / sqrt(dk), k^ = l2n(k); S = exp(g) S; u = beta (v - S^T k^); S += k^ u^T; out = S^T q^.
  // q, k [T, HK, dk]; v [T, HV, dv]; g (log-decay), beta [T, HV]; state [HV, dk, dv]; out [T, HV, dv]
  virtual void gated_delta_rule(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g,
                                const Tensor& beta, const DeltaRuleOptions& options, Tensor& state,
                                Tensor& out);
  // The delta rule's gates from the projections a, b [T, HV] and the weights a_log, dt_bias [HV]:
  // g = -exp(a_log) * softplus(a + dt_bias) (the log-decay), beta = sigmoid(b); g, beta [T, HV].
  virtual void delta_rule_gates(const Tensor& a, const Tensor& b, const Tensor& a_log,
                                const Tensor& dt_bias, Tensor& g, Tensor& beta);
  // out = (w * (x / rms(x))) * silu(z) per row; x, z, out [R, C], weight [C] (plain)
  virtual void gated_rms_norm(const Tensor& x, const Tensor& z, const Tensor& weight, float eps,
                              Tensor& out);

  // --- device tier of the expert cache (backends that compute from host memory have none)
  // Bytes of one device slot for `layout` (every record fits); 0: this backend has no device tier.
  virtual std::uint64_t expert_slot_bytes(const ExpertCacheLayout& /*layout*/) const { return 0; }
  // Makes slots for routed experts within budget_bytes (0: every expert); moe_experts then reads
  // named experts from them. Throws BudgetError naming the smallest budget when k records do not fit.
  virtual void configure_expert_cache(const ExpertCacheLayout& /*layout*/, std::uint64_t /*budget_bytes*/) {}
  virtual DeviceMemoryInfo memory_info() const { return {}; }
  // The most experts of `layer` one moe_experts call may name (the device tier's pool for the
  // layer), or -1: no limit.
  virtual int expert_capacity(int /*layer*/) const { return -1; }
  // Which of `experts` the device tier holds now: moe_experts takes those with on_device set and no
  // bytes, so the expert store need not read them. Valid until the next moe_experts call.
  virtual std::vector<bool> experts_held(int /*layer*/, std::span<const std::int32_t> experts) const {
    return std::vector<bool>(experts.size(), false);
  }
  // Uploads of one batch of experts as the expert store hands their records over, so that copies
  // overlap the reads still in flight. begin_expert_uploads starts the batch (the experts of one
  // moe_experts call, at most expert_capacity): those of `batch` the device tier holds are kept
  // from eviction until the batch's moe_experts. upload_expert then copies one expert of the batch
  // that the tier does not hold into it, its copies started, and returns true; moe_experts takes
  // it as held (on_device). false: nothing was uploaded (no device tier), pass its bytes as before.
  // The counters (hits, misses, bytes uploaded, evictions) come out as if moe_experts had uploaded it.
  virtual void begin_expert_uploads(int /*layer*/, std::span<const std::int32_t> /*batch*/) {}
  virtual bool upload_expert(const ExpertWeights& /*expert*/) { return false; }
  // True when the device tier has a slot for every expert; the engine then loads them all up front
  // (load_experts), so that every MoE layer can route on the device.
  virtual bool expert_cache_holds_all() const { return false; }
  // Uploads experts of one layer (named, at most the layer's capacity) into the device tier.
  virtual void load_experts(std::span<const ExpertWeights> /*experts*/) {}

  // Counters since the last reset_stats(), by name (Vulkan: the device tier's "device_*").
  virtual std::map<std::string, double> stats() const { return {}; }
  virtual void reset_stats() {}
};

struct BackendOptions {
  std::string name = "cpu";
  int threads = 0;  // 0: all cores
  std::string device;  // vulkan: "" (the first discrete GPU, else the first usable), an index, or part of a name
};
// The device tier's budget is not a BackendOptions field: the engine plans it after the dense weights
// are resident (memory_info) and passes it to configure_expert_cache.

// Creates a backend by name; throws Unsupported naming the available ones.
std::unique_ptr<Backend> create_backend(const BackendOptions& options);

}  // namespace moeflux::backend
