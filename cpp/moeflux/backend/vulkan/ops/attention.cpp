// attention over a KV cache in flat rows (t * nh + h). Many query rows whose keys fit one binding:
// attention_prefill (query tiles walking key tiles). Otherwise (decode, or keys past one binding):
// attention_split over chunks of keys, one workgroup per (row, chunk) so that long contexts fill the
// GPU, then attention_combine (not needed for a single chunk).
#include <algorithm>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/attention.h"
#include "params/attention_combine.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kPrefillMinT = 9;      // fewer query rows: the split pass (decode)
constexpr std::int64_t kPrefillMaxD = 256;    // MAX_D of attention_prefill.comp
constexpr std::int64_t kSplitMaxD = 512;      // MAX_D of attention_split.comp
constexpr std::int64_t kBlock = 64;           // KB of attention_split.comp: chunks are multiples of it
constexpr std::int64_t kQueryTile = 16;       // QT of attention_prefill.comp
constexpr std::int64_t kTargetGroups = 256;   // split workgroups to aim for: enough to fill a large GPU

struct Dims {
  std::int64_t T, nh, nkv, D, Dv;
};

std::int64_t first_key(std::int64_t position, std::int64_t window) {
  return window > 0 ? std::max<std::int64_t>(0, position - window + 1) : 0;
}

params::AttentionParams base_params(const Dims& d, const AttentionOptions& o) {
  params::AttentionParams p{};
  p.nh = static_cast<std::uint32_t>(d.nh);
  p.nkv = static_cast<std::uint32_t>(d.nkv);
  p.group = static_cast<std::uint32_t>(d.nh / d.nkv);
  p.D = static_cast<std::uint32_t>(d.D);
  p.Dv = static_cast<std::uint32_t>(d.Dv);
  p.n_past = static_cast<std::uint32_t>(o.n_past);
  p.window = static_cast<std::uint32_t>(o.sliding_window);
  p.scale = o.scale;
  return p;
}

// Keys [begin, begin + count) of both caches.
struct KeyWindows {
  Window k, v;
};
KeyWindows key_windows(const Tensor& k, const Tensor& v, const Dims& d, std::int64_t begin, std::int64_t count,
                       const Device& dev) {
  return {window(k, begin * d.nkv * d.D, count * d.nkv * d.D, dev),
          window(v, begin * d.nkv * d.Dv, count * d.nkv * d.Dv, dev)};
}

}  // namespace

void VulkanBackend::attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                              const AttentionOptions& options, Tensor& out) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  cpu::check_rank(q, 3, "attention", "q");
  cpu::check_rank(k_cache, 3, "attention", "k_cache");
  cpu::check_rank(v_cache, 3, "attention", "v_cache");
  cpu::check_rank(out, 3, "attention", "out");
  f32_storage_of(q, ctx, "attention", "q");
  f32_storage_of(k_cache, ctx, "attention", "k_cache");
  f32_storage_of(v_cache, ctx, "attention", "v_cache");
  f32_storage_of(out, ctx, "attention", "out");
  const Dims d{q.dim(0), q.dim(1), k_cache.dim(1), q.dim(2), v_cache.dim(2)};
  const std::int64_t capacity = k_cache.dim(0);
  MF_CHECK(k_cache.dim(2) == d.D && v_cache.dim(0) == capacity && v_cache.dim(1) == d.nkv && d.nkv > 0 &&
               d.nh % d.nkv == 0,
           ShapeError, "[attention] q ", format::shape_string(q.shape()), ", k_cache ",
           format::shape_string(k_cache.shape()), ", v_cache ", format::shape_string(v_cache.shape()),
           "; expected q [T, nh, D], k_cache [capacity, nkv, D], v_cache [capacity, nkv, Dv] with nkv dividing nh");
  MF_CHECK(out.shape() == Shape({d.T, d.nh, d.Dv}), ShapeError, "[attention] out ", format::shape_string(out.shape()),
           " must be [T, nh, Dv] = [", d.T, ", ", d.nh, ", ", d.Dv, "]");
  MF_CHECK(options.n_past >= 0 && options.n_past + d.T <= capacity, ShapeError, "[attention] n_past ", options.n_past,
           " + ", d.T, " rows exceed the cache capacity ", capacity, "; write the new K/V rows into a larger cache");
  MF_CHECK(options.sliding_window >= 0, ShapeError, "[attention] sliding_window ", options.sliding_window,
           " must be 0 (none) or positive");
  cpu::check_disjoint(q, out, "attention", "q");
  cpu::check_disjoint(k_cache, out, "attention", "k_cache");
  cpu::check_disjoint(v_cache, out, "attention", "v_cache");
  if (d.T == 0 || d.nh == 0 || d.Dv == 0) return;
  MF_CHECK(d.D <= kSplitMaxD && d.Dv <= kSplitMaxD, Unsupported, "[attention] head dimensions D = ", d.D,
           ", Dv = ", d.Dv, " exceed the vulkan backend's ", kSplitMaxD, "; use backend='cpu'");
  MF_CHECK(capacity <= std::int64_t{0xFFFFFFFF} && d.T * d.nh <= std::int64_t{0xFFFFFFFF}, Unsupported,
           "[attention] more than 2^32 cache rows or query rows; use backend='cpu'");

  // The keys any query row sees: [keys_lo, keys_hi).
  const std::int64_t keys_lo = first_key(options.n_past, options.sliding_window), keys_hi = options.n_past + d.T;
  const std::int64_t key_bytes = d.nkv * std::max(d.D, d.Dv) * 4;
  const std::int64_t keys_per_binding = rows_per_binding(key_bytes, dev, "attention");
  const bool prefill = d.T >= kPrefillMinT && d.D <= kPrefillMaxD && d.Dv <= kPrefillMaxD &&
                       keys_hi - keys_lo <= keys_per_binding;
  if (prefill) {
    const Pipeline& pipeline = ctx.pipelines.get("attention_prefill_f32");
    const std::int64_t t_rows = rows_per_binding(d.nh * std::max(d.D, d.Dv) * 4, dev, "attention");
    for (std::int64_t t0 = 0; t0 < d.T; t0 += t_rows) {
      const std::int64_t tn = std::min(t_rows, d.T - t0);
      const std::int64_t lo = first_key(options.n_past + t0, options.sliding_window), hi = options.n_past + t0 + tn;
      const KeyWindows kv = key_windows(k_cache, v_cache, d, lo, hi - lo, dev);
      const Window qw = window(q, t0 * d.nh * d.D, tn * d.nh * d.D, dev);
      const Window ow = window(out, t0 * d.nh * d.Dv, tn * d.nh * d.Dv, dev);
      params::AttentionParams p = base_params(d, options);
      p.q_first = qw.first, p.k_first = kv.k.first, p.v_first = kv.v.first, p.out_first = ow.first;
      p.row0 = static_cast<std::uint32_t>(t0 * d.nh), p.rows = static_cast<std::uint32_t>(tn * d.nh);
      p.key_begin = static_cast<std::uint32_t>(lo), p.key_count = static_cast<std::uint32_t>(hi - lo);
      ctx.recorder.dispatch(pipeline, {qw.binding, kv.k.binding, kv.v.binding}, {ow.binding}, p,
                            {groups_for(tn, kQueryTile, dev, 0), groups_for(d.nh, 1, dev, 1)});
    }
    return;
  }

  // Split: the keys in windows of one binding, each window in chunks of a multiple of the block.
  const std::int64_t n_keys = keys_hi - keys_lo, rows = d.T * d.nh;
  const std::int64_t target = std::max<std::int64_t>(1, (kTargetGroups + rows - 1) / rows);  // chunks per row
  const std::int64_t blocks = (n_keys + kBlock - 1) / kBlock;
  const std::int64_t chunk = std::min(kBlock * ((blocks + target - 1) / target), keys_per_binding);
  const std::int64_t per_window = keys_per_binding / chunk * chunk;  // whole chunks per window
  std::int64_t n_chunks = 0;
  for (std::int64_t k0 = keys_lo; k0 < keys_hi; k0 += per_window) {
    n_chunks += (std::min(per_window, keys_hi - k0) + chunk - 1) / chunk;
  }
  const bool direct = n_chunks == 1;
  const std::int64_t state = 2 + d.Dv;  // floats of one chunk's partial state
  Tensor partial = direct ? Tensor() : empty({rows, n_chunks, state});
  Tensor& dst = direct ? out : partial;
  const std::int64_t dst_row = direct ? d.Dv : n_chunks * state;
  const std::int64_t row_block = rows_per_binding(std::max({d.D, d.Dv, dst_row}) * 4, dev, "attention");
  const bool sg = dev.features().subgroup_arithmetic;
  const Pipeline& split = ctx.pipelines.get(sg ? "attention_split_f32_sg" : "attention_split_f32");
  for (std::int64_t r0 = 0; r0 < rows; r0 += row_block) {
    const std::int64_t rn = std::min(row_block, rows - r0);
    const Window qw = window(q, r0 * d.D, rn * d.D, dev);
    const Window dw = window(dst, r0 * dst_row, rn * dst_row, dev);
    std::int64_t chunk_first = 0;
    for (std::int64_t k0 = keys_lo; k0 < keys_hi; k0 += per_window) {
      const std::int64_t kn = std::min(per_window, keys_hi - k0), chunks_here = (kn + chunk - 1) / chunk;
      const KeyWindows kv = key_windows(k_cache, v_cache, d, k0, kn, dev);
      params::AttentionParams p = base_params(d, options);
      p.q_first = qw.first, p.k_first = kv.k.first, p.v_first = kv.v.first, p.out_first = dw.first;
      p.row0 = static_cast<std::uint32_t>(r0), p.rows = static_cast<std::uint32_t>(rn);
      p.key_begin = static_cast<std::uint32_t>(k0), p.key_count = static_cast<std::uint32_t>(kn);
      p.chunk_size = static_cast<std::uint32_t>(chunk), p.chunk_first = static_cast<std::uint32_t>(chunk_first);
      p.n_chunks = static_cast<std::uint32_t>(n_chunks), p.normalize = direct ? 1u : 0u;
      ctx.recorder.dispatch(split, {qw.binding, kv.k.binding, kv.v.binding}, {dw.binding}, p,
                            {groups_for(chunks_here, 1, dev, 0), groups_for(rn, 1, dev, 1)});
      chunk_first += chunks_here;
    }
    if (direct) continue;
    const Pipeline& combine = ctx.pipelines.get("attention_combine_f32");
    const Window ow = window(out, r0 * d.Dv, rn * d.Dv, dev);
    const params::AttentionCombineParams c{dw.first, ow.first, static_cast<std::uint32_t>(rn),
                                           static_cast<std::uint32_t>(n_chunks), static_cast<std::uint32_t>(d.Dv)};
    ctx.recorder.dispatch(combine, {dw.binding}, {ow.binding}, c, {groups_for(rn, 1, dev)});
  }
}

}  // namespace moeflux::backend::vk
