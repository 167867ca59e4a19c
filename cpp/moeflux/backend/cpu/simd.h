// The instruction sets the CPU kernels are written for, chosen once per backend at run time. The
// AVX2 kernels also use FMA and F16C, which every AVX2 processor we target has; tests force the
// portable path to cover processors without them.
#pragma once

namespace moeflux::backend::cpu {

enum class Simd { portable, avx2 };

// avx2 when the processor has AVX2, FMA and F16C; portable otherwise.
Simd best_simd();

}  // namespace moeflux::backend::cpu
