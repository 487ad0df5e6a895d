"""The `/ws/session` protocol, every frame a typed model: those the client sends, validated;
those the server sends, built here and nowhere else.

Client → server: `start`, `input`, `submit`, `cancel`.
Server → client: `ready`, `warm`, `token`, `done`, `error`, `engine`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from orchestrator.errors import InvalidRequest, ServiceError

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
    speculate: bool = Field(
        True,
        description="false: this session never sends speculative finals (the server's "
        "PREFILL_SPECULATE decides otherwise; a client cannot turn it on).",
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


# -- server frames ---------------------------------------------------------------------------


class ServerFrame(BaseModel):
    """A frame the server sends; `dump()` is its JSON object."""

    model_config = ConfigDict(frozen=True)
    optional: ClassVar[frozenset[str]] = frozenset()  # fields sent only when given

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(self.optional - self.model_fields_set))


class Ready(ServerFrame):
    type: Literal["ready"] = "ready"
    session_id: str
    model: str
    block_size: int
    warmups: WarmupMode


class Warm(ServerFrame):
    type: Literal["warm"] = "warm"
    seq: int
    tokens: int
    cached_tokens: int
    ms: float
    submit_ready: bool

    @classmethod
    def of(cls, seq: int, tokens: int, cached_tokens: int, ms: float, submit_ready: bool) -> Warm:
        return cls(
            seq=seq, tokens=tokens, cached_tokens=cached_tokens, ms=round(ms, 2),
            submit_ready=submit_ready,
        )  # fmt: skip


class Token(ServerFrame):
    """Streamed output. The answer's first token also says what is known at that moment:
    the TTFT, the prompt's length, and how much of it the session believed cached at submit
    (vLLM's own count comes with `done`)."""

    optional: ClassVar[frozenset[str]] = frozenset({"ttft_ms", "prompt_tokens", "warmed_tokens"})
    type: Literal["token"] = "token"
    text: str
    ttft_ms: float | None = None  # submit received -> this frame, as `done.ttft_ms`
    prompt_tokens: int | None = None
    warmed_tokens: int | None = None  # as `done.scorecard.warmed_tokens`

    @classmethod
    def first(cls, text: str, ttft_ms: float, prompt_tokens: int, warmed_tokens: int) -> Token:
        return cls(
            text=text, ttft_ms=round(ttft_ms, 2), prompt_tokens=prompt_tokens,
            warmed_tokens=warmed_tokens,
        )  # fmt: skip


class Scorecard(BaseModel):
    """What the session's warm-ups did for one final request (`core/warming/scorecard.py` says how
    each figure is counted); in the `done` frame, and as `usage["prefill_ahead"]` over HTTP."""

    model_config = ConfigDict(frozen=True)
    warmed_tokens: int  # whole blocks of the prompt the session believed cached at submit
    hit_tokens: int  # vLLM's cached_tokens of the final request
    warm_prefill_tokens: int  # prompt - cached tokens the question's warm-ups computed
    wasted_prefill_tokens: int  # of those, the ones that did not serve this final
    ttft_ms: float | None
    cold_ttft_ms: float | None  # a cold request of this prompt length, from the fitted cost
    saved_ms: float | None  # cold - actual
    speculative: bool = False  # the answer attached to a speculative final
    speculation_wasted_tokens: int = 0  # generated tokens of speculations thrown away

    @classmethod
    def of(
        cls,
        *,
        warmed_tokens: int,
        hit_tokens: int,
        warm_prefill_tokens: int,
        wasted_prefill_tokens: int,
        ttft_ms: float | None,
        cold_ttft_ms: float | None,
    ) -> Scorecard:
        saved = None if ttft_ms is None or cold_ttft_ms is None else cold_ttft_ms - ttft_ms
        return cls(
            warmed_tokens=warmed_tokens, hit_tokens=hit_tokens,
            warm_prefill_tokens=warm_prefill_tokens, wasted_prefill_tokens=wasted_prefill_tokens,
            ttft_ms=rounded(ttft_ms), cold_ttft_ms=rounded(cold_ttft_ms), saved_ms=rounded(saved),
        )  # fmt: skip


def rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 2)


class WarmPieces(BaseModel):
    """The question's warm-up pieces: sent to vLLM, landed, cancelled after they were sent
    (its submit, a new start; vLLM aborted them, keeping the blocks they finished)."""

    sent: int
    landed: int
    cancelled: int


class Done(ServerFrame):
    """The end of an answer; a text-to-SQL context adds the query and its rows (or why not).

    One name per fact: the TTFT is `ttft_ms` and vLLM's cached tokens `cached_tokens`, so the
    `scorecard` here leaves out its own copies of both (`ttft_ms`, `hit_tokens`: HTTP answers,
    which have no such fields of their own, carry the whole scorecard); the question's landed
    warm-ups are `warm_pieces.landed`, their prefill `scorecard.warm_prefill_tokens`, and
    speculation's figures `scorecard.speculative` and `scorecard.speculation_wasted_tokens`.
    """

    optional: ClassVar[frozenset[str]] = frozenset(
        {"sql", "refused", "columns", "rows", "truncated", "query_ms"}
    )
    in_frame_only: ClassVar[frozenset[str]] = frozenset({"ttft_ms", "hit_tokens"})
    type: Literal["done"] = "done"
    seq: int
    ttft_ms: float | None
    total_ms: float
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    finish_reason: str | None
    stop_reason: str | None  # why generation stopped (`core/answering/stopping.py`)
    text: str
    warm_pieces: WarmPieces
    scorecard: Scorecard
    sql: str | None = None
    refused: str | None = None
    columns: list[str] | None = None
    rows: list[list[Any]] | None = None
    truncated: bool | None = None
    query_ms: float | None = None

    def dump(self) -> dict[str, Any]:
        frame = super().dump()
        frame["scorecard"] = {
            name: value
            for name, value in frame["scorecard"].items()
            if name not in self.in_frame_only
        }
        return frame


class Error(ServerFrame):
    """A failure or a bad frame: `code` as an HTTP answer's `error.code`, and `status` the
    HTTP status the same error gets there (a vLLM 400 is a 400 on every path; left out of
    notices that answer no request)."""

    optional: ClassVar[frozenset[str]] = frozenset({"status"})
    type: Literal["error"] = "error"
    code: str
    message: str
    status: int | None = None

    @classmethod
    def of(cls, error: ServiceError, code: str | None = None) -> Error:
        """The WebSocket form of a service error (HTTP answers use its `envelope()`)."""
        return cls(code=code or error.code, message=error.message, status=error.status_code)


class Engine(ServerFrame):
    """vLLM answers again (its going away is an `error` frame)."""

    type: Literal["engine"] = "engine"
    ok: bool


Send = Callable[[ServerFrame], Awaitable[None]]
