// The products' stores: y[i] = v, or y[i] += v when the parameters ask to accumulate (a residual
// block adding its output into the stream). The including shader binds y (read and written) and
// has p.accumulate.
#ifndef MOEFLUX_STORE_Y_GLSL
#define MOEFLUX_STORE_Y_GLSL

void store_y(uint i, float v) { y[i] = p.accumulate != 0u ? y[i] + v : v; }

#endif
