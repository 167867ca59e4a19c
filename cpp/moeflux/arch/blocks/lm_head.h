// The end of a forward call: the final norm and the LM head over all T rows, only the last, or
// none (ForwardOptions::logits). The logits [n, vocab] stay on the backend (undefined for none):
// ForwardRouting::download brings them back with the call's routing in one host wait.
#pragma once

#include "moeflux/arch/model.h"
#include "moeflux/arch/blocks/pre_norm.h"
#include "moeflux/backend/backend.h"

namespace moeflux::arch {

// x [T, H] the residual stream; norm: the final norm; lm_head [vocab, H].
backend::Tensor lm_head_block(backend::Backend& backend, const backend::Tensor& x, const PreNorm& norm,
                              const backend::Tensor& lm_head, LogitsMode mode);

}  // namespace moeflux::arch
