"""Each database's read-only role: its name, and its password (one file each under
`<data dir>/db-secrets`, mode 0600)."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from orchestrator.errors import SetupError

DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
READER_SUFFIX = "_reader"
MAX_NAME = 63 - len(READER_SUFFIX)  # PostgreSQL silently truncates names beyond 63 bytes


def reader_password(data_dir: Path, role: str, *, create: bool) -> str:
    """The reader's password; with `create`, a new random one when it has none yet."""
    path = data_dir / "db-secrets" / f"{role}.password"
    if path.exists() or not create:
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError:
            raise SetupError(f"no password for role {role}: seed its dataset first") from None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(password + "\n")
    return password


def reader_role(name: str) -> str:
    if not DATASET_NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise SetupError(
            f"invalid dataset name {name!r}: want a lowercase letter, then up to "
            f"{MAX_NAME - 1} lowercase letters, digits or _"
        )
    return name + READER_SUFFIX
