"""Render prompts with the model's own chat template, to token ids.

Warm-ups and final requests are both sent as token ids built here, so the two can never
tokenize differently. A chat is rendered once around a sentinel user message, which splits the
template into a `head` (system prompt, history, the user turn's opening) and a `tail` (the user
turn's closing and the assistant header); typed text goes between them. A context may add a
fixed opening to the user's turn (in the head) and start the assistant's answer (in the tail):
text-to-SQL opens the answer with a ```sql fence, so even a small model answers with a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.core.planning.stable import StableText
from orchestrator.errors import SetupError

PROMPT_CACHE_SIZE = 256
SENTINEL = "\u2063PREFILL-USER-TEXT\u2063"
Openings = tuple[str, str]  # fixed text opening the user's turn, and the assistant's answer
PromptKey = tuple[str | None, tuple[tuple[str, str], ...], Openings]


@dataclass(frozen=True)
class ChatFrame:
    """The rendered template around the user's text."""

    head: str
    tail: str
    answer_opening: str = ""  # the end of `tail`: the first words of the assistant's answer

    def prefix_text(self, user_text: str) -> str:
        """What a warm-up covers: everything up to the (stable part of the) user's text."""
        return self.head + user_text

    def full_text(self, user_text: str) -> str:
        """The submit-ready prompt: user text closed, assistant header opened."""
        return self.head + user_text + self.tail


@dataclass(frozen=True)
class SessionPrompt:
    """Token ids of a session's prompts: the head encoded once, the typed text per keystroke.

    Warm-ups and the final request are composed the same way (head ids + ids of the text that
    follows), so a warm-up is always a token prefix of the final prompt that follows it.
    """

    frame: ChatFrame
    head_tokens: tuple[int, ...]
    renderer: PromptRenderer

    def stable_text(self, text: str) -> str:
        """The part of the typed text whose tokens can no longer change (`stable.py`)."""
        return self.renderer.stable.prefix(text)

    def warm_tokens(self, text: str) -> list[int]:
        """The head plus the ids of the stable part of `text` (no template tail): a token
        prefix of the final prompt of `text` followed by anything."""
        return [*self.head_tokens, *self.renderer.stable.split(text)[1]]

    def final_tokens(self, text: str) -> list[int]:
        """The submit-ready prompt: head, typed text, the template's tail (assistant header)."""
        return [*self.head_tokens, *self.renderer.encode(text + self.frame.tail)]


class PromptRenderer:
    """Wraps a Hugging Face tokenizer: chat frames and token ids."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.stable = StableText(tokenizer, self.encode)
        self._prompts: dict[PromptKey, SessionPrompt] = {}

    @classmethod
    def load(cls, path: str) -> PromptRenderer:
        looks_local = path.startswith(("/", ".", "~")) or "/" not in path
        if looks_local and not Path(path).expanduser().is_dir():
            raise SetupError(f"tokenizer {path!r} not found: prepare the model first (make setup)")
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError) as error:
            first = (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            )
            raise SetupError(f"cannot load the tokenizer from {path}: {first}") from error
        if not getattr(tokenizer, "chat_template", None):
            raise SetupError(f"the tokenizer at {path} has no chat template")
        return cls(tokenizer)

    def frame(
        self,
        system: str | None,
        history: list[dict[str, str]] | None = None,
        openings: Openings = ("", ""),
    ) -> ChatFrame:
        """The template around the user's text; `openings`: (the user turn's, the answer's)."""
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend(history or [])
        messages.append({"role": "user", "content": SENTINEL})
        rendered = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        head, found, tail = str(rendered).partition(SENTINEL)
        if not found:
            raise SetupError("the chat template does not place the user's message verbatim")
        question_opening, answer_opening = openings
        return ChatFrame(head + question_opening, tail + answer_opening, answer_opening)

    def session_prompt(
        self,
        system: str | None,
        history: list[dict[str, str]] | None = None,
        openings: Openings = ("", ""),
    ) -> SessionPrompt:
        """Sessions with the same context share one (immutable) rendered head."""
        key = (system, tuple((turn["role"], turn["content"]) for turn in history or []), openings)
        prompt = self._prompts.get(key)
        if prompt is None:
            frame = self.frame(system, history, openings)
            prompt = SessionPrompt(frame, tuple(self.encode(frame.head)), self)
            if len(self._prompts) >= PROMPT_CACHE_SIZE:
                self._prompts.pop(next(iter(self._prompts)))  # the oldest
            self._prompts[key] = prompt
        return prompt

    def encode(self, text: str) -> list[int]:
        """Token ids of rendered text; special tokens are spelled in it, none are added."""
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))
