"""The exceptions moeflux raises. Every one is a ``moeflux.Error``; those a caller can fix by
changing an argument are also ``ValueError``, I/O failures are also ``OSError``."""

from __future__ import annotations

__all__ = [
    "Error",
    "ConfigError",
    "ShapeError",
    "BudgetError",
    "FormatError",
    "IoError",
    "DeviceError",
    "Unsupported",
    "InternalError",
]


class Error(Exception):
    """Base class of every moeflux error."""


class ConfigError(Error, ValueError):
    """A bad model config or option."""


class ShapeError(Error, ValueError):
    """Inputs or tensors of the wrong shape (or token ids outside the vocabulary)."""


class BudgetError(Error, ValueError):
    """A memory budget that cannot work."""


class FormatError(Error):
    """A corrupt, truncated or wrong-version model file."""


class IoError(Error, OSError):
    """An I/O failure (the message names the path and the OS error)."""


class DeviceError(Error):
    """A GPU/Vulkan failure."""


class Unsupported(Error, NotImplementedError):
    """A model or feature moeflux does not support (yet)."""


class InternalError(Error):
    """A bug in moeflux."""
