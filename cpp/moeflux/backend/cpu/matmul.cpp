// matmul: y = x w^T with OpenBLAS (sgemm, or sgemv for a single row, as in decode). The weight is
// [N, K] as stored by transformers' nn.Linear, so it is read transposed in place.
#include <cblas.h>

#include <algorithm>
#include <limits>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {
namespace {

blasint blas_dim(std::int64_t n) {
  MF_CHECK(n <= std::numeric_limits<blasint>::max(), Unsupported, "[matmul] dimension ", n,
           " exceeds what the BLAS interface addresses");
  return static_cast<blasint>(n);
}

}  // namespace

void matmul(const float* x, const float* w, std::int64_t T, std::int64_t K, std::int64_t N, float* y) {
  if (T == 0 || N == 0) return;
  if (K == 0) {  // an empty sum; BLAS rejects a leading dimension of 0
    std::fill_n(y, T * N, 0.0f);
    return;
  }
  const blasint t = blas_dim(T), k = blas_dim(K), n = blas_dim(N);
  if (T == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, k, x, 1, 0.0f, y, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
  }
}

void CpuBackend::matmul(const Tensor& x, const Tensor& w, Tensor& y) {
  check_rank(x, 2, "matmul", "x");
  check_rank(w, 2, "matmul", "w");
  check_rank(y, 2, "matmul", "y");
  const std::int64_t T = x.dim(0), K = x.dim(1), N = w.dim(0);
  MF_CHECK(w.dim(1) == K && y.dim(0) == T && y.dim(1) == N, ShapeError, "[matmul] x ",
           format::shape_string(x.shape()), " times w^T with w ", format::shape_string(w.shape()),
           " into y ", format::shape_string(y.shape()), "; expected x [T, K], w [N, K], y [T, N]");
  check_disjoint(x, y, "matmul", "x");
  check_disjoint(w, y, "matmul", "w");
  cpu::matmul(data_of(x, "matmul", "x"), data_of(w, "matmul", "w"), T, K, N,
              data_of(y, "matmul", "y"));
}

}  // namespace moeflux::backend::cpu
