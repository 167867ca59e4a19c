// The push-constant blocks, written once for glslc and the C++ host. A block is 32-bit scalars
// only (uint, float), so std430 and C++ agree on every offset; each header static_asserts them.
// GLSL: `layout(push_constant) uniform Name { ... } p;`; C++: `struct Name` in backend::vk::params.
#ifndef MOEFLUX_PARAMS_H
#define MOEFLUX_PARAMS_H

#ifdef __cplusplus
#include <cstddef>
#include <cstdint>
#define MF_U32 std::uint32_t
#define MF_F32 float
#define MF_PARAMS_BEGIN(Name) namespace moeflux::backend::vk::params { struct Name {
#define MF_PARAMS_END(Name) }; }
#define MF_PARAMS_CHECK(Name, field, offset)                                         \
  static_assert(offsetof(moeflux::backend::vk::params::Name, field) == (offset), \
                #Name "." #field " must sit at byte " #offset);
#define MF_PARAMS_SIZE(Name, size) \
  static_assert(sizeof(moeflux::backend::vk::params::Name) == (size), #Name " must be " #size " bytes");
#else
#define MF_U32 uint
#define MF_F32 float
#define MF_PARAMS_BEGIN(Name) layout(push_constant) uniform Name {
#define MF_PARAMS_END(Name) } p;
#define MF_PARAMS_CHECK(Name, field, offset)
#define MF_PARAMS_SIZE(Name, size)
#endif

#endif
