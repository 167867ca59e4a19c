// moeflux._core: the private extension module behind the moeflux package.
#include "bindings.h"

PYBIND11_MODULE(_core, m) {
  m.doc() = "moeflux native core (private; use the moeflux package)";
  moeflux::bindings::init_errors(m);
  moeflux::bindings::init_model(m);
  moeflux::bindings::init_convert(m);
  moeflux::bindings::init_devices(m);
  moeflux::bindings::init_testing(m);
}
