// The end of a forward call: the final norm and the LM head over all T rows, only the last, or
// none (ForwardOptions::logits), downloaded into `logits` ([n, vocab] row-major; cleared for none).
#pragma once

#include <vector>

#include "moeflux/arch/model.h"
#include "moeflux/backend/backend.h"

namespace moeflux::arch {

// x [T, H] the residual stream; h [T, H] scratch; final_norm [H]; lm_head [vocab, H].
void lm_head_block(backend::Backend& backend, const backend::Tensor& x, backend::Tensor& h,
                   const backend::Tensor& final_norm, const backend::Tensor& lm_head,
                   const backend::NormOptions& norm, LogitsMode mode, std::vector<float>& logits);

}  // namespace moeflux::arch
