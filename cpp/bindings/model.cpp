// moeflux._core.Model: an engine plus one session. Every call into the engine releases the GIL;
// arrays handed back own their memory.
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#include <pybind11/stl.h>

#include "arrays.h"
#include "bindings.h"
#include "moeflux/engine/session.h"
#include "moeflux/engine/state_file.h"
#include "moeflux/util/error.h"

namespace py = pybind11;

namespace moeflux::bindings {
namespace {

using engine::Engine;
using engine::Session;

// Read errors injected by tests: the next `count` reads (of `layer`/`expert`, -1 = any) fail with `err`.
struct ReadFaults {
  std::mutex mutex;
  int err = 0, count = 0, layer = -1, expert = -1;
  int next(int l, int e) {
    std::lock_guard lock(mutex);
    if (count <= 0 || (layer >= 0 && layer != l) || (expert >= 0 && expert != e)) return 0;
    --count;
    return err;
  }
};

experts::IoMode parse_io(const std::string& io) {
  if (io == "direct") return experts::IoMode::direct;
  if (io == "buffered") return experts::IoMode::buffered;
  throw ConfigError("[open_model] io must be 'direct' or 'buffered', not '" + io + "'");
}

class PyModel {
 public:
  PyModel(const std::string& path, const std::string& backend, int threads, bool record_router_logits,
          std::optional<int> experts_per_token, std::optional<std::uint64_t> cache_bytes, const std::string& io,
          const std::string& device, std::optional<std::uint64_t> device_cache_bytes)
      : faults_(std::make_shared<ReadFaults>()) {
    engine::EngineOptions options{backend, threads, experts_per_token, cache_bytes.value_or(0), 0, parse_io(io), {}, device};
    options.device_cache_bytes = device_cache_bytes.value_or(0);
    options.read_fault = [faults = faults_](int layer, int expert) { return faults->next(layer, expert); };
    py::gil_scoped_release release;
    auto e = std::make_shared<Engine>(path, options);
    session_ = std::make_unique<Session>(std::move(e), engine::SessionOptions{record_router_logits});
  }

  void inject_read_errors(int err, int count, int layer, int expert) {
    std::lock_guard lock(faults_->mutex);
    faults_->err = err;
    faults_->count = count;
    faults_->layer = layer;
    faults_->expert = expert;
  }

  py::array_t<float> forward(const py::handle& tokens, const std::string& logits) {
    const auto ids = token_ids(tokens);
    arch::LogitsMode mode = arch::LogitsMode::all;
    if (logits == "last") mode = arch::LogitsMode::last;
    else if (logits != "all") throw py::value_error("logits must be 'all' or 'last', not '" + logits + "'");
    std::vector<float> out;
    {
      py::gil_scoped_release release;
      out = session_->forward(ids, mode);
    }
    const auto vocab = static_cast<py::ssize_t>(info().vocab_size);
    const auto rows = static_cast<py::ssize_t>(out.size()) / vocab;
    return to_numpy(std::move(out), {rows, vocab});
  }

  void reset() {
    py::gil_scoped_release release;
    session_->reset();
  }

  const arch::ModelInfo& info() const { return session_->engine().info(); }
  Session& session() { return *session_; }

  py::array_t<std::int32_t> experts() const { return routing_array(session_->routing().experts, k()); }
  py::array_t<float> weights() const { return routing_array(session_->routing().weights, k()); }
  py::object router_logits() const {
    if (!session_->options().record_router_logits) return py::none();
    return routing_array(session_->routing().router_logits, info().n_experts);
  }

 private:
  py::ssize_t k() const { return info().experts_per_token; }
  template <typename T>
  py::array_t<T> routing_array(const std::vector<T>& data, py::ssize_t last) const {
    const auto n_moe = static_cast<py::ssize_t>(info().moe_layers.size());
    const auto tokens = static_cast<py::ssize_t>(session_->routing().n_tokens);
    return to_numpy(std::vector<T>(data), {tokens, n_moe, last});
  }
  std::shared_ptr<ReadFaults> faults_;
  std::unique_ptr<Session> session_;
};

py::dict stats_dict(PyModel& model) {
  const experts::StoreStats s = model.session().engine().store().stats();
  const std::uint64_t lookups = s.hits + s.misses;
  py::dict d;
  d["expert_hits"] = s.hits;
  d["expert_misses"] = s.misses;
  d["expert_hit_rate"] = lookups ? static_cast<double>(s.hits) / static_cast<double>(lookups) : 0.0;
  d["expert_bytes_read"] = s.bytes_read;
  d["expert_evictions"] = s.evictions;
  d["read_wait_seconds"] = s.read_wait_seconds;
  d["read_throughput"] = s.read_wait_seconds > 0 ? static_cast<double>(s.bytes_read) / s.read_wait_seconds : 0.0;
  d["cache_slots"] = s.slots;
  d["cache_slot_bytes"] = s.slot_bytes;
  d["cache_bytes"] = s.cache_bytes;
  d["io"] = s.io;
  d["dense_bytes"] = model.session().engine().dense_bytes();
  engine::Engine& engine = model.session().engine();
  for (const auto& [key, value] : engine.backend().stats()) d[py::str(key)] = value;  // "device_*"
  const engine::BudgetPlan& plan = engine.plan();
  for (const auto& [key, value] : plan.numbers()) d[py::str(key)] = value;
  d["plan_host_source"] = plan.host_source;
  d["plan_device_source"] = plan.device_source;
  return d;
}

class PyGeneration {
 public:
  PyGeneration(PyModel& model, std::vector<std::int32_t> prompt, const engine::GenerateOptions& options)
      : generation_(model.session(), std::move(prompt), options) {}
  std::int32_t next() {
    std::optional<std::int32_t> token;
    {
      py::gil_scoped_release release;
      token = generation_.next();
    }
    if (!token) throw py::stop_iteration();
    return *token;
  }
  std::string finish_reason() const {
    switch (generation_.finish_reason()) {
      case engine::FinishReason::stop_token: return "stop";
      case engine::FinishReason::length: return "length";
      case engine::FinishReason::none: break;
    }
    return "";
  }

 private:
  engine::Generation generation_;
};

py::bytes save_state_bytes(PyModel& model, const std::string& metadata) {
  std::ostringstream out;
  {
    py::gil_scoped_release release;
    engine::write_state(model.session(), out, metadata);
  }
  return py::bytes(out.str());
}

std::string load_state_bytes(PyModel& model, const py::bytes& data) {
  const std::string_view view = data;  // the bytes object stays alive for the call
  py::gil_scoped_release release;
  return engine::read_state(model.session(), std::as_bytes(std::span<const char>(view.data(), view.size())));
}

py::dict info_dict(const PyModel& model) {
  const arch::ModelInfo& i = model.info();
  py::dict d;
  d["model_type"] = i.model_type;
  d["n_layers"] = i.n_layers;
  d["hidden_size"] = i.hidden_size;
  d["vocab_size"] = i.vocab_size;
  d["n_experts"] = i.n_experts;
  d["experts_per_token"] = i.experts_per_token;
  d["moe_layers"] = i.moe_layers;
  d["max_position"] = i.max_position;
  return d;
}

}  // namespace

void init_model(py::module_& m) {
  py::class_<PyModel>(m, "Model")
      .def(py::init<const std::string&, const std::string&, int, bool, std::optional<int>, std::optional<std::uint64_t>,
                    const std::string&, const std::string&, std::optional<std::uint64_t>>(),
           py::arg("path"), py::kw_only(), py::arg("backend") = "cpu", py::arg("threads") = 0,
           py::arg("record_router_logits") = false, py::arg("experts_per_token") = py::none(),
           py::arg("cache_bytes") = py::none(), py::arg("io") = "direct", py::arg("device") = "",
           py::arg("device_cache_bytes") = py::none())
      .def("forward", &PyModel::forward, py::arg("tokens"), py::kw_only(), py::arg("logits") = "all",
           "Runs token ids after the session's tokens; float32 logits [n, vocab] (n = len(tokens), or 1 for 'last').")
      .def("reset", &PyModel::reset, "Forgets every token and the routing trace.")
      .def_property_readonly("info", &info_dict)
      .def_property_readonly("n_past", [](PyModel& self) { return self.session().n_past(); })
      .def_property_readonly("tokens", [](PyModel& self) {
        auto t = self.session().tokens();
        const auto n = static_cast<py::ssize_t>(t.size());
        return to_numpy(std::move(t), {n});
      })
      .def_property_readonly("experts", &PyModel::experts, "int32 [tokens, moe_layers, k] expert ids")
      .def_property_readonly("weights", &PyModel::weights, "float32 [tokens, moe_layers, k] routing weights")
      .def_property_readonly("router_logits", &PyModel::router_logits,
                             "float32 [tokens, moe_layers, n_experts] raw router logits, or None")
      .def("stats", &stats_dict, "Expert store counters (host tier; device tier: device_*) since the last reset_stats(), and the budget plan (plan_*).")
      .def("_inject_read_errors", &PyModel::inject_read_errors, py::arg("errno"), py::kw_only(), py::arg("count") = 1,
           py::arg("layer") = -1, py::arg("expert") = -1, "Test hook: fail the next `count` expert reads with errno.")
      .def("reset_stats", [](PyModel& self) {
        self.session().engine().store().reset_stats();
        self.session().engine().backend().reset_stats();
      })
      .def("truncate", [](PyModel& self, std::int64_t n) { py::gil_scoped_release release; self.session().truncate(n); },
           py::arg("n_tokens"), "Forgets every position from n_tokens on.")
      .def("save_state", &save_state_bytes, py::kw_only(), py::arg("metadata") = "",
           "The session's whole state as bytes (a state file's contents), with opaque metadata text.")
      .def("load_state", &load_state_bytes, py::arg("data"),
           "Replaces the session's state with save_state()'s bytes; returns their metadata.")
      .def("save_state_file", [](PyModel& self, const std::string& path, const std::string& metadata) {
             py::gil_scoped_release release;
             engine::save_state_file(self.session(), path, metadata);
           }, py::arg("path"), py::kw_only(), py::arg("metadata") = "")
      .def("load_state_file", [](PyModel& self, const std::string& path) {
             py::gil_scoped_release release;
             return engine::load_state_file(self.session(), path);
           }, py::arg("path"))
      .def("generate",
           [](PyModel& self, const py::handle& prompt, int max_new_tokens, bool do_sample, float temperature, int top_k,
              float top_p, float min_p, float repetition_penalty, float presence_penalty, float frequency_penalty,
              std::optional<std::uint64_t> seed, std::vector<std::int32_t> stop_tokens) {
             engine::GenerateOptions options;
             options.max_new_tokens = max_new_tokens;
             options.sampler = {do_sample, temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty,
                                frequency_penalty};
             options.seed = seed;
             options.stop_tokens = std::move(stop_tokens);
             return std::make_unique<PyGeneration>(self, token_ids(prompt), options);
           },
           py::arg("prompt"), py::kw_only(), py::arg("max_new_tokens") = 32, py::arg("do_sample") = false,
           py::arg("temperature") = 1.0f, py::arg("top_k") = 0, py::arg("top_p") = 1.0f, py::arg("min_p") = 0.0f,
           py::arg("repetition_penalty") = 1.0f, py::arg("presence_penalty") = 0.0f,
           py::arg("frequency_penalty") = 0.0f, py::arg("seed") = py::none(),
           py::arg("stop_tokens") = std::vector<std::int32_t>{}, py::keep_alive<0, 1>(),
           "A token iterator: prefills `prompt`, then yields up to max_new_tokens ids (greedy unless do_sample).");

  py::class_<PyGeneration>(m, "Generation")
      .def("__iter__", [](PyGeneration& self) -> PyGeneration& { return self; })
      .def("__next__", &PyGeneration::next)
      .def_property_readonly("finish_reason", &PyGeneration::finish_reason,
                             "'stop' (a stop token), 'length' (max_new_tokens), or '' while running");
}

}  // namespace moeflux::bindings
