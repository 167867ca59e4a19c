// Argument checks of ops whose every backend checks the same shapes (ShapeError naming the op and
// the tensors), so that the backends agree on what they refuse.
#pragma once

#include "moeflux/backend/backend.h"

namespace moeflux::backend {

// copy_column_blocks: src [T, ...], dst [T, C], the blocks within both, src and dst disjoint.
void check_column_blocks(const Tensor& src, const ColumnBlocks& blocks, const Tensor& dst);

// delta_rule_gates: a, b, g, beta [T, HV]; a_log, dt_bias [HV]; outputs disjoint from the inputs
// (or the same tensor) and from each other.
void check_delta_rule_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias,
                            const Tensor& g, const Tensor& beta);

}  // namespace moeflux::backend
