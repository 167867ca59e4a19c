// One translator: a moeflux::Error becomes the moeflux.errors class of the same name, so Python code
// catches moeflux.FormatError (and ValueError / OSError / NotImplementedError where they apply).
#include <string>

#include "bindings.h"
#include "moeflux/util/error.h"

namespace py = pybind11;

namespace moeflux::bindings {

void init_errors(py::module_& m) {
  (void)m;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const moeflux::Error& e) {
      py::object cls;
      try {
        cls = py::module_::import("moeflux.errors").attr(std::string(error_kind_name(e.kind())).c_str());
      } catch (const py::error_already_set&) {
        PyErr_Clear();
        cls = py::reinterpret_borrow<py::object>(PyExc_RuntimeError);
      }
      PyErr_SetString(cls.ptr(), e.what());
    }
  });
}

}  // namespace moeflux::bindings
