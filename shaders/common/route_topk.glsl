// The router's softmax and top k for one token in one subgroup, where E <= LANE_VALUES * subgroup
// size and k <= subgroup size: lane l holds the logits of experts l + i * subgroup size in
// registers and every step is a subgroup reduction (no shared memory, no barrier). Shared by
// moe_route and the router product's last workgroup (matmul_vec_norm_route), so both give the
// same bits. The including shader binds `logits` (float) and enables subgroups.
#ifndef MOEFLUX_ROUTE_TOPK_GLSL
#define MOEFLUX_ROUTE_TOPK_GLSL

#define LANE_VALUES 16  // kRouteLaneValues of ops/moe_pairs.cpp

// A float's bits as an int that orders as the float does (NaN aside): integer subgroup max is a
// single instruction on some GPUs, where a float max is a tree of shuffles.
int ordered_bits(float f) {
  const int b = floatBitsToInt(f);
  return b >= 0 ? b : b ^ 0x7FFFFFFF;
}
float from_ordered_bits(int b) { return intBitsToFloat(b >= 0 ? b : b ^ 0x7FFFFFFF); }

// One token's routing by one subgroup, from its E logits at logits[row..]: lane j < k returns the
// j-th choice and its weight (divided by the k weights' sum when normalizing). The loops unroll
// (constant trip counts), so the arrays stay in registers, and leave at slot n (uniform): only the
// slots that hold experts cost instructions (4 of 16 for 128 experts on 32 lanes). Slots past E
// within them are padding.
void route_token(uint row, uint E, uint k, bool normalize, out uint my_e, out float my_w) {
  const uint lane = gl_SubgroupInvocationID, S = gl_SubgroupSize;
  const uint n = (E + S - 1) / S;
  float v[LANE_VALUES];
  [[unroll]] for (uint i = 0; i < LANE_VALUES; ++i) {  // every load before the first use: one round trip
    if (i >= n) break;
    v[i] = lane + i * S < E ? logits[row + lane + i * S] : 0.0;
  }
  float m = uintBitsToFloat(0xFF800000u);  // -inf
  [[unroll]] for (uint i = 0; i < LANE_VALUES; ++i) {
    if (i >= n) break;
    if (lane + i * S < E) m = max(m, v[i]);
  }
  const float top = from_ordered_bits(subgroupMax(ordered_bits(m)));
  [[unroll]] for (uint i = 0; i < LANE_VALUES; ++i) {
    if (i >= n) break;
    if (lane + i * S < E) v[i] = exp(v[i] - top);
  }
  // One subgroup sum per slot, added in ascending slot order: the workgroup path's order. The
  // sums are independent, so they overlap.
  float sum = 0.0;
  [[unroll]] for (uint i = 0; i < LANE_VALUES; ++i) {
    if (i >= n) break;
    sum += subgroupAdd(v[i]);  // padding lanes add 0
  }
  // key: the bits of p >= 0, which order as p does; -1: padding or already chosen.
  int key[LANE_VALUES];
  [[unroll]] for (uint i = 0; i < LANE_VALUES; ++i) {
    if (i >= n) break;
    key[i] = lane + i * S < E ? floatBitsToInt(v[i] / sum) : -1;
  }
  my_e = 0;  // lane j keeps the j-th choice
  float my_p = 0.0, total = 0.0;
  for (uint j = 0; j < k; ++j) {
    int best = -1;
    [[unroll]] for (uint i = 0; i < LANE_VALUES; ++i) {
      if (i >= n) break;
      best = max(best, key[i]);
    }
    const int top_key = subgroupMax(best);
    uint at = 0xFFFFFFFFu;  // this lane's lowest expert holding the top
    [[unroll]] for (uint i = 0; i < LANE_VALUES; ++i) {
      if (i >= n) break;
      if (key[i] == top_key) at = min(at, lane + i * S);
    }
    const uint e = subgroupMin(at);  // ties: the lower expert
    [[unroll]] for (uint i = 0; i < LANE_VALUES; ++i) {
      if (i >= n) break;
      if (lane + i * S == e) key[i] = -1;
    }
    const float pe = intBitsToFloat(top_key);
    total += pe;  // in the order chosen, as the workgroup path and the CPU add
    if (lane == j) my_e = e, my_p = pe;
  }
  my_w = normalize ? my_p / total : my_p;
}

#endif
