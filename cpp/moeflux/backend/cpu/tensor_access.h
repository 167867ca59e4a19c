// Checked access to the float32 elements behind a CPU tensor, and the shape checks the ops share.
// Every op validates its arguments here before touching memory, so failures name the op.
#pragma once

#include <cstdint>
#include <string_view>

#include "moeflux/backend/tensor.h"

namespace moeflux::backend::cpu {

// The first element of `t` (storage base + offset). Throws when `t` is undefined or belongs to
// another backend; `op` and `what` name the op and the argument in the message.
float* data_of(const Tensor& t, std::string_view op, std::string_view what);

// True when a and b share storage and their element ranges intersect.
bool overlaps(const Tensor& a, const Tensor& b);
// True when a and b cover exactly the same elements (in-place elementwise use).
bool same_elements(const Tensor& a, const Tensor& b);

// ShapeError unless t has the given rank.
void check_rank(const Tensor& t, int rank, std::string_view op, std::string_view what);
// ShapeError when `out` overlaps `in` (ops whose output must not alias an input).
void check_disjoint(const Tensor& in, const Tensor& out, std::string_view op, std::string_view what);
// ShapeError when `out` partly overlaps `in`; exact aliasing is fine for elementwise ops.
void check_disjoint_or_same(const Tensor& in, const Tensor& out, std::string_view op,
                            std::string_view what);

}  // namespace moeflux::backend::cpu
