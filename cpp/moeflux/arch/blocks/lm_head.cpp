#include "moeflux/arch/blocks/lm_head.h"

namespace moeflux::arch {

void lm_head_block(backend::Backend& backend, const backend::Tensor& x, backend::Tensor& h,
                   const backend::Tensor& final_norm, const backend::Tensor& lm_head,
                   const backend::NormOptions& norm, LogitsMode mode, std::vector<float>& logits) {
  const std::int64_t T = x.dim(0), vocab = lm_head.dim(0);
  const std::int64_t n_out = mode == LogitsMode::all ? T : mode == LogitsMode::last ? 1 : 0;
  if (n_out == 0) {
    logits.clear();
    return;
  }
  backend::Tensor normed = h.rows(0, n_out);
  backend.rms_norm(x.rows(T - n_out, n_out), final_norm, norm, normed);
  backend::Tensor out = backend.empty({n_out, vocab});
  backend.matmul(normed, lm_head, out);
  logits.resize(static_cast<std::size_t>(n_out * vocab));
  backend.download(out, logits);
}

}  // namespace moeflux::arch
