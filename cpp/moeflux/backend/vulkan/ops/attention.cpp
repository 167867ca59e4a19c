// attention over a KV cache in flat rows (t * nh + h). Many query rows whose keys fit one binding:
// attention_prefill (blocks of query rows of one KV head walking key tiles). Otherwise (decode, or
// keys past one binding): attention_split, one workgroup per (query row t, KV head, batch of its
// query heads, chunk of keys), then attention_combine where there is more than one chunk. Short
// contexts take one chunk (no combine); longer ones are cut so that about kTargetGroups workgroups
// share the keys. Where the head dimensions are multiples of 4 and a chunk of keys fits its shared
// memory, attention_decode replaces attention_split: all of a KV head's query heads and a short
// chunk per workgroup, in four steps with three barriers.
#include <algorithm>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/vulkan/ops/rope_table.h"
#include "moeflux/backend/vulkan/ops/tensor_access.h"
#include "moeflux/backend/vulkan/vulkan_backend.h"
#include "moeflux/util/error.h"
#include "params/attention.h"
#include "params/attention_combine.h"
#include "params/attention_step.h"

namespace moeflux::backend::vk {
namespace {

constexpr std::int64_t kPrefillMinT = 9;      // fewer query rows: the split pass (decode)
constexpr std::int64_t kPrefillMaxD = 256;    // attention_prefill: D, Dv up to this (Dv > 128 in passes)
constexpr std::int64_t kSplitMaxD = 512;      // the largest D and Dv attention_split.comp holds
constexpr std::int64_t kSplitHeads = 8;       // HB of attention_split.comp: query heads per workgroup
constexpr std::int64_t kSplitWG = 128;        // its workgroup size (pipelines.cpp)
constexpr std::int64_t kPrefillRows = 32;     // R of attention_prefill.comp: (position, head) rows per item
constexpr std::int64_t kPrefillDvPass = 128;  // its DVP: output dimensions per pass
// Split workgroups to aim for: two per compute unit of a large GPU (132 on the H100/H200), so that
// a 32K-key decode step keeps HBM busy while each workgroup still walks several blocks. The device
// does not report its compute units to the ops, hence a constant.
constexpr std::int64_t kTargetGroups = 256;
// Up to this many blocks of keys, one chunk (one dispatch, no combine pass): a second dispatch and
// its barrier cost about as much as a workgroup walking two more blocks.
constexpr std::int64_t kDirectBlocks = 2;
// A single chunk with all of a KV head's query heads in one workgroup leaves a decode step a handful
// of workgroups (4 for 4 KV heads: 35 us a layer on an H200, against 17 with a head each); short
// contexts batch fewer heads per workgroup until this many run (K/V rows then read once per batch,
// cheap while they are few).
constexpr std::int64_t kDirectMinGroups = 32;

constexpr std::int64_t kDecodeKvVec4s = 1760;  // KV_VEC4S of attention_decode.comp
constexpr std::int64_t kDecodeScores = 512;    // its S_MAX
constexpr std::int64_t kDecodeMaxChunk = 24;   // keys per workgroup at most
// attention_decode runs between one split chunk (up to kDirectBlocks blocks: one dispatch, no
// combine pass) and this many chunks of its own; past them attention_split's longer chunks take
// over, as attention_combine reads every chunk's state for every row (H200, Qwen3-30B-A3B's heads,
// GPU time with the keys warm in L2: decode / split 15.6 / 17.4 us at 600 keys, 23.6 / 23.1 at
// 1,200, 31.4 / 23.9 at 2,000; in a real decode step at ~650 keys, read from memory, 19 / 29 us).
constexpr std::int64_t kDecodeMaxChunks = 64;

struct Dims {
  std::int64_t T, nh, nkv, D, Dv;
};

// Keys per workgroup of attention_decode.comp (0: it does not fit): as many as its shared memory
// holds, at most kDecodeMaxChunk.
std::int64_t decode_chunk(const Dims& d) {
  if (d.D % 4 != 0 || d.Dv % 4 != 0) return 0;
  const std::int64_t group = d.nh / d.nkv, row_vec4s = d.D / 4 + d.Dv / 4 + 2;  // K and V rows, padded
  const std::int64_t chunk = std::min({kDecodeMaxChunk, kDecodeKvVec4s / row_vec4s, kDecodeScores / group - 1});
  return chunk >= 4 && group <= kDecodeScores / 8 ? chunk : 0;  // maxes[] holds S_MAX / 8 heads
}

// Keys per workgroup of attention_decode.comp with STEP (0: it does not fit): as decode_chunk, with
// q and the new key in front of the K rows and their squares in the scores.
constexpr std::int64_t kStepPrepPerInvocation = 2;  // PREP of attention_decode_step
std::int64_t step_chunk(const Dims& d) {
  if (d.D % 4 != 0 || d.Dv % 4 != 0) return 0;
  const std::int64_t group = d.nh / d.nkv, items = (group + 1) * (d.D / 4), row_vec4s = d.D / 4 + d.Dv / 4 + 2;
  const std::int64_t inputs = (group + 1) * (d.D / 4 + 1);  // q's rows and the new key's, padded
  const std::int64_t prep_items = kStepPrepPerInvocation * shader_spec("attention_decode_step").local_size;
  if (items > kDecodeScores || items + d.Dv / 4 > prep_items || inputs >= kDecodeKvVec4s) return 0;
  const std::int64_t chunk = std::min({kDecodeMaxChunk, (kDecodeKvVec4s - inputs) / row_vec4s, kDecodeScores / group - 1});
  return chunk >= 4 && group <= kDecodeScores / 8 ? chunk : 0;
}

// Keys per block of attention_split.comp: two per score lane, ceil(D / 16) lanes per key (as there).
std::int64_t split_block(std::int64_t D) {
  const std::int64_t slices = (D + 15) / 16, key_groups = kSplitWG / slices;
  return std::min<std::int64_t>(64, 2 * key_groups) / 4 * 4;
}

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
      const bool vec_rows = d.D % 4 == 0 && d.Dv % 4 == 0 && qw.first % 4 == 0 && kv.k.first % 4 == 0;
      p.aligned = vec_rows && kv.v.first % 4 == 0 ? 1u : 0u;
      // Items: blocks of kPrefillRows (position, head) pairs of one KV head, per output pass.
      const std::int64_t items = (tn * (d.nh / d.nkv) + kPrefillRows - 1) / kPrefillRows * d.nkv *
                                 ((d.Dv + kPrefillDvPass - 1) / kPrefillDvPass);
      ctx.recorder.dispatch(pipeline, {qw.binding, kv.k.binding, kv.v.binding}, {ow.binding}, p,
                            {groups_for(items, 1, dev, 0)});
    }
    return;
  }

  // Split: the keys in windows of one binding, each window in chunks.
  const std::int64_t n_keys = keys_hi - keys_lo, rows = d.T * d.nh, group = d.nh / d.nkv;
  const std::int64_t block = split_block(d.D);
  std::int64_t decode = decode_chunk(d);  // attention_decode's keys per workgroup, or 0
  if (decode > 0) {
    const std::int64_t n = (n_keys + decode - 1) / decode, state_bytes = (4 + d.Dv) * 4;
    if (n_keys <= kDirectBlocks * block || n > kDecodeMaxChunks || n * state_bytes > window_bytes(dev)) decode = 0;
  }
  const bool one_chunk = n_keys <= kDirectBlocks * block;  // then decode is 0
  // (t, KV head, batch of query heads) items for `h` query heads per workgroup.
  auto items_for = [&](std::int64_t h) { return d.T * d.nkv * ((group + h - 1) / h); };
  std::int64_t heads = decode > 0 ? group : std::min(group, kSplitHeads);
  if (one_chunk) {
    while (heads > 1 && items_for(heads) < kDirectMinGroups) heads = (heads + 1) / 2;
  }
  // Keys per workgroup for `h` query heads per workgroup: about kTargetGroups workgroups, at least
  // a block each.
  auto chunk_for = [&](std::int64_t h) {
    if (one_chunk) return n_keys;
    if (decode > 0) return decode;
    const std::int64_t per_item = std::max<std::int64_t>(1, (kTargetGroups + items_for(h) - 1) / items_for(h));
    return std::max(block, ((n_keys + per_item - 1) / per_item + block - 1) / block * block);
  };
  std::int64_t chunk = chunk_for(heads);
  // Workgroups that walk a single block run mostly their fixed cost, so more of them, each with
  // fewer heads, finish sooner, up to about half the target (600 keys on an H200: 4 heads 17.3 us
  // against 8 heads 21.9, 2 heads 19.5); past one block, more heads per workgroup win.
  while (decode == 0 && heads > 1 && !one_chunk && chunk == block &&
         items_for(heads) * ((n_keys + chunk - 1) / chunk) < kTargetGroups / 2) {
    heads = (heads + 1) / 2;
    chunk = chunk_for(heads);
  }
  const std::int64_t batches = (group + heads - 1) / heads;
  chunk = std::min(chunk, keys_per_binding);
  const std::int64_t per_window = keys_per_binding / chunk * chunk;  // whole chunks per window
  std::int64_t n_chunks = 0;
  for (std::int64_t k0 = keys_lo; k0 < keys_hi; k0 += per_window) {
    n_chunks += (std::min(per_window, keys_hi - k0) + chunk - 1) / chunk;
  }
  const bool direct = n_chunks == 1;
  const std::int64_t state = 4 + (d.Dv + 3) / 4 * 4;  // one chunk's partial state: m, l, -, -, o
  Tensor partial = direct ? Tensor() : empty({rows, n_chunks, state});
  Tensor& dst = direct ? out : partial;
  const std::int64_t dst_row = direct ? d.Dv : n_chunks * state;
  std::int64_t row_block = rows_per_binding(std::max({d.D, d.Dv, dst_row}) * 4, dev, "attention");
  if (row_block >= group) row_block = row_block / group * group;  // whole KV head groups where they fit
  const bool vec_dims = d.D % 4 == 0 && d.Dv % 4 == 0;  // rows of vec4s (given vec4-aligned firsts)
  MF_ASSERT(decode == 0 || !direct, "attention_decode always leaves several chunks to attention_combine");
  const Pipeline& split = ctx.pipelines.get(decode > 0 ? "attention_decode_f32" : "attention_split_f32");
  for (std::int64_t r0 = 0; r0 < rows; r0 += row_block) {
    const std::int64_t rn = std::min(row_block, rows - r0);
    const Window qw = window(q, r0 * d.D, rn * d.D, dev);
    const Window dw = window(dst, r0 * dst_row, rn * dst_row, dev);
    // The (t, KV head) groups these rows touch, each in `batches` workgroups.
    const std::int64_t row_items = ((r0 + rn - 1) / group - r0 / group + 1) * batches;
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
      p.heads = static_cast<std::uint32_t>(heads), p.block = static_cast<std::uint32_t>(block);
      p.aligned = vec_dims && qw.first % 4 == 0 && kv.k.first % 4 == 0 && kv.v.first % 4 == 0 ? 1u : 0u;
      ctx.recorder.dispatch(split, {qw.binding, kv.k.binding, kv.v.binding}, {dw.binding}, p,
                            {groups_for(chunks_here, 1, dev, 0), groups_for(row_items, 1, dev, 1)});
      chunk_first += chunks_here;
    }
    if (direct) continue;
    const Pipeline& combine = ctx.pipelines.get("attention_combine_f32");
    const Window ow = window(out, r0 * d.Dv, rn * d.Dv, dev);
    // A fresh tensor's windows at whole rows of states start on a vec4: combine reads o as vec4s.
    MF_ASSERT(dw.first % 4 == 0, "attention partial states at element ", dw.first, ", not a multiple of 4");
    const params::AttentionCombineParams c{dw.first, ow.first, static_cast<std::uint32_t>(rn),
                                           static_cast<std::uint32_t>(n_chunks), static_cast<std::uint32_t>(d.Dv)};
    ctx.recorder.dispatch(combine, {dw.binding}, {ow.binding}, c, {groups_for(rn, 1, dev)});
  }
}

void VulkanBackend::attention_with_inputs(Tensor& q, Tensor& k, const Tensor& v, const Tensor& q_norm,
                                         const Tensor& k_norm, const NormOptions& norm,
                                         std::span<const std::int32_t> positions, const RopeOptions& rope,
                                         Tensor& k_cache, Tensor& v_cache, const AttentionOptions& options,
                                         Tensor& out, const InputScale* input_scale) {
  Context& ctx = *context_;
  const Device& dev = ctx.device;
  auto composed = [&] {
    Backend::attention_with_inputs(q, k, v, q_norm, k_norm, norm, positions, rope, k_cache, v_cache, options, out,
                                   input_scale);
  };
  // One decode row whose keys attention_decode would walk, in one binding each: one step.
  // Anything else (and every malformed call, which the ops report) takes the two ops.
  if (q.rank() != 3 || k.rank() != 3 || out.rank() != 3 || k_cache.rank() != 2 || v_cache.rank() != 2 ||
      q.dim(0) != 1 || k.dim(0) != 1 || positions.size() != 1 || q_norm.defined() != k_norm.defined())
    return composed();
  const std::int64_t nkv = k.dim(1), D = q.dim(2);
  if (nkv <= 0 || q.dim(1) % nkv != 0 || k.dim(2) != D || k_cache.dim(1) != nkv * D || v_cache.dim(1) % nkv != 0)
    return composed();
  const Dims d{1, q.dim(1), nkv, D, v_cache.dim(1) / nkv};
  const std::int64_t n_past = options.n_past, capacity = std::min(k_cache.dim(0), v_cache.dim(0));
  if (v.numel() != nkv * d.Dv || out.shape() != Shape({1, d.nh, d.Dv}) || n_past < 0 || n_past + 1 > capacity ||
      options.sliding_window < 0 || rope.rotary_dim <= 0 || rope.rotary_dim > D || rope.rotary_dim % 8 != 0)
    return composed();
  if (q_norm.defined() && (q_norm.numel() != D || k_norm.numel() != D || q_norm.dtype() != k_norm.dtype() ||
                           q_norm.quantized()))
    return composed();
  const std::int64_t chunk = step_chunk(d), block = split_block(D);
  const std::int64_t keys_lo = first_key(n_past, options.sliding_window), n_keys = n_past + 1 - keys_lo;
  const std::int64_t n_chunks = chunk > 0 ? (n_keys + chunk - 1) / chunk : 0, state = 4 + d.Dv;
  if (chunk == 0 || n_keys <= kDirectBlocks * block || n_chunks > kDecodeMaxChunks ||
      shader_spec("attention_decode_step").bindings > dev.limits().max_storage_buffers ||
      n_keys * nkv * std::max(D, d.Dv) * 4 > window_bytes(dev) || d.nh * n_chunks * state * 4 > window_bytes(dev) ||
      d.nh * std::max(D, d.Dv) * 4 > window_bytes(dev))
    return composed();
  check_rope(rope, D, "attention_with_inputs");
  const std::pair<const Tensor*, const char*> tensors[] = {{&q, "q"}, {&k, "k"}, {&v, "v"}, {&k_cache, "k_cache"},
                                                           {&v_cache, "v_cache"}, {&out, "out"}};
  for (const auto& [t, name] : tensors) f32_storage_of(*t, ctx, "attention_with_inputs", name);
  cpu::check_disjoint(k, k_cache, "attention_with_inputs", "k");
  cpu::check_disjoint(v, v_cache, "attention_with_inputs", "v");
  cpu::check_disjoint(q, out, "attention_with_inputs", "q");
  cpu::check_disjoint(k_cache, out, "attention_with_inputs", "k_cache");
  cpu::check_disjoint(v_cache, out, "attention_with_inputs", "v_cache");
  const Window qw = whole(q, dev), kw = whole(k, dev), vw = whole(v, dev), ow = whole(out, dev);
  if (qw.first % 4 != 0 || kw.first % 4 != 0 || vw.first % 4 != 0) return composed();  // read as vec4s
  Window xw{qw.binding, 0};  // unread without an input scale
  if (input_scale != nullptr) {
    const Tensor& x = input_scale->x;
    if (x.rank() != 2 || x.dim(0) != 1 || x.dim(1) % 4 != 0) return composed();
    f32_storage_of(x, ctx, "attention_with_inputs", "x");
    xw = whole(x, dev);
    if (xw.first % 4 != 0) return composed();
  }

  Tensor partial = empty({d.nh, n_chunks, state});
  const KeyWindows kv = key_windows(k_cache.view({k_cache.dim(0), nkv, D}), v_cache.view({v_cache.dim(0), nkv, d.Dv}),
                                    d, keys_lo, n_keys, dev);
  const Window csw = rope_window(positions, rope);
  const Window qnw = q_norm.defined() ? whole(q_norm, dev) : Window{csw.binding, 0};  // unread without norms
  const Window knw = k_norm.defined() ? whole(k_norm, dev) : Window{csw.binding, 0};
  const Window pw = whole(partial, dev), cw = whole(zeroed_counters(attention_counters_, nkv), dev);
  params::AttentionStepParams p{};
  p.q_first = qw.first, p.k_first = kv.k.first, p.v_first = kv.v.first, p.knew_first = kw.first;
  p.vnew_first = vw.first, p.cs_first = csw.first, p.qn_first = qnw.first, p.kn_first = knw.first;
  p.partial_first = pw.first, p.out_first = ow.first, p.counter_first = cw.first;
  p.nkv = static_cast<std::uint32_t>(nkv);
  p.group = static_cast<std::uint32_t>(d.nh / nkv);
  p.D = static_cast<std::uint32_t>(D);
  p.Dv = static_cast<std::uint32_t>(d.Dv);
  p.n_past = static_cast<std::uint32_t>(n_past);
  p.window = static_cast<std::uint32_t>(options.sliding_window);
  p.scale = options.scale;
  p.key_begin = static_cast<std::uint32_t>(keys_lo);
  p.key_count = static_cast<std::uint32_t>(n_keys);
  p.chunk_size = static_cast<std::uint32_t>(chunk);
  p.n_chunks = static_cast<std::uint32_t>(n_chunks);
  p.half_dim = static_cast<std::uint32_t>(rope.rotary_dim / 2);
  p.eps = norm.eps;
  p.norm = q_norm.defined() ? (norm.zero_centered ? 2u : 1u) : 0u;
  p.aligned = kv.k.first % 4 == 0 && kv.v.first % 4 == 0 ? 1u : 0u;
  if (input_scale != nullptr) {
    p.x_scale = 1;
    p.x_first = xw.first;
    p.H = static_cast<std::uint32_t>(input_scale->x.dim(1));
    p.x_eps = input_scale->eps;
  }
  const Dtype wdtype = q_norm.defined() ? q_norm.dtype() : Dtype::f32;
  const Pipeline& pipeline = ctx.pipelines.get(variant("attention_decode_step", wdtype, false));
  ctx.recorder.dispatch(pipeline, {qw.binding, csw.binding, qnw.binding, knw.binding, kw.binding, vw.binding, xw.binding},
                        {kv.k.binding, kv.v.binding, pw.binding, ow.binding, cw.binding}, p,
                        {groups_for(n_chunks, 1, dev, 0), groups_for(nkv, 1, dev, 1)});
}

}  // namespace moeflux::backend::vk
