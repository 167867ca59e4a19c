// moeflux._core._testing: private hooks for the tests and benchmarks of the CPU kernels. quantize()
// packs float rows in the documented layout; matmul() and time_matmul() run the CPU backend's
// matmul on a weight given as its stored bytes. Not part of the package's API.
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "arrays.h"
#include "bindings.h"
#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/format/quant.h"
#include "moeflux/util/error.h"

namespace py = pybind11;

namespace moeflux::bindings {
namespace {

using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using ByteArray = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;

format::Dtype scale_dtype_of(const std::string& name) {
  const format::Dtype dtype = format::parse_dtype(name, "scale_dtype argument");
  MF_CHECK(dtype == format::Dtype::bf16 || dtype == format::Dtype::f16, ConfigError,
           "[_testing] scale_dtype must be 'bf16' or 'f16', not '", name, "'");
  return dtype;
}

// One backend, one resident weight over the caller's bytes (kept alive by `bytes`), one x.
struct MatmulRun {
  ByteArray bytes;
  std::unique_ptr<backend::Backend> backend;
  backend::Tensor w, x, y;
  std::int64_t T = 0, N = 0;

  MatmulRun(const FloatArray& x_in, ByteArray w_bytes, const std::string& dtype, std::vector<std::int64_t> shape,
            int group_size, const std::string& scale_dtype, int threads, bool portable)
      : bytes(std::move(w_bytes)) {
    MF_CHECK(x_in.ndim() == 2 && shape.size() == 2 && x_in.shape(1) == shape[1], ShapeError,
             "[_testing.matmul] x must be [T, K] and shape (N, K)");
    backend::BackendOptions options;
    options.threads = threads;
    backend = std::make_unique<backend::cpu::CpuBackend>(
        options, portable ? backend::cpu::Simd::portable : backend::cpu::best_simd());
    format::TensorView view{"w", format::parse_dtype(dtype, "dtype argument"), shape,
                            reinterpret_cast<const std::byte*>(bytes.data()), static_cast<std::size_t>(bytes.size())};
    view.group_size = group_size;
    view.scale_dtype = scale_dtype_of(scale_dtype);
    w = backend->resident(view);
    T = x_in.shape(0);
    N = shape[0];
    x = backend->empty({T, shape[1]});
    backend->upload(std::span(x_in.data(), static_cast<std::size_t>(x_in.size())), x);
    y = backend->empty({T, N});
  }

  std::vector<float> result() {
    std::vector<float> out(static_cast<std::size_t>(T * N));
    backend->download(y, out);
    return out;
  }
};

}  // namespace

void init_testing(py::module_& m) {
  py::module_ t = m.def_submodule("_testing", "private hooks for the CPU kernel tests and benchmarks");
  t.def(
      "quantize",
      [](const FloatArray& w, int bits, int group_size, const std::string& scale_dtype) {
        MF_CHECK(w.ndim() == 2, ShapeError, "[_testing.quantize] w must be 2-D [rows, cols]");
        const format::QuantParams params{bits, group_size, scale_dtype_of(scale_dtype)};
        format::check_quant_params(params, w.shape(1), "_testing.quantize");
        const format::QuantLayout layout = format::quant_layout({w.shape(0), w.shape(1)}, params);
        std::vector<std::uint8_t> out(layout.nbytes);
        {
          py::gil_scoped_release release;
          format::quantize(w.data(), layout, params, reinterpret_cast<std::byte*>(out.data()));
        }
        return to_numpy(std::move(out), {static_cast<py::ssize_t>(layout.nbytes)});
      },
      py::arg("w"), py::arg("bits"), py::arg("group_size"), py::arg("scale_dtype") = "bf16",
      "Packs float32 [rows, cols] into the quantized layout (q, scales, biases); returns uint8 [nbytes].");
  t.def(
      "matmul",
      [](const FloatArray& x, ByteArray w, const std::string& dtype, std::vector<std::int64_t> shape, int group_size,
         const std::string& scale_dtype, int threads, bool portable) {
        MatmulRun run(x, std::move(w), dtype, std::move(shape), group_size, scale_dtype, threads, portable);
        {
          py::gil_scoped_release release;
          run.backend->matmul(run.x, run.w, run.y);
        }
        const py::ssize_t T = run.T, N = run.N;
        return to_numpy(run.result(), {T, N});
      },
      py::arg("x"), py::arg("w"), py::kw_only(), py::arg("dtype"), py::arg("shape"), py::arg("group_size") = 64,
      py::arg("scale_dtype") = "bf16", py::arg("threads") = 0, py::arg("portable") = false,
      "y = x w^T on the CPU backend: x float32 [T, K], w the stored bytes (uint8) of a weight of `dtype` "
      "('f32', 'f16', 'bf16', 'q8', 'q4', 'q3', 'q2') and shape (N, K); returns float32 [T, N].");
  t.def(
      "time_matmul",
      [](const FloatArray& x, ByteArray w, const std::string& dtype, std::vector<std::int64_t> shape, int group_size,
         const std::string& scale_dtype, int threads, bool portable, int repeat) {
        MatmulRun run(x, std::move(w), dtype, std::move(shape), group_size, scale_dtype, threads, portable);
        py::gil_scoped_release release;
        run.backend->matmul(run.x, run.w, run.y);  // warm-up: scratch, pool, caches
        const auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < repeat; ++i) run.backend->matmul(run.x, run.w, run.y);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        return took.count() / std::max(repeat, 1);
      },
      py::arg("x"), py::arg("w"), py::kw_only(), py::arg("dtype"), py::arg("shape"), py::arg("group_size") = 64,
      py::arg("scale_dtype") = "bf16", py::arg("threads") = 0, py::arg("portable") = false, py::arg("repeat") = 10,
      "Seconds per matmul call (as matmul(), after one warm-up call), averaged over `repeat` calls.");
  t.def("simd", [] { return backend::cpu::best_simd() == backend::cpu::Simd::avx2 ? "avx2" : "portable"; },
        "The kernels the CPU backend picks on this processor: 'avx2' or 'portable'.");
}

}  // namespace moeflux::bindings
