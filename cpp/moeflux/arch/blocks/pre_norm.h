// The blocks of the decoder layers are pre-norm residual blocks: each reads rms_norm(x) of the
// residual stream x [T, H] and adds its output into x. Norm and products are one backend op
// (norm_matmul), and the last product adds into x (matmul_add), so a backend can fuse both.
#pragma once

#include "moeflux/backend/backend.h"

namespace moeflux::arch {

struct PreNorm {
  backend::Tensor weight;  // [H]
  backend::NormOptions options;
};

}  // namespace moeflux::arch
