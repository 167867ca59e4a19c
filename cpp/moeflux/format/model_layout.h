// What an architecture expects a checkpoint to hold: the resident (dense) tensors and the streamed
// experts, with their shapes. The arch layer fills it from config.json; the converter and the packed
// model reader check files against it, so a wrong checkpoint fails before any computation.
#pragma once

#include <string>
#include <vector>

#include "moeflux/format/tensor_view.h"

namespace moeflux::format {

struct DenseTensorSpec {
  std::string name;  // HF name with the "model." prefix, e.g. "model.layers.0.self_attn.q_proj.weight"
  Shape shape;
  bool required = true;  // e.g. lm_head.weight is optional when embeddings are tied
  // May be stored quantized (ConvertOptions::dense_bits): 2-D projections and embeddings, never
  // norms or routers, whose precision decides which experts run.
  bool quantizable = false;
};

// One block of an expert record, in record order: gate_proj [I, H], up_proj [I, H], down_proj [H, I].
struct ExpertBlockSpec {
  std::string name;  // "gate_proj", "up_proj", "down_proj"
  Shape shape;
};

struct ExpertLayerSpec {
  int layer = 0;           // index of the decoder layer
  int n_experts = 0;
  std::string hf_prefix;   // "model.layers.{layer}.mlp.experts" (without a trailing dot)
  std::vector<ExpertBlockSpec> blocks;
};

struct ModelLayout {
  std::vector<DenseTensorSpec> dense;
  std::vector<ExpertLayerSpec> expert_layers;  // in layer order
};

}  // namespace moeflux::format
