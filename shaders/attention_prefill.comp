#version 450
// attention_prefill: a workgroup takes QT query rows of one head (q in shared memory, LANES
// invocations per row) and walks the keys they see in tiles of KT, with an online softmax per row;
// out = o * (1 / sum), as on the CPU. Keys a row does not see are never read.
// Bindings: 0 q f32 [rows / nh, nh, D], 1 k f32 [keys, nkv, D], 2 v f32 [keys, nkv, Dv],
// 3 out f32 [rows / nh, nh, Dv].
#include "common/types.glsl"
#include "common/grid.glsl"
#include "common/attention.glsl"
#include "params/attention.h"

#define QT 16      // query rows per workgroup
#define LANES 8    // invocations per row: WG / QT, WG = 128 (pipelines.cpp)
#define KT 32      // keys per tile
#define MAX_D 256  // D and Dv up to this
#define OPL 32     // output dimensions per lane: MAX_D / LANES

layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer K { float k[]; };
layout(std430, binding = 2) readonly buffer V { float v[]; };
layout(std430, binding = 3) writeonly buffer Out { float out_[]; };

shared float q_sh[QT][MAX_D];
shared float s_sh[QT][KT + 1];  // scores, then probabilities

void main() {
  const uint tid = gl_LocalInvocationID.x, r = tid / LANES, lane = tid % LANES;
  const uint T = p.rows / p.nh, t0 = p.row0 / p.nh, tiles = (T + QT - 1) / QT;
  for (uint h = gl_WorkGroupID.y; h < p.nh; h += gl_NumWorkGroups.y) {
    const uint kvh = h / p.group;
    for (uint tile = gl_WorkGroupID.x; tile < tiles; tile += gl_NumWorkGroups.x) {
      const uint t = tile * QT + r, row = t * p.nh + h;  // t and row within this dispatch
      const bool row_ok = t < T;
      const uint position = p.n_past + t0 + t, first = first_key(position, p.window);
      // The keys any row of the tile sees (every row sees at least itself, so at least one tile).
      const uint keys_lo = first_key(p.n_past + t0 + tile * QT, p.window);
      const uint keys_hi = p.n_past + t0 + min(tile * QT + QT, T);
      // q_sh is only read between the barriers of a key tile, so the previous item is done with it.
      for (uint d = lane; d < p.D; d += LANES) q_sh[r][d] = row_ok ? q[p.q_first + row * p.D + d] : 0.0;
      barrier();
      float m = NEG_INF, l = 0.0, o[OPL];
      for (uint i = 0; i < OPL; ++i) o[i] = 0.0;
      for (uint k0 = keys_lo; k0 < keys_hi; k0 += KT) {
        for (uint jj = lane; jj < KT; jj += LANES) {
          const uint j = k0 + jj;
          float s = NEG_INF;
          if (row_ok && j >= first && j <= position) {
            const uint at = p.k_first + ((j - p.key_begin) * p.nkv + kvh) * p.D;
            float acc = 0.0;
            for (uint d = 0; d < p.D; ++d) acc += q_sh[r][d] * k[at + d];
            s = acc * p.scale;
          }
          s_sh[r][jj] = s;
        }
        barrier();
        float tile_max = NEG_INF;
        for (uint jj = 0; jj < KT; ++jj) tile_max = max(tile_max, s_sh[r][jj]);
        const float m_new = max(m, tile_max);
        const bool any = m_new != NEG_INF;  // else the row has seen no key yet
        barrier();  // every lane has its row's max before the scores turn into probabilities
        for (uint jj = lane; jj < KT; jj += LANES) s_sh[r][jj] = any ? exp(s_sh[r][jj] - m_new) : 0.0;
        barrier();
        if (any) {
          const float alpha = exp(m - m_new);
          float sum = 0.0;
          for (uint jj = 0; jj < KT; ++jj) sum += s_sh[r][jj];
          l = l * alpha + sum;
          for (uint i = 0; i < OPL; ++i) o[i] *= alpha;
          for (uint jj = 0; jj < KT; ++jj) {
            const float pj = s_sh[r][jj];
            if (pj == 0.0) continue;  // a key this row does not see (or whose weight underflows)
            const uint at = p.v_first + ((k0 + jj - p.key_begin) * p.nkv + kvh) * p.Dv + lane;
            for (uint i = 0; i < OPL; ++i) {
              if (lane + i * LANES < p.Dv) o[i] += pj * v[at + i * LANES];
            }
          }
          m = m_new;
        }
        barrier();  // the next tile rewrites s_sh
      }
      if (row_ok) {
        const float inv_sum = 1.0 / l;
        for (uint i = 0; i < OPL; ++i) {
          const uint d = lane + i * LANES;
          if (d < p.Dv) out_[p.out_first + row * p.Dv + d] = o[i] * inv_sum;
        }
      }
    }
  }
}
