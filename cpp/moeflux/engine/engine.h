// The engine: an opened packed model with its backend, expert store and forward pass. Sessions
// (engine/session.h) hold the per-conversation state on top of it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "moeflux/arch/model.h"
#include "moeflux/backend/backend.h"
#include "moeflux/engine/budget_plan.h"
#include "moeflux/experts/expert_store.h"
#include "moeflux/format/packed_model.h"

namespace moeflux::engine {

struct EngineOptions {
  std::string backend = "cpu";
  int threads = 0;                       // 0: all cores
  std::optional<int> experts_per_token;  // override the model's top-k (experiments)
  std::uint64_t cache_bytes = 0;         // host expert cache; 0: planned from free host memory
  std::uint64_t device_cache_bytes = 0;  // device tier (vulkan); 0: planned from free device memory
  experts::IoMode io = experts::IoMode::direct;
  std::function<int(int layer, int expert)> read_fault;  // test hook (experts::StoreOptions)
  std::string device;  // vulkan: "" (the first discrete GPU, else the first usable), an index, or part of a name
  // When the device tier has a slot for every expert, read them all at open, so decoding never
  // waits for the host (each MoE layer routes on the device).
  bool preload_experts = true;
};

class Engine {
 public:
  // Opens the packed model at `path`: checks every file against the architecture's layout,
  // loads the dense weights onto the backend. Throws a moeflux::Error subclass naming the problem.
  Engine(const std::string& path, const EngineOptions& options);

  const arch::ModelInfo& info() const { return model_->info(); }
  arch::Model& model() { return *model_; }
  const format::PackedModel& packed() const { return *packed_; }
  experts::ExpertStore& store() { return *store_; }
  backend::Backend& backend() { return *backend_; }
  const BudgetPlan& plan() const { return plan_; }  // the budgets chosen and what they came from
  const std::string& backend_name() const { return backend_name_; }
  std::uint64_t dense_bytes() const;  // bytes of resident (dense) weights

 private:
  void preload_experts(const backend::ExpertCacheLayout& layout);  // the device tier, when it holds all
  std::shared_ptr<const format::PackedModel> packed_;
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<experts::ExpertStore> store_;
  std::unique_ptr<arch::Model> model_;
  std::string backend_name_;
  BudgetPlan plan_;
};

}  // namespace moeflux::engine
