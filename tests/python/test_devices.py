"""moeflux.devices() and picking a Vulkan device for a Model."""

from __future__ import annotations

import pytest

import moeflux

KEYS = {"index", "name", "type", "api_version", "driver", "memory_heaps", "max_storage_buffer_range",
        "features", "usable", "missing"}


def usable_devices() -> list[dict]:
    return [d for d in moeflux.devices() if d["usable"]]


def test_devices_are_described():
    for i, d in enumerate(moeflux.devices()):
        assert KEYS <= d.keys()
        assert d["index"] == i
        assert d["usable"] == (not d["missing"])
        assert all(h["size"] > 0 for h in d["memory_heaps"])
        assert isinstance(d["features"]["storage16"], bool)


def test_an_unknown_device_is_a_config_error_naming_the_devices(packed):
    devices = usable_devices()
    if not devices:
        pytest.skip("no usable Vulkan device")
    for device in ("no-such-gpu", 99):
        with pytest.raises(moeflux.ConfigError, match=str(device)) as info:
            moeflux.Model(packed("qwen3_moe_base"), backend="vulkan", device=device)
        assert devices[0]["name"] in str(info.value)
