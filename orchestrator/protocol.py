"""The `/ws/session` protocol: client frames, validated; server frames, built in one place.

Client → server: `start`, `input`, `submit`, `cancel`.
Server → client: `ready`, `warm`, `token`, `done`, `error`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestrator.errors import InvalidRequest

MAX_TEXT_CHARS = 100_000
WarmupMode = Literal["keystroke", "context", "off"]


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChatTurn(Frame):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_TEXT_CHARS)


class Context(Frame):
    """What the prompt is about: a system prompt / document, or a database for text-to-SQL."""

    system: str | None = Field(None, max_length=MAX_TEXT_CHARS)
    database: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,62}$")
    history: list[ChatTurn] = Field(default_factory=list, max_length=100)


class GenerationParams(Frame):
    max_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=2.0)


class Start(Frame):
    type: Literal["start"]
    context: Context = Field(default_factory=Context)
    params: GenerationParams = Field(default_factory=GenerationParams)
    warmups: WarmupMode = Field(
        "keystroke",
        description="keystroke: the full planner; context: only the context (system prompt, "
        "schema) at start; off: none at all (the cold baseline).",
    )
    api_key: str | None = Field(
        None, max_length=512, description="The API key, when not sent as the subprotocol."
    )
    cache_namespace: str | None = Field(
        None,
        max_length=128,
        description="Mixed into the server-derived salt: separates runs (evals), never shared "
        "across tenants.",
    )


class Input(Frame):
    type: Literal["input"]
    text: str = Field(max_length=MAX_TEXT_CHARS)
    seq: int = Field(ge=0)


class Submit(Frame):
    type: Literal["submit"]
    text: str = Field(max_length=MAX_TEXT_CHARS)
    seq: int = Field(0, ge=0)


class Cancel(Frame):
    type: Literal["cancel"]


ClientFrame = Annotated[Start | Input | Submit | Cancel, Field(discriminator="type")]
CLIENT_FRAME: TypeAdapter[Start | Input | Submit | Cancel] = TypeAdapter(ClientFrame)


def parse_client_frame(raw: str | bytes) -> Start | Input | Submit | Cancel:
    """One validated frame, or InvalidRequest with a one-line reason."""
    try:
        return CLIENT_FRAME.validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "frame"
        raise InvalidRequest(f"{where}: {first['msg']}", param=where, code="bad_frame") from None


def ready(session_id: str, model: str, block_size: int, warmups: WarmupMode) -> dict[str, Any]:
    return {
        "type": "ready",
        "session_id": session_id,
        "model": model,
        "block_size": block_size,
        "warmups": warmups,
    }


def warm(
    seq: int, tokens: int, cached_tokens: int, ms: float, submit_ready: bool
) -> dict[str, Any]:
    return {
        "type": "warm",
        "seq": seq,
        "tokens": tokens,
        "cached_tokens": cached_tokens,
        "ms": round(ms, 2),
        "submit_ready": submit_ready,
    }


def token(text: str) -> dict[str, Any]:
    return {"type": "token", "text": text}
