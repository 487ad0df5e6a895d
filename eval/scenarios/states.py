"""TTFT of a completion from a named state vs the same prompt cold, side by side in one run.

    python -m eval states [--vllm-url URL] [--rounds 3] [--doc-tokens 1500] [--max-tokens 8]

Each round makes a new document (seeded, never seen by the engine), keeps it as a state of
one tenant (`POST /v1/states` with its token ids), then streams the same prompt, the document
and a question, twice through the orchestrator: from the state
(`POST /v1/states/{id}/completions` with the question) and cold (`POST /v1/completions` with
the whole prompt as token ids, from a second tenant whose salt has nothing cached). The order
of the two alternates between rounds. TTFT is measured by the client at the first token.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import httpx
from httpx_sse import connect_sse

from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.settings import Settings
from orchestrator.web.app import create_app
from testkit.serving import serve_in_thread

KEYS = {"bench-state": "state-tenant", "bench-cold": "cold-tenant"}
WIDTHS = (5, 11, 15, 8, 14, 8)
QUESTION = " Question: which item weighs the most, and on which shelf is it kept? Answer:"


def document(rng: random.Random, renderer: PromptRenderer, tokens: int) -> list[int]:
    """About `tokens` token ids of made-up inventory, different in every round."""
    words = ("bolts", "gears", "valves", "springs", "hinges", "pulleys", "rivets", "clamps")
    lines: list[str] = []
    while len(renderer.encode(" ".join(lines))) < tokens:
        shelf, count, kilos = rng.randrange(999), rng.randrange(99), rng.randrange(500)
        lines.append(f"Shelf {shelf} holds {count} boxes of {rng.choice(words)}, {kilos} kg.")
    return renderer.encode(" ".join(lines))[:tokens]


def ttft_ms(http: httpx.Client, url: str, key: str, body: dict[str, Any]) -> tuple[float, int]:
    """Time to the first streamed token, and vLLM's cached tokens from the usage chunk."""
    started, first, cached = time.perf_counter(), None, -1
    headers = {"Authorization": f"Bearer {key}"}
    with connect_sse(http, "POST", url, json=body, headers=headers) as events:
        events.response.raise_for_status()
        for event in events.iter_sse():
            if event.data == "[DONE]":
                continue
            chunk = event.json()
            if first is None and any(c.get("text") for c in chunk.get("choices", [])):
                first = (time.perf_counter() - started) * 1000
            if chunk.get("usage"):
                details = chunk["usage"].get("prompt_tokens_details") or {}
                cached = int(details.get("cached_tokens") or 0)
    if first is None:
        raise RuntimeError(f"{url}: the stream carried no token")
    return first, cached


def run_round(
    http: httpx.Client, app_url: str, model: str, doc: list[int], question: list[int], index: int
) -> dict[str, float]:
    started = time.perf_counter()
    made = http.post(
        f"{app_url}/v1/states",
        json={"prompt": doc, "ttl_s": 600},
        headers={"Authorization": "Bearer bench-state"},
    )
    made.raise_for_status()
    create_ms = (time.perf_counter() - started) * 1000
    common = {"model": model, "max_tokens": 8, "temperature": 0, "stream": True}
    common["stream_options"] = {"include_usage": True}
    results: dict[str, float] = {"create_ms": create_ms}
    state_url = f"{app_url}/v1/states/{made.json()['id']}/completions"
    order = ("state", "cold") if index % 2 == 0 else ("cold", "state")
    for path in order:
        if path == "state":
            ms, cached = ttft_ms(http, state_url, "bench-state", {**common, "prompt": question})
        else:
            body = {**common, "prompt": [*doc, *question]}
            ms, cached = ttft_ms(http, f"{app_url}/v1/completions", "bench-cold", body)
        results[f"{path}_ms"], results[f"{path}_cached"] = ms, cached
    state_path = f"{app_url}/v1/states/{made.json()['id']}"
    http.delete(state_path, headers={"Authorization": "Bearer bench-state"})
    return results


def report(rows: list[dict[str, float]]) -> None:
    heads = ("round", "create ms", "state TTFT ms", "cached", "cold TTFT ms", "cached")
    print("".join(f"{head:>{width}}" for head, width in zip(heads, WIDTHS, strict=True)))
    for i, row in enumerate(rows):
        keys = ("create_ms", "state_ms", "state_cached", "cold_ms", "cold_cached")
        cells = [f"{row[key]:.1f}" if key.endswith("_ms") else f"{row[key]:.0f}" for key in keys]
        print(
            "".join(
                f"{cell:>{width}}" for cell, width in zip([str(i), *cells], WIDTHS, strict=True)
            )
        )
    state = statistics.median(row["state_ms"] for row in rows)
    cold = statistics.median(row["cold_ms"] for row in rows)
    print(f"median TTFT: from the state {state:.1f} ms, cold {cold:.1f} ms ({cold / state:.1f}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval states", description=__doc__)
    parser.add_argument("--vllm-url", default="http://127.0.0.1:8001")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--doc-tokens", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    settings = Settings(vllm_url=args.vllm_url, enable_database=False, api_keys=KEYS)
    renderer = PromptRenderer.load(settings.tokenizer_path)
    rng = random.Random(args.seed)
    question = renderer.encode(QUESTION)
    with serve_in_thread(create_app(settings)) as app_url, httpx.Client(timeout=300) as http:
        vllm = settings.vllm_base_url
        model = http.get(f"{vllm}/v1/models").json()["data"][0]["id"]
        version = http.get(f"{vllm}/version").json().get("version")
        block = http.get(f"{app_url}/health").json()["vllm"]["block_size"]
        print(
            f"vLLM {version} at {vllm}, model {model}, block size {block}; rounds {args.rounds}, "
            f"document {args.doc_tokens} tokens, question {len(question)} tokens, max_tokens 8, "
            f"temperature 0, seed {args.seed}; streamed, TTFT at the client's first token"
        )
        rows = [
            run_round(http, app_url, model, document(rng, renderer, args.doc_tokens), question, i)
            for i in range(args.rounds)
        ]
    report(rows)
    return 0
