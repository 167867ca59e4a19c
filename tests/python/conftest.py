"""Shared fixtures: tiny checkpoints built once per test session and converted with moeflux."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

import tiny_models

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """checkpoint(name) -> a Hugging Face checkpoint directory of the tiny model `name`."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = tiny_models.build_checkpoint(name, tmp_path_factory.mktemp(f"hf-{name}"))
        return made[name]

    return get


@pytest.fixture(scope="session")
def packed(checkpoint: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """packed(name) -> the tiny model `name` converted to moeflux's packed format."""
    import moeflux

    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            dst = tmp_path_factory.mktemp(f"packed-{name}")
            moeflux.convert(checkpoint(name), dst, overwrite=True, progress=False)
            made[name] = dst
        return made[name]

    return get
