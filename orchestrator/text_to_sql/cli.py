"""`python -m orchestrator.text_to_sql seed`: start PostgreSQL and seed every dataset."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestrator.db.server import Database
from orchestrator.db.urls import mask_url
from orchestrator.errors import SetupError
from orchestrator.settings import Settings
from orchestrator.text_to_sql.seed import DEFAULT_DATASET_ROOT, ensure_dataset, list_datasets


async def seed_all(settings: Settings, root: Path, *, reseed: bool) -> None:
    if not (datasets := list_datasets(root)):
        raise SetupError(f"no datasets (folders with a schema.sql) under {root}")
    db = Database(settings.database_url, settings.data_dir)
    await db.start()
    try:
        for name, folder in datasets.items():
            ds = await ensure_dataset(db, name, folder, reseed=reseed)
            state = "loaded" if ds.loaded else "up to date"
            print(f"{name}: {state}, reader {mask_url(ds.reader_url)}")
    finally:
        await db.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.text_to_sql")
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("seed", help="create and seed a database for every dataset")
    seed.add_argument("--dataset-root", type=Path, default=DEFAULT_DATASET_ROOT)
    seed.add_argument("--reseed", action="store_true", help="reload unchanged datasets too")
    args = parser.parse_args(argv)
    try:
        asyncio.run(seed_all(Settings(), args.dataset_root, reseed=args.reseed))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
