"""Checksums of a packed model: ``checksums.json`` beside the manifest lists every file the model
uses (the manifest, data files, config and tokenizer files) with its size and SHA-256.
``moeflux.convert`` writes it; ``moeflux verify`` checks it. Models converted before it existed
open as before; verifying them says how to add one."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .errors import FormatError
from .tokenizer import read_json

CHECKSUMS = "checksums.json"
_CHUNK = 8 << 20


def _model_files(root: Path) -> list[str]:
    """The files a packed model consists of, relative to its directory, from its manifest."""
    manifest = read_json(root / "moeflux.json")
    if not manifest:
        raise FormatError(f"{root} has no moeflux.json; it is not a packed moeflux model (convert it with moeflux convert)")
    names = ["moeflux.json", manifest.get("dense", {}).get("file", "dense.bin")]
    names += [layer["file"] for layer in manifest.get("experts", {}).get("layers", [])]
    names += sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix in (".json", ".jinja", ".txt", ".model")
                    and p.name not in (CHECKSUMS, "moeflux.json"))
    return names


def _sha256(path: Path, progress: Callable[[int], None]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_CHUNK):  # hashlib releases the GIL on large updates: files hash in parallel
            digest.update(block)
            progress(len(block))
    return digest.hexdigest()


def _hash_all(root: Path, names: list[str], show_progress: bool, label: str) -> dict[str, dict[str, Any]]:
    from tqdm.auto import tqdm

    sizes = {name: (root / name).stat().st_size for name in names}
    with tqdm(total=sum(sizes.values()), unit="B", unit_scale=True, desc=label, disable=not show_progress) as bar:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            digests = pool.map(lambda name: _sha256(root / name, bar.update), names)
            return {name: {"size": sizes[name], "sha256": d} for name, d in zip(names, digests)}


def write_checksums(model_dir: str | os.PathLike[str], *, progress: bool = False) -> Path:
    """Writes ``checksums.json`` for the packed model in `model_dir` and returns its path."""
    root = Path(model_dir)
    files = _hash_all(root, _model_files(root), progress, "checksums")
    path = root / CHECKSUMS
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"version": 1, "algorithm": "sha256", "files": files}, indent=1) + "\n")
    tmp.replace(path)
    return path


def verify(model_dir: str | os.PathLike[str], *, progress: bool = False) -> list[str]:
    """Checks every file of ``checksums.json``; returns one line per problem (empty: all good).
    Raises FormatError when the model has no checksums (or they are unreadable)."""
    root = Path(model_dir)
    stored = read_json(root / CHECKSUMS)
    if not stored:
        raise FormatError(f"{root} has no {CHECKSUMS} (it was converted before moeflux wrote them); "
                          "`moeflux verify --write` records the current files' checksums")
    if stored.get("version") != 1 or stored.get("algorithm") != "sha256" or not isinstance(stored.get("files"), dict):
        raise FormatError(f"{root / CHECKSUMS} has a version or algorithm this moeflux does not know; update moeflux")
    files: dict[str, dict[str, Any]] = stored["files"]
    problems = [f"{name}: missing" for name in files if not (root / name).is_file()]
    present = [name for name in files if (root / name).is_file()]
    wrong_size = {n for n in present if (root / n).stat().st_size != files[n]["size"]}
    problems += [f"{n}: size {(root / n).stat().st_size}, expected {files[n]['size']}" for n in sorted(wrong_size)]
    actual = _hash_all(root, [n for n in present if n not in wrong_size], progress, "verify")
    problems += [f"{n}: checksum mismatch" for n, value in actual.items() if value["sha256"] != files[n]["sha256"]]
    return problems
