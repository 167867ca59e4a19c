// The pieces of the moeflux._core module, one file each; module.cpp calls them in order.
#pragma once

#include <pybind11/pybind11.h>

namespace moeflux::bindings {

void init_errors(pybind11::module_& m);
void init_model(pybind11::module_& m);
void init_convert(pybind11::module_& m);
void init_devices(pybind11::module_& m);
void init_testing(pybind11::module_& m);  // private: moeflux._core._testing

}  // namespace moeflux::bindings
