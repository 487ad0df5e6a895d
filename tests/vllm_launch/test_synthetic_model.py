"""Synthetic models: their shapes, the folder (config, tokenizer, mark) and what `serve` makes of
it. Configs are read back with transformers, as vLLM reads them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoConfig, AutoTokenizer

from vllm_launch.__main__ import main
from vllm_launch.engine_env import EngineEnv, marker_text
from vllm_launch.errors import LaunchError
from vllm_launch.server import ServeOptions, build_command
from vllm_launch.synthetic import SHAPES, is_synthetic, shape_of, write_synthetic

SMOLLM2_VOCAB = 49152
NOMINAL = {"1.5b": 1.5e9, "7b": 7e9, "8b": 8e9, "32b": 32e9}


@pytest.fixture
def base_dir(tmp_path: Path, tokenizer_dir: Path) -> Path:
    """A default-model-like folder: SmolLM2's tokenizer, its config, and weights to leave out."""
    base = tmp_path / "SmolLM2-135M-Instruct"
    shutil.copytree(tokenizer_dir, base)
    config = {"vocab_size": SMOLLM2_VOCAB, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    (base / "config.json").write_text(json.dumps(config))
    (base / "model.safetensors").write_bytes(b"weights")
    return base


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_is_a_valid_decoder(name: str) -> None:
    shape = SHAPES[name]
    assert shape.head_dim * shape.heads == shape.hidden
    assert shape.heads % shape.kv_heads == 0  # grouped-query attention
    assert shape.head_dim in (64, 128)  # what vLLM's CPU and GPU attention kernels take


@pytest.mark.parametrize(("name", "nominal"), sorted(NOMINAL.items()))
def test_large_shapes_have_their_namesakes_size_and_long_context(name: str, nominal: float) -> None:
    """Within 15% of the nominal size: the vocabulary is SmolLM2's (49,152), not the original's."""
    shape = SHAPES[name]
    assert shape.parameters(SMOLLM2_VOCAB) == pytest.approx(nominal, rel=0.15)
    assert shape.max_positions >= 32768


def test_tiny_is_small() -> None:
    assert SHAPES["tiny"].parameters(SMOLLM2_VOCAB) < 20e6
    assert SHAPES["tiny"].hidden <= 256


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(LaunchError, match="unknown synthetic model '70b'"):
        shape_of("70b")


@pytest.mark.parametrize("name", ["tiny", "7b", "32b"])
def test_the_folder_holds_the_shape_and_the_tokenizer_but_no_weights(
    tmp_path: Path, base_dir: Path, name: str
) -> None:
    out = write_synthetic(tmp_path / f"synthetic-{name}", name, base_dir)
    shape = SHAPES[name]
    config = AutoConfig.from_pretrained(out)
    assert config.architectures == [shape.architecture]
    assert config.num_hidden_layers == shape.layers
    assert config.hidden_size == shape.hidden
    assert config.num_attention_heads == shape.heads
    assert config.num_key_value_heads == shape.kv_heads
    assert config.intermediate_size == shape.intermediate
    assert config.max_position_embeddings == shape.max_positions
    assert config.vocab_size == SMOLLM2_VOCAB
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) <= config.vocab_size
    assert tokenizer.decode(tokenizer.encode("SELECT 1;")) == "SELECT 1;"
    assert not list(out.glob("*.safetensors"))
    assert is_synthetic(str(out))
    assert not is_synthetic(str(base_dir))
    mark = json.loads((out / "synthetic.json").read_text())
    assert mark["load_format"] == "dummy"
    assert mark["parameters"] == shape.parameters(SMOLLM2_VOCAB)


def test_writing_it_again_leaves_a_served_folder_alone(tmp_path: Path, base_dir: Path) -> None:
    out = write_synthetic(tmp_path / "synthetic-tiny", "tiny", base_dir)
    (out / "served.lock").write_text("")  # stands for a file vLLM holds open
    assert write_synthetic(out, "tiny", base_dir) == out
    assert (out / "served.lock").exists()
    write_synthetic(out, "7b", base_dir)  # another shape: rewritten
    assert json.loads((out / "config.json").read_text())["hidden_size"] == SHAPES["7b"].hidden


def test_serve_loads_a_synthetic_folder_with_dummy_weights(tmp_path: Path, base_dir: Path) -> None:
    out = write_synthetic(tmp_path / "synthetic-tiny", "tiny", base_dir)
    engine = EngineEnv(tmp_path / "engine")
    command = build_command(engine, ServeOptions(model=str(out), served_model_name="s"))
    assert command[command.index("--load-format") + 1] == "dummy"
    assert command[command.index("--dtype") + 1] == "float32"  # on CPU
    own = ServeOptions(model=str(out), served_model_name="s", extra_args=("--load-format", "auto"))
    assert build_command(engine, own).count("--load-format") == 1
    plain = ServeOptions(model=str(base_dir), served_model_name="s")
    assert "--load-format" not in build_command(engine, plain)


def test_model_and_synthetic_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    fake = tmp_path / "data" / "vllm-cpu-venv"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "python").write_text("")
    (fake / ".prefill-ready").write_text(marker_text("cpu"))
    argv = ["--data-dir", str(tmp_path / "data"), "--device", "cpu", "--model", str(model)]
    assert main([*argv, "prepare-model", "--synthetic", "tiny"]) == 1
    assert capsys.readouterr().err.strip() == "error: give --model or --synthetic, not both"
