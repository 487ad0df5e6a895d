"""Synthetic models: a real architecture's shape with no weights, served with random ones.

`prepare_synthetic(name, ...)` writes `models/synthetic-NAME/`: a `config.json` of a known
shape (layers, hidden size, heads, KV heads, intermediate size), the SmolLM2 tokenizer of the
default model folder (its vocabulary size becomes the model's), and `synthetic.json`, the mark
that makes `serve` add `--load-format dummy`. Answers are noise; the cost of a prefill or a
decode step is the real shape's, and greedy outputs are still deterministic.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vllm_launch.engine_env import EngineEnv
from vllm_launch.errors import LaunchError
from vllm_launch.model import build_default_model

MARKER_NAME = "synthetic.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
LONG_CONTEXT = 40960  # a 32k-token prompt and its answer
COPIED_FROM_BASE = ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class Shape:
    """The numbers that set a decoder's cost."""

    architecture: str  # LlamaForCausalLM or Qwen2ForCausalLM
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    max_positions: int
    rope_theta: float
    tie_embeddings: bool
    like: str  # the public model whose shape this is

    @property
    def model_type(self) -> str:
        return "qwen2" if self.architecture.startswith("Qwen2") else "llama"

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def parameters(self, vocab: int) -> int:
        """Weights of this shape with `vocab` tokens (norms and biases left out)."""
        kv = self.kv_heads * self.head_dim
        attention = self.hidden * (self.hidden + 2 * kv) + self.hidden * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        embeddings = vocab * self.hidden * (1 if self.tie_embeddings else 2)
        return self.layers * (attention + mlp) + embeddings


SHAPES = {
    "tiny": Shape("LlamaForCausalLM", 2, 256, 4, 2, 512, 8192, 100000.0, True, "(tests)"),
    "1.5b": Shape(
        "Qwen2ForCausalLM", 28, 1536, 12, 2, 8960, LONG_CONTEXT, 1e6, True, "Qwen2.5-1.5B"
    ),
    "7b": Shape("Qwen2ForCausalLM", 28, 3584, 28, 4, 18944, LONG_CONTEXT, 1e6, False, "Qwen2.5-7B"),
    "8b": Shape(
        "LlamaForCausalLM", 32, 4096, 32, 8, 14336, LONG_CONTEXT, 500000.0, False, "Llama-3.1-8B"
    ),
    "32b": Shape(
        "Qwen2ForCausalLM", 64, 5120, 40, 8, 27648, LONG_CONTEXT, 1e6, False, "Qwen2.5-32B"
    ),
}


def shape_of(name: str) -> Shape:
    try:
        return SHAPES[name]
    except KeyError:
        known = ", ".join(SHAPES)
        raise LaunchError(f"unknown synthetic model {name!r}: one of {known}") from None


def synthetic_dir(data_dir: Path, name: str) -> Path:
    return data_dir / "models" / f"synthetic-{name}"


def is_synthetic(model: str) -> bool:
    """True for a folder `prepare_synthetic` wrote (it has no weights: serve it with dummy)."""
    return (Path(model) / MARKER_NAME).is_file()


def synthetic_config(shape: Shape, base: dict[str, Any]) -> dict[str, Any]:
    """A Hugging Face config of `shape`, with the base model's vocabulary and special tokens."""
    config: dict[str, Any] = {key: base[key] for key in COPIED_FROM_BASE if key in base}
    config.update({
        "architectures": [shape.architecture],
        "model_type": shape.model_type,
        "num_hidden_layers": shape.layers,
        "hidden_size": shape.hidden,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "intermediate_size": shape.intermediate,
        "max_position_embeddings": shape.max_positions,
        "rope_theta": shape.rope_theta,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "tie_word_embeddings": shape.tie_embeddings,
        "torch_dtype": "bfloat16",
        "use_cache": True,
    })  # fmt: skip
    if shape.model_type == "llama":
        config.update({"attention_bias": False, "mlp_bias": False})
    else:
        config.update({"use_sliding_window": False, "max_window_layers": shape.layers})
    return config


def write_synthetic(out: Path, name: str, base_dir: Path) -> Path:
    """The folder of synthetic model `name`, its tokenizer copied from `base_dir`."""
    shape = shape_of(name)
    base = json.loads((base_dir / "config.json").read_text())
    if "vocab_size" not in base:
        raise LaunchError(f"{base_dir}/config.json has no vocab_size")
    config = json.dumps(synthetic_config(shape, base), indent=2) + "\n"
    mark: dict[str, Any] = {"name": name, "load_format": "dummy", "like": shape.like}
    mark |= {"shape": asdict(shape), "parameters": shape.parameters(int(base["vocab_size"]))}
    marker = json.dumps(mark, indent=2) + "\n"
    if _text(out / "config.json") == config and _text(out / MARKER_NAME) == marker:
        return out  # already there (and perhaps being served)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for source in base_dir.iterdir():
        weights = source.name.endswith(WEIGHT_SUFFIXES)
        if source.is_file() and source.name != "config.json" and not weights:
            shutil.copy2(source, tmp / source.name)
    (tmp / "config.json").write_text(config)
    (tmp / MARKER_NAME).write_text(marker)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def _text(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def prepare_synthetic(name: str, data_dir: Path, engine: EngineEnv) -> Path:
    """`models/synthetic-NAME`, after the default model folder whose tokenizer it takes."""
    shape_of(name)
    base = build_default_model(data_dir, engine)
    return write_synthetic(synthetic_dir(data_dir, name), name, base)
