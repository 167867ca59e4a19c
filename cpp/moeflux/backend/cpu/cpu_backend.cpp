// CpuBackend's memory side: aligned buffers, storage, resident weights (converted to float32 once)
// and host copies. The ops live in one file per family beside this one.
#include "moeflux/backend/cpu/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <thread>

#include "moeflux/backend/cpu/tensor_access.h"
#include "moeflux/format/dtype.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {
namespace {

constexpr std::size_t kAlignment = 64;  // one cache line, and a whole AVX-512 vector

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

CpuBackend::CpuBackend(const BackendOptions& options) {
  MF_CHECK(options.threads >= 0, ConfigError, "[create_backend] threads = ", options.threads,
           "; pass 0 for all cores or a positive count");
  if (options.threads > 0) {
    threads_ = options.threads;
    openblas_set_num_threads(options.threads);  // process-wide: OpenBLAS has one pool
  } else {
    threads_ = std::max(1U, std::thread::hardware_concurrency());
  }
}

Tensor CpuBackend::resident(const format::TensorView& weight) {
  for (const std::int64_t d : weight.shape) {
    MF_CHECK(d >= 0, ShapeError, "[resident] weight '", weight.name, "' has shape ",
             format::shape_string(weight.shape), " with a negative dimension");
  }
  const std::int64_t count = weight.numel();
  const std::size_t needed = static_cast<std::size_t>(count) * format::dtype_size(weight.dtype);
  MF_CHECK(weight.nbytes >= needed && (weight.data != nullptr || needed == 0), FormatError,
           "[resident] weight '", weight.name, "' (", format::dtype_name(weight.dtype), " ",
           format::shape_string(weight.shape), ") needs ", needed, " bytes but its view holds ",
           weight.data == nullptr ? 0 : weight.nbytes, "; check the manifest entry");
  auto storage = std::make_shared<CpuStorage>(count);
  // f16 and bf16 widen to float32 once here, exactly, so every op reads float32.
  if (count > 0) {
    format::to_f32(weight.data, weight.dtype, static_cast<std::size_t>(count), storage->data());
  }
  return Tensor(std::move(storage), Dtype::f32, weight.shape);
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
  const float* s = data_of(src, "download", "src");
  MF_CHECK(static_cast<std::int64_t>(dst.size()) == src.numel(), ShapeError, "[download] a tensor of shape ",
           format::shape_string(src.shape()), " (", src.numel(), " elements) into ", dst.size(),
           " floats; sizes must match");
  if (!dst.empty()) std::memcpy(dst.data(), s, dst.size() * sizeof(float));
}

}  // namespace moeflux::backend::cpu
