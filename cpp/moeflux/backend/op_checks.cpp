#include "moeflux/backend/op_checks.h"

#include <utility>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/util/error.h"

namespace moeflux::backend {

void check_column_blocks(const Tensor& src, const ColumnBlocks& blocks, const Tensor& dst) {
  MF_CHECK(src.rank() >= 1 && dst.rank() == 2 && src.dim(0) == dst.dim(0), ShapeError, "[copy_column_blocks] src ",
           format::shape_string(src.shape()), " and dst ", format::shape_string(dst.shape()),
           " must be [T, ...] and [T, C] with the same T");
  const std::int64_t T = src.dim(0), C = dst.dim(1);
  const std::int64_t src_cols = T == 0 ? 0 : src.numel() / T;
  const auto& b = blocks;
  MF_CHECK(b.groups >= 1 && b.width >= 0 && b.src_col >= 0 && b.dst_col >= 0 &&
               b.src_col + b.width <= b.group_stride && b.groups * b.group_stride == src_cols &&
               b.dst_col + b.groups * b.width <= C,
           ShapeError, "[copy_column_blocks] blocks (groups ", b.groups, ", group_stride ", b.group_stride,
           ", src_col ", b.src_col, ", width ", b.width, ", dst_col ", b.dst_col, ") do not fit src ",
           format::shape_string(src.shape()), " and dst ", format::shape_string(dst.shape()));
  cpu::check_disjoint(src, dst, "copy_column_blocks", "src");
}

void check_delta_rule_gates(const Tensor& a, const Tensor& b, const Tensor& a_log, const Tensor& dt_bias,
                            const Tensor& g, const Tensor& beta) {
  const char* op = "delta_rule_gates";
  cpu::check_rank(a, 2, op, "a");
  cpu::check_rank(a_log, 1, op, "a_log");
  cpu::check_rank(dt_bias, 1, op, "dt_bias");
  const std::int64_t HV = a.dim(1);
  MF_CHECK(b.shape() == a.shape() && g.shape() == a.shape() && beta.shape() == a.shape(), ShapeError,
           "[delta_rule_gates] b ", format::shape_string(b.shape()), ", g ", format::shape_string(g.shape()),
           " and beta ", format::shape_string(beta.shape()), " must match a ", format::shape_string(a.shape()),
           " [T, HV]");
  MF_CHECK(a_log.dim(0) == HV && dt_bias.dim(0) == HV, ShapeError, "[delta_rule_gates] a_log ",
           format::shape_string(a_log.shape()), " and dt_bias ", format::shape_string(dt_bias.shape()),
           " must be [HV] = [", HV, "]");
  for (const auto& [t, what] : {std::pair{&a, "a"}, {&b, "b"}, {&a_log, "a_log"}, {&dt_bias, "dt_bias"}}) {
    cpu::check_disjoint_or_same(*t, g, op, what);
    cpu::check_disjoint_or_same(*t, beta, op, what);
  }
  cpu::check_disjoint(g, beta, op, "g");
}

}  // namespace moeflux::backend
