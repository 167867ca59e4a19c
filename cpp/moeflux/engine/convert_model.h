// Converting a Hugging Face checkpoint: picks the architecture from config.json, derives the layout
// it expects, and hands both to the format layer's converter.
#pragma once

#include <string>

#include "moeflux/format/convert.h"

namespace moeflux::engine {

format::ConvertReport convert_model(const std::string& src_dir, const std::string& dst_dir,
                                    const format::ConvertOptions& options);

}  // namespace moeflux::engine
