"""Request examples shown in Swagger (`/docs`)."""

from fastapi.openapi.models import Example

MODEL = "SmolLM2-135M-Instruct"

COMPLETION_EXAMPLES: dict[str, Example] = {
    "text": {
        "summary": "A text prompt",
        "value": {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 8},
    },
    "token ids, streamed": {
        "summary": "Token ids, streamed with usage",
        "value": {
            "model": MODEL,
            "prompt": [1, 504, 3575, 282, 4649, 314],
            "max_tokens": 8,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    },
}

CHAT_EXAMPLES: dict[str, Example] = {
    "chat": {
        "summary": "A chat turn",
        "value": {
            "model": MODEL,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 16,
        },
    },
    "streamed": {
        "summary": "Streamed, with usage (cached_tokens shows the warm-up hits)",
        "value": {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You answer in one sentence."},
                {"role": "user", "content": "Why is the sky blue?"},
            ],
            "max_tokens": 32,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    },
}

WARM_EXAMPLES: dict[str, Example] = {
    "document": {
        "summary": "Cache a document / system prompt before the first question",
        "value": {
            "messages": [
                {"role": "system", "content": "Answer from this document: <a long document>"}
            ]
        },
    },
    "prompt": {"summary": "Warm a raw prompt", "value": {"prompt": "A long shared prefix ..."}},
}

STATE_EXAMPLES: dict[str, Example] = {
    "document": {
        "summary": "Keep a document (a system prompt) for an hour",
        "value": {
            "messages": [{"role": "system", "content": "Answer from this manual: <a long text>"}],
            "ttl_s": 3600,
        },
    },
    "prompt": {"summary": "Keep a raw prompt", "value": {"prompt": "A long shared prefix ..."}},
    "tokens only": {
        "summary": "Keep token ids, not the text",
        "value": {"prompt": "A confidential document ...", "store_text": False},
    },
}

FORK_EXAMPLES: dict[str, Example] = {
    "append": {"summary": "Append text", "value": {"append": " Section 2: returns ..."}},
    "turns": {
        "summary": "Append chat turns",
        "value": {"messages": [{"role": "user", "content": "Summarise section 2."}]},
    },
}

STATE_COMPLETION_EXAMPLES: dict[str, Example] = {
    "seeded": {
        "summary": "The state, then a suffix; seeded sampling with log-probabilities",
        "value": {
            "prompt": " Question: what is covered?",
            "max_tokens": 16,
            "temperature": 0.8,
            "seed": 7,
            "logprobs": 2,
        },
    },
}

STATE_CHAT_EXAMPLES: dict[str, Example] = {
    "turn": {
        "summary": "A user turn after the state's turns",
        "value": {
            "messages": [{"role": "user", "content": "What does section 2 say?"}],
            "max_tokens": 32,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    },
}
