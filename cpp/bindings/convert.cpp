// moeflux._core.convert: Hugging Face or MLX checkpoint -> packed model (optionally quantized), with a
// progress callback that takes the GIL for each report.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <initializer_list>
#include <optional>
#include <string>

#include "bindings.h"
#include "moeflux/arch/registry.h"
#include "moeflux/engine/convert_model.h"
#include "moeflux/util/error.h"

namespace py = pybind11;

namespace moeflux::bindings {

namespace {
// A dtype argument limited to `allowed`; ConfigError (ValueError in Python) for anything else.
format::Dtype float_dtype(const std::string& name, const char* argument,
                          std::initializer_list<const char*> allowed) {
  std::string names;
  for (const char* a : allowed) {
    if (name == a) return format::parse_dtype(name, argument);
    names += names.empty() ? a : std::string(", ") + a;
  }
  throw ConfigError(
      util::concat("[convert] ", argument, " \"", name, "\" is not supported; use one of ", names,
                   name.starts_with("q") ? " (request quantization with expert_bits / dense_bits)" : ""));
}
}  // namespace

void init_convert(py::module_& m) {
  m.def(
      "convert",
      [](const std::string& src, const std::string& dst, std::optional<std::string> dtype,
         std::optional<int> expert_bits, std::optional<int> dense_bits, int group_size,
         const std::string& scale_dtype, bool overwrite, std::optional<py::function> progress) {
        format::ConvertOptions options;
        if (dtype) options.dtype = float_dtype(*dtype, "dtype", {"f32", "f16", "bf16"});
        options.expert_bits = expert_bits;
        options.dense_bits = dense_bits;
        options.group_size = group_size;
        options.scale_dtype = float_dtype(scale_dtype, "scale_dtype", {"bf16", "f16"});
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
      py::arg("src"), py::arg("dst"), py::kw_only(), py::arg("dtype") = py::none(),
      py::arg("expert_bits") = py::none(), py::arg("dense_bits") = py::none(), py::arg("group_size") = 64,
      py::arg("scale_dtype") = "bf16", py::arg("overwrite") = false, py::arg("progress") = py::none(),
      "Converts a Hugging Face (or MLX-quantized) checkpoint directory into a packed moeflux model "
      "directory; "
      "expert_bits / dense_bits (8, 4, 3, 2) quantize experts / quantizable dense tensors in groups of "
      "group_size with scale_dtype scales.");
  m.def("supported_model_types", &arch::supported_model_types);
}

}  // namespace moeflux::bindings
