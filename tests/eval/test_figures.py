"""The eval's statistics and counts, on hand-made inputs: intervals, round order, the engine's
stored blocks, dataset names."""

from __future__ import annotations

from pathlib import Path

import pytest

from eval.engine.kv_count import Final, StoredBlocks, final_blocks
from eval.harness.rounds import MIXED, Arm, rounds
from eval.reports.intervals import bootstrap_ratio
from eval.reports.results import quantile
from eval.workloads.workload import database_name, load_workload
from orchestrator.core.cache.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEventBatch,
)
from orchestrator.errors import SetupError


def test_the_interval_of_two_units_is_what_a_hand_count_gives() -> None:
    # Units a (keystroke 1, static 2) and b (3, 4). A resample of two units is {a, a} with
    # probability 1/4 (ratio 1/2), {a, b} with 1/2 (medians 2 and 3: 2/3) and {b, b} with 1/4
    # (3/4); the 2.5th and 97.5th percentiles fall inside the outer two masses.
    keystroke = {("a", 0): 1.0, ("b", 0): 3.0}
    static = {("a", 0): 2.0, ("b", 0): 4.0}
    interval = bootstrap_ratio(keystroke, static, seed=11)
    assert interval is not None
    assert interval.ratio == pytest.approx(2 / 3, abs=1e-4)
    assert (interval.low, interval.high) == (0.5, 0.75)
    assert (interval.units, interval.cases, interval.repeats) == (2, 2, 1)
    assert bootstrap_ratio(keystroke, static, seed=11) == interval  # seeded


def test_the_interval_pairs_units_and_is_a_point_when_every_pair_agrees() -> None:
    static = {(case, r): 100.0 * (i + 1) for i, case in enumerate("abcde") for r in range(3)}
    keystroke = {unit: ttft / 4 for unit, ttft in static.items()}
    keystroke.pop(("e", 2))  # a failure: that unit is left out of both
    interval = bootstrap_ratio(keystroke, static, seed=1)
    assert interval is not None
    assert (interval.ratio, interval.low, interval.high) == (0.25, 0.25, 0.25)
    assert (interval.units, interval.cases, interval.repeats) == (14, 5, 3)
    assert bootstrap_ratio(keystroke, {("z", 0): 1.0}, seed=1) is None
    assert quantile([1.0, 2.0, 3.0], 0.5) == 2.0
    assert quantile([1.0, 3.0], 0.25) == 1.5


def test_rounds_interleave_the_modes_in_a_rotating_order() -> None:
    arms = [Arm.of(mode) for mode in ("cold", "static", "keystroke")]
    found = rounds(["a", "b", "c", "d"], arms, typists=1, repeats=2)
    assert len(found) == 4 * 3 * 2
    firsts = [r.arm.name for r in found if r.cases == ("a",)]
    assert [r.arm.name for r in found[:6]] == [
        "cold",
        "static",
        "keystroke",
        "static",
        "keystroke",
        "cold",
    ]
    assert {r.repeat for r in found} == {0, 1}
    assert firsts == ["cold", "static", "keystroke", "static", "keystroke", "cold"]  # rotated
    groups = rounds(["a", "b", "c"], arms, typists=2, repeats=1)
    assert [r.cases for r in groups] == [("a", "b")] * 3 + [("c",)] * 3


def test_a_mixed_arm_labels_its_typists_by_mode() -> None:
    assert [MIXED.label(i) for i in range(4)] == [
        "mixed:keystroke",
        "mixed:cold",
        "mixed:keystroke",
        "mixed:cold",
    ]
    assert Arm.of("cold").label(3) == "cold"
    assert MIXED.labels(1) == ["mixed:keystroke", "mixed:cold"]


def stored(hashes: list[int], parent: int | None, salt: str | None = None) -> BlockStored:
    keys: list[tuple[object, ...] | None] | None = None
    if parent is None:
        keys = [(salt,)] + [None] * (len(hashes) - 1)
    return BlockStored(hashes, parent, [0] * 32 * len(hashes), 32, "GPU", keys)


def test_stored_blocks_count_warm_work_per_salt_cancelled_pieces_included() -> None:
    blocks = StoredBlocks()
    blocks.apply(KVEventBatch(1.0, [stored([1, 2, 3], None, "s1")]))  # context: 3 blocks
    blocks.apply(KVEventBatch(2.0, [stored([4, 5], 3)]))  # a piece, aborted after 2 blocks
    blocks.apply(KVEventBatch(3.0, [stored([9], None, "other")]))
    blocks.apply(KVEventBatch(4.0, [stored([6, 7, 8], 5)]))  # the final: 1 prompt + 2 answer
    final = Final(prompt_tokens=6 * 32 + 10, cached_tokens=5 * 32, completion_tokens=60)
    assert final_blocks(final, 32) == 3  # (202 + 60 - 1) // 32 = 8 blocks, 5 were cached
    assert blocks.warm_tokens(["s1"], [final], 32) == 5 * 32  # the context and the piece
    assert blocks.warm_tokens(["s1"], [final], 32, from_depth=3) == 2 * 32  # past the context
    assert blocks.warm_tokens(["other"], [], 32) == 32
    blocks.apply(KVEventBatch(5.0, [stored([1, 2, 3, 4, 5], None, "s1")]))  # reused: reported
    assert blocks.warm_tokens(["s1"], [final], 32) == 5 * 32  # but not computed again
    blocks.apply(KVEventBatch(6.0, [BlockRemoved([5], "GPU"), stored([5], 4)]))  # evicted, redone
    assert blocks.warm_tokens(["s1"], [final], 32) == 6 * 32
    blocks.apply(KVEventBatch(7.0, [AllBlocksCleared(), stored([1], None, "s1")]))
    assert blocks.warm_tokens(["s1"], [final], 32) == 7 * 32  # a restarted cache computes again


def test_any_folder_name_gives_a_database_name_and_a_bad_folder_says_what_to_do(
    tmp_path: Path,
) -> None:
    assert database_name("library-large") == "library_large"
    assert database_name("2024 Sales") == "d_2024_sales"
    assert database_name("x" * 80) == "x" * 50
    with pytest.raises(SetupError, match="give --dataset an existing folder"):
        load_workload(tmp_path / "nowhere", 1)
    folder = tmp_path / "Library-Large"
    folder.mkdir()
    (folder / "schema.sql").write_text("create table t (a int);")
    (folder / "questions.jsonl").write_text('{"id": "1", "question": "q", "gold_sql": "s"}\n')
    with pytest.raises(SetupError, match=r"no seed\.sql"):
        load_workload(folder, 1)
    (folder / "seed.sql").write_text("")
    workload = load_workload(folder, 1)
    assert workload.context() == {"database": "library_large"}
