// Reading a Hugging Face checkpoint directory: one or many *.safetensors files (with
// model.safetensors.index.json when sharded), memory-mapped, every header checked against its file.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moeflux/format/tensor_view.h"
#include "moeflux/util/mapped_file.h"

namespace moeflux::format {

class SafetensorsCheckpoint {
 public:
  // Opens every shard of the checkpoint in `dir`; throws FormatError / IoError naming the file.
  static SafetensorsCheckpoint open(const std::string& dir);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const;
  // The tensor as stored (source dtype); throws FormatError when it is absent, Unsupported when it
  // is not F32, F16 or BF16.
  TensorView get(const std::string& name) const;
  // The packed words of an MLX-quantized weight (U32): its bytes and its shape in 32-bit words, with
  // dtype set to `quantized`, the type the caller has established for it. Unsupported unless U32.
  TensorView get_packed(const std::string& name, Dtype quantized) const;
  // The dtype as the file names it ("BF16", "U32", ...).
  const std::string& source_dtype(const std::string& name) const;
  // The shard file a tensor lives in (for messages).
  const std::string& file_of(const std::string& name) const;

 private:
  struct Entry {
    std::size_t file = 0;  // index into files_
    Dtype dtype = Dtype::f32;
    Shape shape;
    std::size_t begin = 0;  // absolute byte offset in the file
    std::size_t nbytes = 0;
    std::string source_dtype;  // as in the file ("BF16", "I64"); get() refuses all but F32/F16/BF16
  };
  const Entry& entry(const std::string& name) const;  // FormatError when absent
  void add_file(const std::string& path);             // maps one shard and indexes its tensors
  std::string dir_;
  std::vector<std::shared_ptr<util::MappedFile>> files_;
  std::map<std::string, Entry> entries_;
};

}  // namespace moeflux::format
