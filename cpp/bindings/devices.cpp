// moeflux._core.devices: the Vulkan devices present, as plain dicts (index, name, type, memory
// heaps, API version, features, and what moeflux needs that a device lacks).
#include <pybind11/stl.h>

#include <vector>

#include "bindings.h"
#include "moeflux/backend/devices.h"

namespace py = pybind11;
using namespace py::literals;

namespace moeflux::bindings {

void init_devices(py::module_& m) {
  m.def(
      "devices",
      [] {
        std::vector<backend::DeviceInfo> devices;
        {
          py::gil_scoped_release release;
          devices = backend::list_devices();
        }
        py::list out;
        for (const backend::DeviceInfo& d : devices) {
          py::list heaps;
          for (const backend::MemoryHeap& h : d.heaps) heaps.append(py::dict("size"_a = h.size, "device_local"_a = h.device_local));
          const backend::DeviceFeatures& f = d.features;
          py::dict features("storage16"_a = f.storage16, "storage8"_a = f.storage8, "float16"_a = f.float16,
                            "subgroup_arithmetic"_a = f.subgroup_arithmetic, "subgroup_size"_a = f.subgroup_size,
                            "timeline_semaphore"_a = f.timeline_semaphore, "buffer_device_address"_a = f.buffer_device_address,
                            "cooperative_matrix_nv"_a = f.cooperative_matrix_nv);
          out.append(py::dict("index"_a = d.index, "name"_a = d.name, "type"_a = d.type, "api_version"_a = d.api_version,
                              "driver"_a = d.driver, "memory_heaps"_a = heaps,
                              "max_storage_buffer_range"_a = d.max_storage_buffer_range, "features"_a = features,
                              "usable"_a = d.missing.empty(), "missing"_a = d.missing));
        }
        return out;
      },
      "The Vulkan devices: a list of dicts (index, name, type, api_version, driver, memory_heaps, "
      "max_storage_buffer_range, features, usable, missing); empty without a Vulkan driver.");
}

}  // namespace moeflux::bindings
