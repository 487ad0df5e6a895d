"""The bundle's manifest: every file with its size and sha256, the options and the pins.

`verify` checks a bundle folder against its manifest before anything is installed from it:
a missing, changed or unlisted wheel is a `BundleMismatch` (one line, exit code 2).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_launch.errors import LaunchError

MANIFEST_NAME = "manifest.json"
FORMAT = 1
CHUNK = 1 << 20


class BundleMismatch(LaunchError):
    """The bundle folder does not match its manifest."""

    exit_code = 2


def normalize(name: str) -> str:
    """A distribution name as the package index compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> FileEntry:
        return cls(path.name, path.stat().st_size, sha256_of(path))


@dataclass(frozen=True)
class Manifest:
    """What a bundle holds; `options` and `pins` are plain JSON (see bundle.py)."""

    options: dict[str, Any]
    pins: dict[str, list[str]]
    files: tuple[FileEntry, ...]
    pruned: tuple[str, ...] = ()
    uninstall_after: tuple[str, ...] = ()
    created_utc: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "created_utc": self.created_utc,
            "options": self.options,
            "pins": self.pins,
            "pruned": list(self.pruned),
            "uninstall_after": list(self.uninstall_after),
            "total_bytes": self.total_bytes,
            "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise BundleMismatch(f"unknown manifest format {data.get('format')!r}")
        try:
            files = tuple(FileEntry(f["name"], int(f["size"]), f["sha256"]) for f in data["files"])
            return cls(
                options=dict(data["options"]),
                pins={k: list(v) for k, v in data["pins"].items()},
                files=files,
                pruned=tuple(data.get("pruned", ())),
                uninstall_after=tuple(data.get("uninstall_after", ())),
                created_utc=str(data.get("created_utc", "")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BundleMismatch(f"the manifest is malformed ({error!r})") from error


def describe(folder: Path, names: Iterable[str]) -> tuple[FileEntry, ...]:
    """The entries of `names` (files in `folder`), sorted by name."""
    return tuple(FileEntry.of(folder / name) for name in sorted(names))


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return path


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise BundleMismatch(f"{folder} has no {MANIFEST_NAME}: not a bundle folder")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BundleMismatch(f"cannot read {path}: {error}") from error
    if not isinstance(data, dict):
        raise BundleMismatch(f"{path} is not a JSON object")
    return Manifest.from_json(data)


def verify(folder: Path) -> Manifest:
    """The manifest of `folder`, once every file in it matches (size, then sha256) and no
    wheel lies there that the manifest does not list."""
    manifest = read_manifest(folder)
    listed = {entry.name for entry in manifest.files}
    for entry in manifest.files:
        path = folder / entry.name
        if not path.is_file():
            raise BundleMismatch(f"{entry.name} is missing from the bundle")
        if path.stat().st_size != entry.size:
            raise BundleMismatch(f"{entry.name}: size differs from the manifest")
        if sha256_of(path) != entry.sha256:
            raise BundleMismatch(f"{entry.name}: sha256 differs from the manifest")
    unlisted = sorted(p.name for p in folder.glob("*.whl") if p.name not in listed)
    if unlisted:
        raise BundleMismatch(f"{unlisted[0]} is in the bundle but not in its manifest")
    return manifest
