#include "moeflux/engine/convert_model.h"

#include "moeflux/arch/registry.h"
#include "moeflux/format/packed_model.h"

namespace moeflux::engine {

format::ConvertReport convert_model(const std::string& src_dir, const std::string& dst_dir,
                                    const format::ConvertOptions& options) {
  const nlohmann::json config = format::read_config(src_dir);
  const arch::Architecture& architecture = arch::find_architecture(config);
  return format::convert_checkpoint(src_dir, dst_dir, architecture.model_type, architecture.layout(config),
                                    options);
}

}  // namespace moeflux::engine
