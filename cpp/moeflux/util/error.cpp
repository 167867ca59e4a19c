#include "moeflux/util/error.h"

namespace moeflux {

std::string_view error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::config: return "ConfigError";
    case ErrorKind::shape: return "ShapeError";
    case ErrorKind::budget: return "BudgetError";
    case ErrorKind::format: return "FormatError";
    case ErrorKind::io: return "IoError";
    case ErrorKind::device: return "DeviceError";
    case ErrorKind::unsupported: return "Unsupported";
    case ErrorKind::internal: return "InternalError";
  }
  return "Error";
}

void throw_error(ErrorKind kind, const std::string& message) {
  switch (kind) {
    case ErrorKind::config: throw ConfigError(message);
    case ErrorKind::shape: throw ShapeError(message);
    case ErrorKind::budget: throw BudgetError(message);
    case ErrorKind::format: throw FormatError(message);
    case ErrorKind::io: throw IoError(message);
    case ErrorKind::device: throw DeviceError(message);
    case ErrorKind::unsupported: throw Unsupported(message);
    case ErrorKind::internal: throw InternalError(message);
  }
  throw InternalError(message);
}

void Error::rethrow_with(const std::string& context) const {
  throw_error(kind_, std::string(what()) + "\n  while " + context);
}

}  // namespace moeflux
