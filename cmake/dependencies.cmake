# Third-party packages, all from the system (Debian: nlohmann-json3-dev, libopenblas-dev, libgtest-dev).
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)

set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(MOEFLUX_CBLAS_INCLUDE_DIR cblas.h
  PATH_SUFFIXES openblas-pthread openblas x86_64-linux-gnu/openblas-pthread
  REQUIRED)
add_library(moeflux_blas INTERFACE)
target_link_libraries(moeflux_blas INTERFACE ${BLAS_LIBRARIES})
target_include_directories(moeflux_blas SYSTEM INTERFACE ${MOEFLUX_CBLAS_INCLUDE_DIR})

# liburing (Debian: liburing-dev) for the expert store's O_DIRECT reads.
find_path(MOEFLUX_URING_INCLUDE_DIR liburing.h REQUIRED)
find_library(MOEFLUX_URING_LIBRARY uring REQUIRED)
add_library(moeflux_uring INTERFACE)
target_include_directories(moeflux_uring SYSTEM INTERFACE ${MOEFLUX_URING_INCLUDE_DIR})
target_link_libraries(moeflux_uring INTERFACE ${MOEFLUX_URING_LIBRARY})
