// Softmax top-k of one token by one subgroup (moe_route, moe_router_topk): lane l holds the logits
// of experts l + i * subgroup size in registers (E <= LANE_VALUES * subgroup size, k <= subgroup
// size), every step a subgroup reduction: no shared memory, no barrier. p = softmax (max
// subtracted, exp, divided by the sum; the sum added as subgroup sums of [i * S, (i + 1) * S) in
// ascending i), then k rounds of arg-max (ties to the lower expert), the chosen p divided by their
// sum when normalizing.
// The includer defines ROUTE_LOGIT(t, e) and LANE_VALUES, binds `routing` (uint) and has params `p`
// with E, k, normalize and routing_offset.
#ifndef MOEFLUX_ROUTE_SUBGROUP_GLSL
#define MOEFLUX_ROUTE_SUBGROUP_GLSL

// A float's bits as an int that orders as the float does (NaN aside): integer subgroup max is a
// single instruction on some GPUs, where a float max is a tree of shuffles.
int ordered_bits(float f) {
  const int b = floatBitsToInt(f);
  return b >= 0 ? b : b ^ 0x7FFFFFFF;
}
float from_ordered_bits(int b) { return intBitsToFloat(b >= 0 ? b : b ^ 0x7FFFFFFF); }

// Token t in this subgroup. The loops have constant trip counts, so they unroll and the arrays
// stay in registers; slots past E are padding, and slots i >= n (uniform) are skipped.
void route_in_subgroup(uint t) {
  const uint lane = gl_SubgroupInvocationID, S = gl_SubgroupSize, E = p.E, k = p.k;
  const uint n = (E + S - 1) / S;
  float v[LANE_VALUES];
  for (uint i = 0; i < LANE_VALUES; ++i) {  // every load before the first use: one round trip
    v[i] = 0.0;
    if (lane + i * S < E) v[i] = ROUTE_LOGIT(t, lane + i * S);
  }
  float m = uintBitsToFloat(0xFF800000u);  // -inf
  for (uint i = 0; i < LANE_VALUES; ++i) {
    if (lane + i * S < E) m = max(m, v[i]);
  }
  const float top = from_ordered_bits(subgroupMax(ordered_bits(m)));
  for (uint i = 0; i < LANE_VALUES; ++i) {
    if (lane + i * S < E) v[i] = exp(v[i] - top);
  }
  // One subgroup sum per slot, added in ascending slot order: the workgroup path's order. The
  // sums are independent, so they overlap.
  float sum = 0.0;
  for (uint i = 0; i < LANE_VALUES; ++i) {
    if (i < n) sum += subgroupAdd(v[i]);  // padding lanes add 0
  }
  // key: the bits of p >= 0, which order as p does; -1: padding or already chosen.
  int key[LANE_VALUES];
  for (uint i = 0; i < LANE_VALUES; ++i) key[i] = lane + i * S < E ? floatBitsToInt(v[i] / sum) : -1;
  uint my_e = 0;  // lane j keeps the j-th choice
  float my_p = 0.0, total = 0.0;
  for (uint j = 0; j < k; ++j) {
    int best = -1;
    for (uint i = 0; i < LANE_VALUES; ++i) {
      if (i < n) best = max(best, key[i]);
    }
    const int top_key = subgroupMax(best);
    uint at = 0xFFFFFFFFu;  // this lane's lowest expert holding the top
    for (uint i = 0; i < LANE_VALUES; ++i) {
      if (i < n && key[i] == top_key) at = min(at, lane + i * S);
    }
    const uint e = subgroupMin(at);  // ties: the lower expert
    for (uint i = 0; i < LANE_VALUES; ++i) {
      if (lane + i * S == e) key[i] = -1;
    }
    const float pe = intBitsToFloat(top_key);
    total += pe;  // in the order chosen, as the workgroup path and the CPU add
    if (lane == j) my_e = e, my_p = pe;
  }
  if (lane < k) {
    const uint first = p.routing_offset + t * 2 * k;
    routing[first + lane] = my_e;
    routing[first + k + lane] = floatBitsToUint(p.normalize != 0 ? my_p / total : my_p);
  }
}

#endif
