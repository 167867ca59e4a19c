// The end of a forward call: the final norm and the LM head over all T rows, only the last, or
// none (ForwardOptions::logits), downloaded into `logits` ([n, vocab] row-major; cleared for none).
#pragma once

#include <vector>

#include "moeflux/arch/model.h"
#include "moeflux/arch/blocks/pre_norm.h"
#include "moeflux/backend/backend.h"

namespace moeflux::arch {

// x [T, H] the residual stream; norm: the final norm; lm_head [vocab, H].
void lm_head_block(backend::Backend& backend, const backend::Tensor& x, const PreNorm& norm,
                   const backend::Tensor& lm_head, LogitsMode mode, std::vector<float>& logits);

}  // namespace moeflux::arch
