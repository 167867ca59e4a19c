// The state file: "MFSTATE\0", u32 version, u32 zero, u64 header length, the JSON header, the
// blocks it lists (raw little-endian arrays at the offsets it gives), then a u64 checksum of
// everything before it (util/checksum.h).
#include "moeflux/engine/state_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "moeflux/util/checksum.h"
#include "moeflux/util/error.h"
#include "moeflux/util/mapped_file.h"

namespace moeflux::engine {
namespace {

using nlohmann::json;

constexpr char kMagic[8] = {'M', 'F', 'S', 'T', 'A', 'T', 'E', '\0'};
constexpr std::size_t kPreamble = 8 + 4 + 4 + 8;

std::string hex(std::uint64_t v) {
  std::ostringstream out;
  out << std::hex << v;
  return out.str();
}

// One array of the payload, as the header describes it.
struct Block {
  std::string name;
  std::string dtype;  // "f32" or "i32"
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;
};

std::int64_t count(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (const std::int64_t d : shape) n *= d;
  return n;
}

template <typename T>
std::span<const std::byte> bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

// Writes to `out` while checksumming.
class Writer {
 public:
  explicit Writer(std::ostream& out) : out_(out) {}
  void put(std::span<const std::byte> bytes) {
    out_.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    sum_.update(bytes);
  }
  template <typename T>
  void put_value(T v) {
    put(std::as_bytes(std::span<const T>(&v, 1)));
  }
  std::uint64_t sum() const { return sum_.value(); }

 private:
  std::ostream& out_;
  util::Checksum sum_;
};

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

std::uint64_t model_identity(const format::PackedModel& packed) {
  util::Checksum sum;
  const std::string config = packed.config().dump();
  sum.update(std::as_bytes(std::span<const char>(config.data(), config.size())));
  const std::string manifest_path = (std::filesystem::path(packed.dir()) / "moeflux.json").string();
  const util::MappedFile manifest(manifest_path);
  sum.update(std::span<const std::byte>(manifest.data(), manifest.size()));
  return sum.value();
}

void write_state(Session& session, std::ostream& out, const std::string& metadata) {
  Engine& engine = session.engine();
  const arch::ModelInfo& info = engine.info();
  const std::int64_t n = session.n_past();
  const auto n_moe = static_cast<std::int64_t>(info.moe_layers.size());
  const RoutingTrace& trace = session.trace_;

  // Every block as host bytes: the session's own, then the architecture's tensors downloaded.
  std::vector<std::pair<Block, std::vector<float>>> downloads;
  for (arch::StateTensor& t : session.state_->tensors()) {
    std::vector<float> host(static_cast<std::size_t>(t.tensor.numel()));
    engine.backend().download(t.tensor, host);
    downloads.push_back({{t.name, "f32", t.tensor.shape(), {}}, std::move(host)});
  }
  std::vector<Block> blocks = {
      {"tokens", "i32", {n}, bytes_of(session.tokens_)},
      {"routing.experts", "i32", {n, n_moe, info.experts_per_token}, bytes_of(trace.experts)},
      {"routing.weights", "f32", {n, n_moe, info.experts_per_token}, bytes_of(trace.weights)},
  };
  if (session.options().record_router_logits)
    blocks.push_back({"routing.router_logits", "f32", {n, n_moe, info.n_experts}, bytes_of(trace.router_logits)});
  for (auto& [block, host] : downloads) blocks.push_back({block.name, block.dtype, block.shape, bytes_of(host)});

  json header = {{"model_type", info.model_type},
                 {"model_identity", hex(model_identity(engine.packed()))},
                 {"experts_per_token", info.experts_per_token},
                 {"n_past", n},
                 {"rng", session.rng_.save()},
                 {"metadata", metadata},
                 {"blocks", json::array()}};
  std::uint64_t offset = 0;
  for (const Block& b : blocks) {
    MF_ASSERT(static_cast<std::int64_t>(b.bytes.size()) == count(b.shape) * 4, "state block ", b.name, " has ",
              b.bytes.size(), " bytes for shape ", shape_text(b.shape));
    header["blocks"].push_back({{"name", b.name}, {"dtype", b.dtype}, {"shape", b.shape}, {"offset", offset}});
    offset += b.bytes.size();
  }
  const std::string text = header.dump();
  Writer w(out);
  w.put(std::as_bytes(std::span<const char>(kMagic, 8)));
  w.put_value<std::uint32_t>(kStateVersion);
  w.put_value<std::uint32_t>(0);
  w.put_value<std::uint64_t>(text.size());
  w.put(std::as_bytes(std::span<const char>(text.data(), text.size())));
  for (const Block& b : blocks) w.put(b.bytes);
  const std::uint64_t sum = w.sum();
  out.write(reinterpret_cast<const char*>(&sum), sizeof sum);
}

std::string read_state(Session& session, std::span<const std::byte> bytes) {
  Engine& engine = session.engine();
  const arch::ModelInfo& info = engine.info();
  auto damaged = [](const std::string& what) {
    return FormatError("[load_state] the state file is damaged (" + what + "); save it again");
  };
  MF_CHECK(bytes.size() >= kPreamble + 8 && std::memcmp(bytes.data(), kMagic, 8) == 0, FormatError,
           "[load_state] this is not a moeflux state file (no MFSTATE signature); pass a file written by save_state");
  std::uint32_t version = 0;
  std::uint64_t header_size = 0, stored_sum = 0;
  std::memcpy(&version, bytes.data() + 8, 4);
  std::memcpy(&header_size, bytes.data() + 16, 8);
  MF_CHECK(version == kStateVersion, FormatError, "[load_state] the state file has format version ", version,
           "; this moeflux reads version ", kStateVersion, "; save the state again with this version");
  std::memcpy(&stored_sum, bytes.data() + bytes.size() - 8, 8);
  if (util::checksum(bytes.first(bytes.size() - 8)) != stored_sum) throw damaged("checksum mismatch");
  if (header_size > bytes.size() - kPreamble - 8) throw damaged("header length past the end");
  json header;
  try {
    header = json::parse(std::string_view(reinterpret_cast<const char*>(bytes.data() + kPreamble), header_size));
  } catch (const json::exception& e) {
    throw damaged(std::string("unreadable header: ") + e.what());
  }
  const std::span<const std::byte> payload = bytes.subspan(kPreamble + header_size, bytes.size() - kPreamble - header_size - 8);

  std::vector<Block> blocks;
  std::int64_t n = 0;
  std::string model_type, identity, rng_state, metadata;
  int k = 0;
  try {
    model_type = header.at("model_type").get<std::string>();
    identity = header.at("model_identity").get<std::string>();
    k = header.at("experts_per_token").get<int>();
    n = header.at("n_past").get<std::int64_t>();
    rng_state = header.at("rng").get<std::string>();
    metadata = header.value("metadata", "");
    for (const json& b : header.at("blocks")) {
      Block block{b.at("name").get<std::string>(), b.at("dtype").get<std::string>(),
                  b.at("shape").get<std::vector<std::int64_t>>(), {}};
      const auto offset = b.at("offset").get<std::uint64_t>();
      const auto size = static_cast<std::uint64_t>(count(block.shape)) * 4;
      if (offset > payload.size() || size > payload.size() - offset) throw damaged("block " + block.name + " past the end");
      block.bytes = payload.subspan(offset, size);
      blocks.push_back(std::move(block));
    }
  } catch (const json::exception& e) {
    throw damaged(std::string("header: ") + e.what());
  }
  MF_CHECK(identity == hex(model_identity(engine.packed())), ConfigError, "[load_state] the state file belongs to another model (",
           model_type, ", identity ", identity, "), not to the one at ", engine.packed().dir(),
           "; load it into the model that saved it");
  MF_CHECK(k == info.experts_per_token, ConfigError, "[load_state] the state was computed with experts_per_token=", k,
           " but this model uses ", info.experts_per_token, "; open the model with the same experts_per_token");

  // A fresh state sized for n positions; its tensor list must be the file's, name for name.
  std::unique_ptr<arch::State> state = engine.model().new_state();
  engine.model().reserve_state(*state, n);
  state->n_past = n;
  std::vector<arch::StateTensor> tensors = state->tensors();
  auto find = [&](const std::string& name) -> const Block* {
    for (const Block& b : blocks)
      if (b.name == name) return &b;
    return nullptr;
  };
  const auto n_moe = static_cast<std::int64_t>(info.moe_layers.size());
  auto require = [&](const std::string& name, const std::vector<std::int64_t>& shape) -> const Block& {
    const Block* b = find(name);
    if (b == nullptr) throw damaged("no block " + name);
    if (b->shape != shape)
      throw FormatError("[load_state] block " + name + " has shape " + shape_text(b->shape) + " where this model needs " +
                        shape_text(shape) + "; the state belongs to another model");
    return *b;
  };
  const Block& tokens = require("tokens", {n});
  const Block& experts = require("routing.experts", {n, n_moe, k});
  const Block& weights = require("routing.weights", {n, n_moe, k});
  const Block* logits = find("routing.router_logits");
  if (logits) require(logits->name, {n, n_moe, info.n_experts});
  std::vector<const Block*> tensor_blocks;
  for (const arch::StateTensor& t : tensors) tensor_blocks.push_back(&require(t.name, t.tensor.shape()));
  const std::size_t expected_blocks = 3 + (logits ? 1 : 0) + tensors.size();
  MF_CHECK(blocks.size() == expected_blocks, FormatError, "[load_state] the state file has ", blocks.size(),
           " blocks where this model's state has ", expected_blocks, "; it belongs to another model");
  Rng rng;
  rng.restore(rng_state);

  // Everything checked: upload, then swap in.
  std::vector<float> host;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    host.resize(tensor_blocks[i]->bytes.size() / 4);
    std::memcpy(host.data(), tensor_blocks[i]->bytes.data(), tensor_blocks[i]->bytes.size());
    engine.backend().upload(host, tensors[i].tensor);
  }
  auto copy = [](const Block& b, auto& dst) {
    dst.resize(b.bytes.size() / 4);
    std::memcpy(dst.data(), b.bytes.data(), b.bytes.size());
  };
  RoutingTrace trace;
  trace.n_tokens = n;
  copy(experts, trace.experts);
  copy(weights, trace.weights);
  if (session.options().record_router_logits) {
    if (logits) copy(*logits, trace.router_logits);
    else trace.router_logits.assign(static_cast<std::size_t>(n * n_moe * info.n_experts), std::numeric_limits<float>::quiet_NaN());
  }
  copy(tokens, session.tokens_);
  session.state_ = std::move(state);
  session.trace_ = std::move(trace);
  session.rng_ = rng;
  return metadata;
}

void save_state_file(Session& session, const std::string& path, const std::string& metadata) {
  const std::string partial = path + ".partial";  // renamed into place once complete
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    MF_CHECK(out.good(), IoError, "[save_state] cannot write ", partial, ": ", std::strerror(errno),
             "; choose a writable path");
    write_state(session, out, metadata);
    out.flush();
    MF_CHECK(out.good(), IoError, "[save_state] writing ", partial, " failed: ", std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(partial, path, ec);
  MF_CHECK(!ec, IoError, "[save_state] cannot rename ", partial, " to ", path, ": ", ec.message());
}

std::string load_state_file(Session& session, const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  MF_CHECK(!ec, IoError, "[load_state] cannot read ", path, ": ", ec.message(), "; check the path");
  MF_CHECK(size > 0, FormatError, "[load_state] ", path, " is empty; it is not a moeflux state file");
  const util::MappedFile file(path);
  return read_state(session, std::span<const std::byte>(file.data(), file.size()));
}

}  // namespace moeflux::engine
