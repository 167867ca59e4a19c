// The converter: a Hugging Face checkpoint directory -> a packed model directory (docs/FORMAT.md).
// Accepts per-expert keys, fused and stacked expert tensors (MLX's switch_mlp too), the "model." and
// "model.language_model." prefixes, and MLX-quantized triples; quantizes on request.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "moeflux/format/dtype.h"
#include "moeflux/format/model_layout.h"

namespace moeflux::format {

struct ConvertProgress {
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::string current;  // the tensor or expert layer being written
};

struct ConvertOptions {
  std::optional<Dtype> dtype;  // store every float tensor as this; unset keeps each source dtype
  // Affine quantization (format/quant.h): of every expert block, and of the quantizable dense
  // tensors. Unset keeps them as they are (a quantized MLX source stays quantized, bit for bit).
  std::optional<int> expert_bits;
  std::optional<int> dense_bits;
  int group_size = 64;
  Dtype scale_dtype = Dtype::bf16;
  bool overwrite = false;      // replace an existing packed model at the destination
  std::function<void(const ConvertProgress&)> progress;  // called from the converting thread
};

struct ConvertReport {
  std::uint64_t bytes_written = 0;
  std::vector<std::string> ignored;  // source tensors no part of the layout uses (mtp.*, visual, ...)
};

// Source names are normalised before matching the layout: "model.language_model." -> "model.".
// Experts are read per expert ("<hf_prefix>.<e>.<block>.weight"), fused ("<hf_prefix>.gate_up_proj"
// [E, 2I, H] with gate rows first, "<hf_prefix>.down_proj" [E, H, I]) or stacked by MLX
// ("<layer>.mlp.switch_mlp.<block>.weight" [E, ...]). Writes dense.bin, experts/layer_NNN.bin, copies
// config.json and the tokenizer files, and writes moeflux.json last, so an interrupted conversion
// never looks complete. Throws ConfigError for unusable options (naming the option or the tensor),
// FormatError naming the file and tensor for a missing tensor or one of the wrong shape or dtype.
ConvertReport convert_checkpoint(const std::string& src_dir, const std::string& dst_dir,
                                 const std::string& model_type, const ModelLayout& layout,
                                 const ConvertOptions& options);

// Maps a source tensor name to its canonical form ("model.language_model.x" -> "model.x").
std::string canonical_tensor_name(const std::string& name);

}  // namespace moeflux::format
