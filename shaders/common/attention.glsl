// Shared by the attention shaders: the causal window of a query position, and -infinity.
#ifndef MOEFLUX_ATTENTION_GLSL
#define MOEFLUX_ATTENTION_GLSL

#define NEG_INF uintBitsToFloat(0xFF800000u)

// The first key a query at `position` sees: max(0, position - window + 1), or 0 without a window.
uint first_key(uint position, uint window) {
  return (window > 0 && position + 1 > window) ? position + 1 - window : 0;
}

#endif
