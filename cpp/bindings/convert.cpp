// moeflux._core.convert: Hugging Face checkpoint -> packed model, with a progress callback that
// takes the GIL for each report.
#include <optional>
#include <string>

#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "moeflux/arch/registry.h"
#include "moeflux/engine/convert_model.h"

namespace py = pybind11;

namespace moeflux::bindings {

void init_convert(py::module_& m) {
  m.def(
      "convert",
      [](const std::string& src, const std::string& dst, std::optional<std::string> dtype, bool overwrite,
         std::optional<py::function> progress) {
        format::ConvertOptions options;
        if (dtype) options.dtype = format::parse_dtype(*dtype, "dtype argument");
        options.overwrite = overwrite;
        if (progress) {
          // Copies of the callback share one reference, so no copy touches Python refcounts unlocked.
          auto fn = std::make_shared<py::function>(*progress);
          options.progress = [fn](const format::ConvertProgress& p) {
            py::gil_scoped_acquire acquire;
            (*fn)(p.bytes_done, p.bytes_total, p.current);
          };
        }
        format::ConvertReport report;
        {
          py::gil_scoped_release release;
          report = engine::convert_model(src, dst, options);
        }
        py::dict d;
        d["bytes_written"] = report.bytes_written;
        d["ignored"] = report.ignored;
        return d;
      },
      py::arg("src"), py::arg("dst"), py::kw_only(), py::arg("dtype") = py::none(), py::arg("overwrite") = false,
      py::arg("progress") = py::none(),
      "Converts a Hugging Face checkpoint directory into a packed moeflux model directory.");
  m.def("supported_model_types", &arch::supported_model_types);
}

}  // namespace moeflux::bindings
