// The base implementations of the optional ops: a backend that lacks one says so by name.
#include "moeflux/backend/backend.h"
#include "moeflux/util/error.h"

namespace moeflux::backend {

namespace {
[[noreturn]] void not_implemented(const char* op, const Backend& backend) {
  throw Unsupported(util::concat("[", op, "] is not implemented on this backend (", backend.name(), ")"));
}
}  // namespace

void Backend::causal_conv1d(const Tensor&, const Tensor&, Tensor&, Tensor&) {
  not_implemented("causal_conv1d", *this);
}

void Backend::gated_delta_rule(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&, Tensor&, Tensor&) {
  not_implemented("gated_delta_rule", *this);
}

void Backend::gated_rms_norm(const Tensor&, const Tensor&, const Tensor&, float, Tensor&) {
  not_implemented("gated_rms_norm", *this);
}

}  // namespace moeflux::backend
