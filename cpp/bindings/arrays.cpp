#include "arrays.h"

#include <limits>

namespace py = pybind11;

namespace moeflux::bindings {

std::vector<std::int32_t> token_ids(const py::handle& tokens) {
  py::array array = py::array::ensure(tokens);
  if (!array) throw py::type_error("token ids must be a sequence or array of integers");
  const char kind = array.dtype().kind();
  if (array.size() > 0 && kind != 'i' && kind != 'u')
    throw py::type_error("token ids must be integers, not " + std::string(py::str(array.dtype())));
  if (array.ndim() != 1) throw py::value_error("token ids must be one-dimensional [n]");
  auto ids64 = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(array);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(ids64.size()));
  const std::int64_t* src = ids64.data();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (src[i] < 0 || src[i] > std::numeric_limits<std::int32_t>::max())
      throw py::value_error("token id " + std::to_string(src[i]) + " at index " + std::to_string(i) +
                            " is not a valid token id");
    ids[i] = static_cast<std::int32_t>(src[i]);
  }
  return ids;
}

}  // namespace moeflux::bindings
