"""Named prefix states: a prompt prefilled once and kept under a name, for one tenant.

Pure (no I/O, no clock: `now` is passed in). A state is a token prompt: its parent's tokens
followed by its own suffix's, so a fork is a token extension of its parent and its warm-up
finds the parent's blocks cached. Generating from a state sends the state's tokens followed
by the request's suffix, so the state is a token prefix of every prompt made from it.

Chat turns are rendered with the model's chat template. A chat state ends after its last
turn (no assistant header); what follows it, a fork's turns or a chat completion's messages
and the assistant header, is the template's rendering of the whole conversation minus its
rendering of the state's turns. The state's own turns enter that difference only through
their roles (each content replaced by a placeholder), so a state stored as tokens alone
(no text) can still be continued.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.core.planning.planner import usable_blocks
from orchestrator.core.planning.prompt import PromptRenderer
from orchestrator.errors import InvalidRequest, ServiceError

ID_PREFIX = "st_"
PLACEHOLDER = "x"  # the content of the state's own turns when its continuation is rendered
Message = dict[str, str]


class StateBudgetExceeded(ServiceError):
    """The tenant holds as many states, or state tokens, as its budget allows."""

    status_code = 429
    error_type = "insufficient_quota"
    code = "state_budget_exceeded"


class StateNotFound(ServiceError):
    """No live state of this id for this tenant: missing, expired or another tenant's alike."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "state_not_found"

    def __init__(self, state_id: str) -> None:
        super().__init__(f"no state {state_id!r}", param="id")


@dataclass(frozen=True)
class State:
    id: str
    tenant: str
    salt: str
    tokens: tuple[int, ...]
    created_at: float  # seconds since the epoch
    expires_at: float
    parent: str | None = None
    roles: tuple[str, ...] | None = None  # a chat state: the roles of its turns so far
    source: dict[str, Any] | None = field(default=None, compare=False)  # its own input, if kept
    cached_tokens: int = 0  # what its warm-up found already cached when it was created

    @property
    def ttl_s(self) -> float:
        return self.expires_at - self.created_at

    def live(self, now: float) -> bool:
        return now < self.expires_at


def new_state_id() -> str:
    """Unguessable: 144 random bits."""
    return ID_PREFIX + secrets.token_urlsafe(18)


def ttl_for(asked: int | None, default_s: int, max_s: int) -> int:
    if asked is None:
        return default_s
    if asked > max_s:
        raise InvalidRequest(f"ttl_s may be at most {max_s} seconds", param="ttl_s")
    return asked


def warm_prefix(tokens: Sequence[int], block_size: int) -> list[int] | None:
    """What a warm-up of `tokens` sends: every full block and one token more (the last prompt
    token is never cached), or None when not one block would be kept."""
    blocks = usable_blocks(len(tokens), block_size)
    return list(tokens[: blocks * block_size + 1]) if blocks else None


def full_block_tokens(tokens: Sequence[int], block_size: int) -> int:
    """Tokens of `tokens` a warm-up leaves cached: its usable full blocks."""
    return usable_blocks(len(tokens), block_size) * block_size


def distinct_tokens(prompts: Iterable[Sequence[int]], block_size: int) -> int:
    """Tokens the prompts hold in a prefix cache: a full block shared by several prompts (a
    state and its forks) counts once, a partial last block once per prompt."""
    blocks: set[int] = set()
    partial = 0
    for tokens in prompts:
        chain = 0
        full = len(tokens) - len(tokens) % block_size
        for start in range(0, full, block_size):
            chain = hash((chain, tuple(tokens[start : start + block_size])))
            blocks.add(chain)
        partial += len(tokens) - full
    return len(blocks) * block_size + partial


def check_budget(
    held: Sequence[State],
    tokens: Sequence[int],
    block_size: int,
    max_states: int,
    max_tokens: int,
) -> None:
    """Refuse a new state of `tokens` beyond the tenant's budget of states and tokens."""
    if len(held) >= max_states:
        raise StateBudgetExceeded(
            f"this tenant holds {len(held)} states, the most allowed; delete one first"
        )
    total = distinct_tokens([*(state.tokens for state in held), tokens], block_size)
    if total > max_tokens:
        raise StateBudgetExceeded(
            f"the tenant's states would hold {total} tokens, over the budget of {max_tokens}"
        )


def check_length(tokens: Sequence[int], max_model_len: int | None) -> None:
    if not tokens:
        raise InvalidRequest("the state's prompt is empty", param="prompt")
    if max_model_len is not None and len(tokens) >= max_model_len:
        raise InvalidRequest(
            f"the state's prompt has {len(tokens)} tokens; the model takes fewer than "
            f"{max_model_len} (and one more to generate)",
            param="prompt",
            code="context_length_exceeded",
        )


def render_turns(renderer: PromptRenderer, messages: Sequence[Message], generation: bool) -> str:
    if not messages:
        return ""
    rendered = renderer.tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation
    )
    return str(rendered)


def chat_suffix(
    renderer: PromptRenderer,
    roles: Sequence[str] | None,
    messages: Sequence[Message],
    generation: bool,
) -> str:
    """The text that continues a state whose turns had `roles` (None: not a chat) with
    `messages`, and the assistant header when `generation`."""
    before = [{"role": role, "content": PLACEHOLDER} for role in roles or ()]
    if not before and not messages:
        raise InvalidRequest("messages must not be empty here", param="messages")
    head = render_turns(renderer, before, generation=False)
    whole = render_turns(renderer, [*before, *messages], generation)
    if not whole.startswith(head):
        raise InvalidRequest(
            "the chat template renders these messages differently after the state's turns",
            param="messages",
            code="template_mismatch",
        )
    return whole[len(head) :]


def suffix_roles(
    roles: tuple[str, ...] | None, messages: Sequence[Message] | None
) -> tuple[str, ...] | None:
    """The roles of a state continued by `messages` (None: appended text keeps the parent's)."""
    if messages is None:
        return roles
    return (*(roles or ()), *(message["role"] for message in messages))
