// matmul: y = x w^T, split over the backend's pool by rows of w (OpenBLAS runs single-threaded, so
// the bits never depend on the thread count). f32 weights: sgemv / sgemm per block of rows. 16-bit
// and quantized: up to kFusedRows rows of x (decode) take the fused row kernels; more (prefill)
// dequantize a tile of w per task and multiply it with sgemm.
#include <cblas.h>

#include <algorithm>
#include <limits>

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/backend/cpu/kernels.h"
#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/cpu/weight.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {
namespace {

// Rows of w per prefill task: a tile of about 512 KiB of float32, which stays in L2 while sgemm packs
// it. A function of K alone, like decode_rows of N, so the split never depends on the thread count.
std::int64_t tile_rows(std::int64_t K) { return std::clamp<std::int64_t>((1 << 17) / K, 16, 256) / 16 * 16; }

// Up to this many rows of x, the fused kernels beat dequantizing tiles for sgemm (measured with
// 768 x 2048 at 8 to 2 bits: a pass of 4 rows costs about a third of the tile path).
constexpr std::int64_t kFusedRows = 8;

// Rows of w per decode task: enough tasks to balance up to 64 threads, enough rows to amortise a claim.
std::int64_t decode_rows(std::int64_t N) { return std::max<std::int64_t>(16, (N + 63) / 64); }

// y[:, 0..rows) (row stride N) = x [T, K] . w [rows, K]^T, one BLAS thread. Dimensions were
// checked by weight_matmul (workers must not throw).
void blas_rows(const float* x, const float* w, std::int64_t T, std::int64_t K, std::int64_t rows,
               std::int64_t N, float* y) {
  const auto t = static_cast<blasint>(T), k = static_cast<blasint>(K), r = static_cast<blasint>(rows),
             n = static_cast<blasint>(N);
  if (T == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, r, k, 1.0f, w, k, x, 1, 0.0f, y, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, r, k, 1.0f, x, k, w, k, 0.0f, y, n);
  }
}

}  // namespace

void weight_matmul(const float* x, std::int64_t T, const WeightRef& w, float* y, MatmulContext& ctx) {
  const std::int64_t K = w.cols, N = w.rows;
  if (T == 0 || N == 0) return;
  if (K == 0) {  // an empty sum; BLAS rejects a leading dimension of 0
    std::fill_n(y, T * N, 0.0f);
    return;
  }
  for (const std::int64_t d : {T, K, N}) {
    MF_CHECK(d <= std::numeric_limits<blasint>::max(), Unsupported, "[matmul] dimension ", d,
             " exceeds what the BLAS interface addresses");
  }
  // Each task owns whole rows of w, hence whole columns of y: every element has one owner.
  const auto split = [&](std::int64_t rows, auto&& body) {
    ctx.pool.run((N + rows - 1) / rows, [&](std::int64_t task, int thread) {
      const std::int64_t first = task * rows;
      body(first, std::min(N, first + rows), thread);
    });
  };
  if (w.dtype == Dtype::f32) {
    MF_ASSERT(reinterpret_cast<std::uintptr_t>(w.data) % alignof(float) == 0, "unaligned f32 weight");
    const auto* wf = reinterpret_cast<const float*>(w.data);
    split(T <= kFusedRows ? decode_rows(N) : tile_rows(K), [&](std::int64_t first, std::int64_t last, int) {
      blas_rows(x, wf + first * K, T, K, last - first, N, y + first);
    });
    return;
  }
  const RowKernels kernels = kernels_for(ctx.simd);
  PreparedX px{x, nullptr, T, K};
  float* permuted = ctx.scratch.x.reserve(T * K);
  if (kernels.permute(w.quantized() ? w.quant.bits : 0, x, T, K, permuted)) px.x = permuted;

  if (T <= kFusedRows) {
    float* xsum = nullptr;
    const std::int64_t groups = w.quantized() ? w.layout.groups_per_row : 0;
    if (w.quantized()) {
      const std::int64_t G = w.quant.group_size;
      xsum = ctx.scratch.xsum.reserve(T * groups);
      for (std::int64_t t = 0; t < T; ++t) {
        for (std::int64_t g = 0; g < groups; ++g) {
          float sum = 0.0f;
          for (std::int64_t i = 0; i < G; ++i) sum += x[t * K + g * G + i];
          xsum[t * groups + g] = sum;
        }
      }
    }
    // Tokens in chunks of kMaxMatvecT per pass over a task's rows (the second pass hits cache).
    split(decode_rows(N), [&](std::int64_t first, std::int64_t last, int) {
      for (std::int64_t t = 0; t < T; t += kMaxMatvecT) {
        const PreparedX chunk{px.x + t * K, xsum == nullptr ? nullptr : xsum + t * groups,
                              std::min(kMaxMatvecT, T - t), K};
        kernels.matvec_rows(chunk, w, first, last, y + t * N, N);
      }
    });
    return;
  }
  // Prefill: each task dequantizes a tile of rows into its thread's buffer and multiplies it.
  const std::int64_t rows = tile_rows(K);
  float* tiles = ctx.scratch.tile.reserve(ctx.pool.size() * rows * K);
  split(rows, [&](std::int64_t first, std::int64_t last, int thread) {
    float* tile = tiles + thread * rows * K;
    kernels.dequantize_rows(w, first, last, tile);
    blas_rows(px.x, tile, T, K, last - first, N, y + first);
  });
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
  const WeightRef weight = weight_ref(w, "matmul", "w");
  MatmulContext context = matmul_context();
  weight_matmul(data_of(x, "matmul", "x"), T, weight, data_of(y, "matmul", "y"), context);
}

}  // namespace moeflux::backend::cpu
