// Checked element access and the aliasing and rank checks shared by the CPU ops.
// Storage is downcast with dynamic_cast, so a tensor of another backend fails clearly.
#include "moeflux/backend/cpu/tensor_access.h"

#include "moeflux/backend/cpu/cpu_backend.h"
#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {

float* data_of(const Tensor& t, std::string_view op, std::string_view what) {
  MF_CHECK(t.defined(), ShapeError, "[", op, "] ", what,
           " is an undefined tensor; create it with empty() or resident()");
  MF_CHECK(dynamic_cast<const WeightStorage*>(t.storage()) == nullptr, Unsupported, "[", op, "] ",
           what, " is a resident weight (", format::dtype_name(t.dtype()),
           ", read-only); pass an activation tensor created with empty()");
  const auto* storage = dynamic_cast<const CpuStorage*>(t.storage());
  MF_CHECK(storage != nullptr, Unsupported, "[", op, "] ", what,
           " belongs to another backend; pass tensors created by the cpu backend");
  MF_CHECK(t.dtype() == Dtype::f32, Unsupported, "[", op, "] ", what, " has dtype ",
           format::dtype_name(t.dtype()), "; the cpu backend computes in f32");
  MF_ASSERT(t.offset() >= 0 && t.offset() + t.numel() <= storage->size(), "[", op, "] ", what,
            " at offset ", t.offset(), " with shape ", format::shape_string(t.shape()),
            " exceeds its storage of ", storage->size(), " elements");
  return storage->data() + t.offset();
}

bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.storage() != b.storage() || a.numel() == 0 || b.numel() == 0) return false;
  return a.offset() < b.offset() + b.numel() && b.offset() < a.offset() + a.numel();
}

bool same_elements(const Tensor& a, const Tensor& b) {
  return a.storage() == b.storage() && a.offset() == b.offset() && a.numel() == b.numel();
}

void check_rank(const Tensor& t, int rank, std::string_view op, std::string_view what) {
  MF_CHECK(t.rank() == rank, ShapeError, "[", op, "] ", what, " must have rank ", rank,
           " but has shape ", format::shape_string(t.shape()));
}

void check_disjoint(const Tensor& in, const Tensor& out, std::string_view op, std::string_view what) {
  MF_CHECK(!overlaps(in, out), ShapeError, "[", op, "] the output overlaps ", what,
           "; write into a separate tensor");
}

void check_disjoint_or_same(const Tensor& in, const Tensor& out, std::string_view op,
                            std::string_view what) {
  MF_CHECK(same_elements(in, out) || !overlaps(in, out), ShapeError, "[", op,
           "] the output partly overlaps ", what, "; use the same tensor or a separate one");
}

}  // namespace moeflux::backend::cpu
