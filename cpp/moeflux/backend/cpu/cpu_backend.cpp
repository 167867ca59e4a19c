// CpuBackend's memory side: aligned buffers, storage, resident weights (borrowed in their stored
// dtype, never copied nor widened) and host copies. The ops live in one file per family beside this.
#include "moeflux/backend/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <thread>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/backend/cpu/weight.h"
#include "moeflux/format/dtype.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {
namespace {

constexpr std::size_t kAlignment = 64;  // one cache line, and a whole AVX-512 vector

int resolve_threads(const BackendOptions& options) {
  MF_CHECK(options.threads >= 0, ConfigError, "[create_backend] threads = ", options.threads,
           "; pass 0 for all cores or a positive count");
  if (options.threads > 0) return options.threads;
  return static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
}

float* allocate_aligned(std::int64_t size) {
  MF_ASSERT(size >= 0, "negative buffer size ", size);
  // At least one line, so that an empty buffer still has a valid, aligned address.
  const std::size_t bytes = std::max<std::size_t>(static_cast<std::size_t>(size) * sizeof(float), 1);
  const std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  return static_cast<float*>(::operator new(rounded, std::align_val_t{kAlignment}));
}

}  // namespace

void AlignedBuffer::Free::operator()(float* p) const {
  ::operator delete(p, std::align_val_t{kAlignment});
}

AlignedBuffer::AlignedBuffer(std::int64_t size) : data_(allocate_aligned(size)), size_(size) {}

float* AlignedBuffer::reserve(std::int64_t size) {
  if (size > size_ || !data_) {
    data_.reset();  // release first, so the peak is one buffer, not two
    data_.reset(allocate_aligned(size));
    size_ = size;
  }
  return data_.get();
}

CpuStorage::CpuStorage(std::int64_t size) : owned_(size), data_(owned_.data()), size_(size) {}

CpuStorage::CpuStorage(float* borrowed, std::int64_t size) : data_(borrowed), size_(size) {
  MF_ASSERT(borrowed != nullptr || size == 0, "borrowed null pointer for ", size, " elements");
}

Tensor borrow_tensor(float* data, Shape shape) {
  const std::int64_t count = format::element_count(shape);
  return Tensor(std::make_shared<CpuStorage>(data, count), Dtype::f32, std::move(shape));
}

CpuBackend::CpuBackend(const BackendOptions& options, Simd simd)
    : threads_(resolve_threads(options)),
      simd_(simd == Simd::avx2 ? best_simd() : Simd::portable),
      pool_(threads_) {
  // Our pool splits every product; OpenBLAS (one process-wide setting) runs one thread per call,
  // so that the split, not OpenBLAS's own, decides which thread computes an element.
  openblas_set_num_threads(1);
}

Tensor CpuBackend::resident(const format::TensorView& weight) {
  const WeightRef w = weight_ref(weight, "resident", "weight");  // checks shape, bytes, quantization
  if (w.dtype == Dtype::f32 && reinterpret_cast<std::uintptr_t>(w.data) % alignof(float) != 0) {
    // Only hand-made views get here: the packed format aligns every tensor to 4 KiB.
    Tensor t = empty(weight.shape);
    const auto bytes = static_cast<std::size_t>(t.numel()) * sizeof(float);
    if (bytes > 0) std::memcpy(data_of(t, "resident", "weight"), w.data, bytes);
    return t;
  }
  const std::size_t nbytes = format::stored_nbytes(weight.dtype, weight.shape, w.quant);
  auto storage = std::make_shared<WeightStorage>(weight.data, nbytes);
  if (w.quantized()) return Tensor(std::move(storage), weight.dtype, weight.shape, w.quant);
  return Tensor(std::move(storage), weight.dtype, weight.shape);
}

Tensor CpuBackend::empty(Shape shape) {
  for (const std::int64_t d : shape) {
    MF_CHECK(d >= 0, ShapeError, "[empty] shape ", format::shape_string(shape),
             " has a negative dimension");
  }
  auto storage = std::make_shared<CpuStorage>(format::element_count(shape));
  return Tensor(std::move(storage), Dtype::f32, std::move(shape));
}

void CpuBackend::upload(std::span<const float> src, Tensor& dst) {
  float* d = data_of(dst, "upload", "dst");
  MF_CHECK(static_cast<std::int64_t>(src.size()) == dst.numel(), ShapeError, "[upload] ",
           src.size(), " floats into a tensor of shape ", format::shape_string(dst.shape()),
           " (", dst.numel(), " elements); sizes must match");
  if (!src.empty()) std::memcpy(d, src.data(), src.size() * sizeof(float));
}

void CpuBackend::download(const Tensor& src, std::span<float> dst) {
  MF_CHECK(static_cast<std::int64_t>(dst.size()) == src.numel(), ShapeError, "[download] a tensor of shape ",
           format::shape_string(src.shape()), " (", src.numel(), " elements) into ", dst.size(),
           " floats; sizes must match");
  if (src.defined() && dynamic_cast<const WeightStorage*>(src.storage()) != nullptr) {
    const WeightRef w = weight_ref(src, "download", "src");  // widened exactly
    widen_rows(w, 0, w.rows, dst.data());
    return;
  }
  const float* s = data_of(src, "download", "src");
  if (!dst.empty()) std::memcpy(dst.data(), s, dst.size() * sizeof(float));
}

}  // namespace moeflux::backend::cpu
