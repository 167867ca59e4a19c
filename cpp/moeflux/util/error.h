// The error types of moeflux, chosen by what the user can do about a problem (STYLE.md §4),
// and the two checks: MF_CHECK for anything input can break, MF_ASSERT for our own invariants.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace moeflux {

enum class ErrorKind { config, shape, budget, format, io, device, unsupported, internal };

// Python class name of each kind (moeflux.ConfigError, ...).
std::string_view error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  // Rethrow with "while <context>" appended; used at layer boundaries.
  [[noreturn]] void rethrow_with(const std::string& context) const;

 private:
  ErrorKind kind_;
};

#define MOEFLUX_ERROR_TYPE(Name, kind_value)                                  \
  class Name : public Error {                                                 \
   public:                                                                    \
    explicit Name(const std::string& message) : Error(kind_value, message) {} \
  };

MOEFLUX_ERROR_TYPE(ConfigError, ErrorKind::config)
MOEFLUX_ERROR_TYPE(ShapeError, ErrorKind::shape)
MOEFLUX_ERROR_TYPE(BudgetError, ErrorKind::budget)
MOEFLUX_ERROR_TYPE(FormatError, ErrorKind::format)
MOEFLUX_ERROR_TYPE(IoError, ErrorKind::io)
MOEFLUX_ERROR_TYPE(DeviceError, ErrorKind::device)
MOEFLUX_ERROR_TYPE(Unsupported, ErrorKind::unsupported)
MOEFLUX_ERROR_TYPE(InternalError, ErrorKind::internal)
#undef MOEFLUX_ERROR_TYPE

// Throws an Error of the given kind (used where the kind is only known at run time).
[[noreturn]] void throw_error(ErrorKind kind, const std::string& message);

namespace util {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}
}  // namespace util

}  // namespace moeflux

// MF_CHECK(cond, Type, parts...): a user-reachable failure; the message names the operation and the fix.
#define MF_CHECK(cond, Type, ...)                                   \
  do {                                                              \
    if (!(cond)) throw ::moeflux::Type(::moeflux::util::concat(__VA_ARGS__)); \
  } while (0)

// MF_ASSERT(cond, parts...): an internal invariant; failing it is a bug in moeflux.
#define MF_ASSERT(cond, ...)                                                               \
  do {                                                                                     \
    if (!(cond))                                                                           \
      throw ::moeflux::InternalError(::moeflux::util::concat(                              \
          "internal error at ", __FILE__, ":", __LINE__, ": ", #cond, ": " __VA_OPT__(, )  \
          __VA_ARGS__, " (this is a bug in moeflux; please report it)"));                  \
  } while (0)
