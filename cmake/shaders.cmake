# The shader variants: a table of (template, variant, defines, features). Each variant compiles
# shaders/<template>.comp with glslc (depfile for its includes) into a C initializer in the build
# tree; one generated .cpp embeds them all as arrays with a lookup table by name (vulkan/spirv.h).
# Variant names: <shader>_<weights>_<acts>[_<option>]; features name what the device must offer.
# The shader (its row in the pipeline table) is the template's name unless SHADER names another:
# a template compiled into two shaders with different bindings.

set(MOEFLUX_SHADER_NAMES)
function(moeflux_shader template variant)
  cmake_parse_arguments(ARG "" "SHADER" "DEFINES;FEATURES" ${ARGN})
  if(NOT ARG_SHADER)
    set(ARG_SHADER ${template})
  endif()
  set(name ${ARG_SHADER}_${variant})
  set(MOEFLUX_SHADER_NAMES ${MOEFLUX_SHADER_NAMES} ${name} PARENT_SCOPE)
  set(MOEFLUX_SHADER_${name}_TEMPLATE ${template} PARENT_SCOPE)
  set(MOEFLUX_SHADER_${name}_SHADER ${ARG_SHADER} PARENT_SCOPE)
  set(MOEFLUX_SHADER_${name}_DEFINES ${ARG_DEFINES} PARENT_SCOPE)
  set(MOEFLUX_SHADER_${name}_FEATURES ${ARG_FEATURES} PARENT_SCOPE)
endfunction()

# --- the table
foreach(w f32 f16 bf16)
  string(TOUPPER "W_${w}" wdef)
  set(wfeat)
  if(NOT w STREQUAL "f32")
    set(wfeat storage16)
  endif()
  moeflux_shader(embedding ${w}_f32 DEFINES ${wdef} FEATURES ${wfeat})
  moeflux_shader(attention_decode ${w}_f32 SHADER attention_decode_step DEFINES ${wdef} STEP FEATURES ${wfeat})
  foreach(template rms_norm attention_inputs matmul_vec)
    moeflux_shader(${template} ${w}_f32 DEFINES ${wdef} FEATURES ${wfeat})
    moeflux_shader(${template} ${w}_f32_sg DEFINES ${wdef} USE_SUBGROUP FEATURES ${wfeat} subgroup)
  endforeach()
  moeflux_shader(matmul_tiled ${w}_f32 DEFINES ${wdef} FEATURES ${wfeat})
  moeflux_shader(moe_grouped ${w}_f32_gate_up DEFINES ${wdef} GATE_UP FEATURES ${wfeat})
  moeflux_shader(moe_grouped ${w}_f32_down DEFINES ${wdef} FEATURES ${wfeat})
  foreach(template moe_gate_up moe_down)
    moeflux_shader(${template} ${w}_f32 DEFINES ${wdef} FEATURES ${wfeat})
    moeflux_shader(${template} ${w}_f32_sg DEFINES ${wdef} USE_SUBGROUP FEATURES ${wfeat} subgroup)
  endforeach()
endforeach()
# The decode matvecs with their input normalised in the product: per weight and norm-weight dtype.
foreach(g f32 f16 bf16)
  string(TOUPPER "G_${g}" gdef)
  set(gfeat)
  if(NOT g STREQUAL "f32")
    set(gfeat storage16)
  endif()
  foreach(w f32 f16 bf16)
    string(TOUPPER "W_${w}" wdef)
    set(wfeat ${gfeat})
    if(NOT w STREQUAL "f32")
      set(wfeat storage16)
    endif()
    moeflux_shader(matmul_vec ${w}_f32_${g}_sg SHADER matmul_vec_norm DEFINES ${wdef} ${gdef} IN_NORM USE_SUBGROUP
                   FEATURES ${wfeat} subgroup)
    moeflux_shader(matmul_vec ${w}_f32_${g}_sg SHADER matmul_vec_norm_route DEFINES ${wdef} ${gdef} IN_NORM ROUTE
                   USE_SUBGROUP FEATURES ${wfeat} subgroup)
  endforeach()
  foreach(bits 8 4 3 2)
    moeflux_shader(matmul_vec_q q${bits}_f32_${g}_sg SHADER matmul_vec_q_norm DEFINES Q_BITS=${bits} ${gdef} IN_NORM
                   USE_SUBGROUP FEATURES ${gfeat} subgroup)
  endforeach()
endforeach()
foreach(template rope write_rows swiglu add sigmoid_mul)
  moeflux_shader(${template} f32)
endforeach()
foreach(template moe_accumulate fill attention_combine attention_prefill)
  moeflux_shader(${template} f32)
endforeach()
moeflux_shader(attention_split f32)
moeflux_shader(attention_decode f32)
moeflux_shader(moe_route f32)
moeflux_shader(moe_route f32_sg DEFINES USE_SUBGROUP FEATURES subgroup)
moeflux_shader(rms_scale f32)
moeflux_shader(rms_scale f32_sg DEFINES USE_SUBGROUP FEATURES subgroup)
moeflux_shader(moe_combine f32)
foreach(bits 8 4 3 2)
  foreach(template dequantize embedding_q matmul_tiled_q matmul_vec_q)
    moeflux_shader(${template} q${bits}_f32 DEFINES Q_BITS=${bits})
  endforeach()
  moeflux_shader(matmul_vec_q q${bits}_f32_sg DEFINES Q_BITS=${bits} USE_SUBGROUP FEATURES subgroup)
  moeflux_shader(matmul_vec_q_quads q${bits}_f32_sg DEFINES Q_BITS=${bits} USE_SUBGROUP FEATURES subgroup)
  moeflux_shader(moe_grouped q${bits}_f32_gate_up DEFINES Q_BITS=${bits} GATE_UP)
  moeflux_shader(moe_grouped q${bits}_f32_down DEFINES Q_BITS=${bits})
  foreach(template moe_gate_up moe_down)
    moeflux_shader(${template} q${bits}_f32 DEFINES Q_BITS=${bits})
    moeflux_shader(${template} q${bits}_f32_sg DEFINES Q_BITS=${bits} USE_SUBGROUP FEATURES subgroup)
  endforeach()
endforeach()
# Gated DeltaNet and the hybrid's column splits (Qwen3-Next / Qwen3.5)
foreach(w f32 f16 bf16)
  string(TOUPPER "W_${w}" wdef)
  set(wfeat)
  if(NOT w STREQUAL "f32")
    set(wfeat storage16)
  endif()
  moeflux_shader(causal_conv1d ${w}_f32 DEFINES ${wdef} FEATURES ${wfeat})
  moeflux_shader(delta_rule_gates ${w}_f32 DEFINES ${wdef} FEATURES ${wfeat})
  moeflux_shader(gated_rms_norm ${w}_f32 DEFINES ${wdef} FEATURES ${wfeat})
  moeflux_shader(gated_rms_norm ${w}_f32_sg DEFINES ${wdef} USE_SUBGROUP FEATURES ${wfeat} subgroup)
endforeach()
moeflux_shader(copy_column_blocks f32)
moeflux_shader(gated_delta_rule f32)
moeflux_shader(gated_delta_rule f32_sg DEFINES USE_SUBGROUP FEATURES subgroup)
moeflux_shader(gated_delta_chunk_prep f32)
moeflux_shader(gated_delta_chunk f32)

# --- compile and embed into `target`
function(moeflux_embed_shaders target)
  set(src_dir ${PROJECT_SOURCE_DIR}/shaders)
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/spirv)
  file(MAKE_DIRECTORY ${out_dir})
  set(outputs)
  set(arrays "")
  set(rows "")
  foreach(name IN LISTS MOEFLUX_SHADER_NAMES)
    set(src ${src_dir}/${MOEFLUX_SHADER_${name}_TEMPLATE}.comp)
    set(out ${out_dir}/${name}.inc)
    set(defines)
    foreach(d IN LISTS MOEFLUX_SHADER_${name}_DEFINES)
      list(APPEND defines -D${d})
    endforeach()
    add_custom_command(
      OUTPUT ${out}
      COMMAND ${MOEFLUX_GLSLC} -fshader-stage=compute --target-env=vulkan1.2 -O -Werror
              -I ${src_dir} ${defines} -MD -MF ${out}.d -mfmt=c -o ${out} ${src}
      DEPENDS ${src}
      DEPFILE ${out}.d
      COMMENT "glslc ${name}"
      VERBATIM)
    list(APPEND outputs ${out})
    set(features)
    foreach(f IN LISTS MOEFLUX_SHADER_${name}_FEATURES)
      list(APPEND features "features::${f}")
    endforeach()
    if(NOT features)
      set(features "features::none")
    endif()
    list(JOIN features " | " features)
    string(APPEND arrays "const std::uint32_t k_${name}[] =\n#include \"${name}.inc\"\n;\n")
    string(APPEND rows "    {\"${name}\", \"${MOEFLUX_SHADER_${name}_SHADER}\", k_${name}, ${features}},\n")
  endforeach()
  file(GENERATE OUTPUT ${out_dir}/spirv_table.cpp CONTENT
"// Generated by cmake/shaders.cmake: the SPIR-V of every shader variant. Do not edit.
#include <cstdint>

#include \"moeflux/backend/vulkan/spirv.h\"

namespace moeflux::backend::vk {
namespace {

${arrays}
}  // namespace

std::span<const SpirvVariant> spirv_variants() {
  static const SpirvVariant table[] = {
${rows}  };
  return table;
}

}  // namespace moeflux::backend::vk
")
  target_sources(${target} PRIVATE ${out_dir}/spirv_table.cpp ${outputs})
  target_include_directories(${target} PRIVATE ${out_dir} ${src_dir})
endfunction()
