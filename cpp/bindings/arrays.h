// NumPy arrays that own their memory (a moved-in std::vector kept alive by a capsule), and token
// ids coming in: integer arrays or sequences only, converted to int32 in one pass.
#pragma once

#include <cstdint>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace moeflux::bindings {

template <typename T>
pybind11::array_t<T> to_numpy(std::vector<T>&& data, std::vector<pybind11::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(data));
  pybind11::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return pybind11::array_t<T>(shape, owned->data(), owner);
}

// Throws TypeError for float or non-numeric input and ValueError for non-1-D or out-of-int32 ids.
std::vector<std::int32_t> token_ids(const pybind11::handle& tokens);

}  // namespace moeflux::bindings
