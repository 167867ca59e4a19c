# moeflux_warnings: the warning set every target of ours compiles with.
add_library(moeflux_warnings INTERFACE)
target_compile_options(moeflux_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
  -Wunused -Woverloaded-virtual -Wdouble-promotion -Wformat=2
  -Wimplicit-fallthrough)
if(MOEFLUX_WERROR)
  target_compile_options(moeflux_warnings INTERFACE -Werror)
endif()
