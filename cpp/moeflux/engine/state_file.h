// Saving and loading a session: its tokens, routing trace, the sampler's generator and every tensor
// the architecture's State lists (arch/model.h), in one versioned file (docs/STATE.md). Loading
// checks the model's identity, the format version, a checksum and every tensor's name and shape
// before it touches the session, so a refused file leaves the session as it was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>

#include "moeflux/engine/session.h"

namespace moeflux::engine {

constexpr std::uint32_t kStateVersion = 1;

// Identifies the model a state belongs to: a checksum of config.json and the packed manifest (so
// another conversion, e.g. other bits, is another model).
std::uint64_t model_identity(const format::PackedModel& packed);

// Writes the session's state and the caller's `metadata` (opaque text, e.g. a chat's history);
// throws Unsupported for a family that cannot list its state.
void write_state(Session& session, std::ostream& out, const std::string& metadata = "");
// Replaces the session's state with the one in `bytes` and returns its metadata. Throws
// FormatError for a damaged file or another version, ConfigError for a state of another model
// (or another experts_per_token).
std::string read_state(Session& session, std::span<const std::byte> bytes);

void save_state_file(Session& session, const std::string& path, const std::string& metadata = "");  // IoError when it cannot be written
std::string load_state_file(Session& session, const std::string& path);

}  // namespace moeflux::engine
