#include "moeflux/arch/blocks/lm_head.h"

namespace moeflux::arch {

backend::Tensor lm_head_block(backend::Backend& backend, const backend::Tensor& x, const PreNorm& norm,
                              const backend::Tensor& lm_head, LogitsMode mode) {
  const std::int64_t T = x.dim(0), vocab = lm_head.dim(0);
  const std::int64_t n_out = mode == LogitsMode::all ? T : mode == LogitsMode::last ? 1 : 0;
  if (n_out == 0) return {};
  backend::Tensor out = backend.empty({n_out, vocab});
  backend.norm_matmul(x.rows(T - n_out, n_out), norm.weight, norm.options, std::span(&lm_head, 1),
                      std::span(&out, 1), nullptr);
  return out;
}

}  // namespace moeflux::arch
