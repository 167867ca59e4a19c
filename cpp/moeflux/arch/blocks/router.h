// Routing helpers of the MoE blocks: the softmax top-k options (computed by the backend,
// backend/routing.h) and the distinct experts of a routing.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moeflux/backend/backend.h"

namespace moeflux::arch {

using SoftmaxTopkOptions = backend::RouteOptions;

// The distinct experts of a routing, ascending.
std::vector<std::int32_t> unique_experts(std::span<const std::int32_t> experts);

}  // namespace moeflux::arch
