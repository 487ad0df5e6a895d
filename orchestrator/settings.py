"""The service's configuration: one typed, validated object built from the environment."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "PREFILL_"
DEFAULT_DATA_DIR = Path(".data")
DEFAULT_MODEL_DIRNAME = "SmolLM2-135M-Instruct"


# Settings renamed in release 0.2, their old names accepted (with a warning) until the next one:
# new name -> old name. Environment variables carry the prefix: PREFILL_PREFIX_TRACE.
RENAMED = {
    "popularity_enabled": "prefix_trace",
    "popularity_retention_hours": "trace_retention_hours",
    "popularity_opt_out_tenants": "trace_opt_out_tenants",
}
log = logging.getLogger(__name__)


def renamed(new: str, old: str) -> AliasChoices:
    """The variables a renamed setting is read from: its own, else the old one's (keywords:
    the field's name, or the old one, see `Settings._accept_old_names`)."""
    return AliasChoices(ENV_PREFIX.lower() + new, ENV_PREFIX.lower() + old)


class Settings(BaseSettings):
    """Every knob of the orchestrator; read from `PREFILL_*` variables (and `DATABASE_URL`)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, validate_by_name=True
    )

    host: str = Field("127.0.0.1", description="Interface the orchestrator listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the orchestrator listens on.")
    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Git-ignored folder for models, venvs, db."
    )

    vllm_url: HttpUrl = Field(
        HttpUrl("http://127.0.0.1:8001"), description="Base URL of the vLLM OpenAI server."
    )
    vllm_replica_urls: list[HttpUrl] = Field(
        default_factory=list,
        description="The vLLM replicas behind a router at vllm_url (JSON list): /health lists "
        "them, and the block size is read from the first (a router has no /metrics).",
    )
    model: str | None = Field(
        None, description="Model name or folder served by vLLM; default: the prepared SmolLM2."
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer folder or Hugging Face id; default: the model folder."
    )
    block_size: int | None = Field(
        None, ge=1, description="KV block size; default: read from vLLM's /metrics."
    )
    request_timeout_s: float = Field(60.0, gt=0, description="Timeout for vLLM requests.")
    connect_timeout_s: float = Field(3.0, gt=0, description="Timeout to connect to vLLM.")

    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="PostgreSQL URL; when unset an embedded PostgreSQL runs in the data folder.",
    )

    datasets_dir: Path = Field(
        Path(__file__).resolve().parent.parent / "datasets",
        description="Text-to-SQL datasets (schema.sql, seed.sql, questions.jsonl per folder).",
    )
    enable_database: bool = Field(
        True, description="Start/connect PostgreSQL (off for a pure chat deployment)."
    )
    load_tokenizer: bool = Field(
        True, description="Load the tokenizer at start (needed for sessions and warm-ups)."
    )

    server_secret: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_hex(32)),
        description="Secret that tenant cache salts are derived from (HMAC).",
    )
    warm_priority: int = Field(10, description="vLLM priority of warm-ups (lower runs first).")
    final_priority: int = Field(0, description="vLLM priority of final requests.")
    warmups_per_second: float = Field(
        50.0, gt=0, description="Global bound on warm-ups sent to vLLM per second."
    )
    typing_pause_ms: int = Field(
        400,
        ge=50,
        description="Shortest idle time after a keystroke that warms the submit-ready prompt.",
    )
    typing_pause_factor: float = Field(
        2.5,
        ge=0.0,
        description="A typing pause also lasts this many times the typist's median inter-key "
        "interval (0: the fixed minimum alone).",
    )
    # -- the warm-up scheduler (`core/warming/scheduler.py`) ---------------------------------
    warm_piece_tokens: int = Field(
        256,
        ge=16,
        description="Uncached tokens a warm-up piece computes at most (rounded down to whole "
        "blocks): a final waits behind at most one piece per running warm-up.",
    )
    warm_pieces_in_flight: int | None = Field(
        None,
        ge=1,
        description="Warm-up pieces inside one engine at once; unset: as many as fill half "
        "of an engine step (`engine_step_tokens`, `engine_chunk_tokens`).",
    )
    warm_pieces_while_finals: int = Field(
        1,
        ge=1,
        description="Pieces inside one engine at once while a final waits for its first token.",
    )
    final_room_s: float = Field(
        5.0,
        gt=0,
        description="Longest time one final request keeps warm-ups at `warm_pieces_while_"
        "finals` (a non-streamed final would otherwise keep them there for its whole answer).",
    )
    engine_step_tokens: int = Field(
        512, ge=1, description="vLLM's --max-num-batched-tokens (what `vllm_launch` sets on CPU)."
    )
    engine_chunk_tokens: int | None = Field(
        128,
        ge=0,
        description="vLLM's --long-prefill-token-threshold: the most tokens a running prefill "
        "gets of a step (0 or unset: no cap).",
    )
    max_finals_per_tenant: int = Field(
        16, ge=1, description="Final requests one tenant may have in progress at once (429)."
    )
    max_tokens: int = Field(256, ge=1, description="Default max_tokens of a final request.")
    kv_events_url: str | None = Field(
        None,
        pattern=r"^(tcp|ipc)://",
        description="vLLM's KV event PUB endpoint (tcp://host:port); unset: the orchestrator "
        "believes its own arithmetic of what is cached. `--launch-vllm` sets it.",
    )
    kv_events_replay_url: str | None = Field(
        None,
        pattern=r"^(tcp|ipc)://",
        description="vLLM's KV event replay endpoint, to catch up after a gap.",
    )
    rewarms_per_pause: int = Field(
        2,
        ge=0,
        description="Times a session's evicted blocks are warmed again between two keystrokes "
        "(KV events only; 0: never).",
    )
    rewarm_idle_s: float = Field(
        300.0, gt=0, description="No re-warm after eviction for a session idle this long."
    )

    popularity_enabled: bool = Field(
        True,
        validation_alias=renamed("popularity_enabled", "prefix_trace"),
        description="Record the prefixes of final requests and landed warm-ups (block-hash "
        "chains and token ids, per tenant) and keep a popularity index of them: re-warmed "
        "when vLLM (re)starts, listed by GET /v1/hints. In the database when there is one.",
    )
    popularity_retention_hours: float = Field(
        168.0,
        gt=0,
        validation_alias=renamed("popularity_retention_hours", "trace_retention_hours"),
        description="Popularity rows older than this are deleted (and not loaded).",
    )
    popularity_opt_out_tenants: list[str] = Field(
        default_factory=list,
        validation_alias=renamed("popularity_opt_out_tenants", "trace_opt_out_tenants"),
        description='Tenants whose requests are never recorded, as JSON: ["tenant-a"]; their '
        "rows are deleted at start.",
    )
    popularity_half_life_s: float = Field(
        3600.0, gt=0, description="Half-life of a prefix's popularity score, in seconds."
    )
    popularity_warm_weight: float = Field(
        0.25,
        ge=0.0,
        description="What a landed warm-up counts in the popularity index (a final counts 1).",
    )
    rewarm_top_k: int = Field(
        8, ge=0, description="Contexts per cache scope re-warmed when vLLM starts (0: none)."
    )
    rewarm_budget_tokens: int = Field(
        60_000, ge=0, description="Prompt tokens a re-warm may ask vLLM to prefill in all."
    )
    rewarm_budget_s: float = Field(
        300.0, gt=0, description="Seconds a re-warm may take; what is left is skipped."
    )
    rewarm_min_score: float = Field(
        0.5,
        ge=0.0,
        description="Least decayed score of a context worth re-warming (and listed as a hint); "
        "0.5: one request within the last half-life.",
    )
    rewarm_before_ready: bool = Field(
        False,
        description="Wait for the start-up re-warm (within its budget) before serving; "
        "otherwise it runs while the service serves, its progress on /health.",
    )
    states_max_per_tenant: int = Field(
        32, ge=1, description="Named prefix states (POST /v1/states) a tenant may hold at once."
    )
    states_max_tokens_per_tenant: int = Field(
        65_536,
        ge=1,
        description="Tokens a tenant's live states may hold in all (blocks shared between a "
        "state and its forks counted once).",
    )
    state_default_ttl_s: int = Field(
        3600, ge=1, description="Time to live of a state created without ttl_s."
    )
    state_max_ttl_s: int = Field(86_400, ge=1, description="Longest ttl_s a state may ask for.")
    state_touch_interval_s: float = Field(
        60.0,
        gt=0,
        description="Live states are warmed again (at the warm-up priority) this often, so "
        "vLLM's LRU keeps their blocks; with KV events also at once when a chain is evicted.",
    )

    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description='API key -> tenant, as JSON: {"key-a": "tenant-a"}. Empty: no auth.',
    )
    admin_api_keys: list[str] = Field(
        default_factory=list,
        description='Admin keys, as JSON: ["key"]; they read GET /logs, /status and /metrics '
        "(not the tenants' endpoints). With no key configured at all, /logs answers loopback "
        "clients only.",
    )
    allow_remote_without_keys: bool = Field(
        False, description="Listen beyond loopback even though no API key is configured."
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Origins allowed on the WebSocket besides the same one."
    )
    ws_max_message_bytes: int = Field(65_536, ge=1024, description="Largest WebSocket frame.")
    ws_frames_per_second: float = Field(60.0, gt=0, description="Frames per second per session.")
    max_sessions: int = Field(2000, ge=1, description="WebSocket sessions in all.")
    max_sessions_per_tenant: int = Field(200, ge=1, description="WebSocket sessions per tenant.")
    max_warmups_in_flight: int = Field(64, ge=1, description="Warm-ups outstanding in all.")
    http_max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest HTTP request body.")

    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text, or as JSON objects (ts, level, logger, message, "
        "request_id, session_id).",
    )
    vllm_log_file: Path | None = Field(
        None,
        description="vLLM's log, tailed by GET /logs; default: the one the launcher writes, "
        "<data_dir>/logs/vllm-<port of vllm_url>.log.",
    )

    # -- answer before Enter (`core/answering/speculation.py`) -------------------------------------
    speculate: Literal["off", "idle", "on"] = Field(
        "off",
        description="Send the submit-ready prompt as a speculative final at the warm-up "
        "priority, attached at submit when the prompt is the same: `on` always, `idle` only "
        "while no final request waits for its first token and no warm-up piece queues.",
    )
    speculate_tokens: int = Field(
        16, ge=1, le=256, description="Tokens a speculation generates until a submit attaches it."
    )

    # --- hardening: the names the service answers to --------------------------------------
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Names a request's Host may carry besides localhost, 127.0.0.1, ::1 and "
        'the configured host, as JSON: ["app.example.com", "*.example.com"] ("*": any Host; '
        "it never vouches for a WebSocket Origin). Other Hosts get 400 (DNS rebinding).",
    )

    @model_validator(mode="before")
    @classmethod
    def _accept_old_names(cls, data: object) -> object:
        """A renamed setting given under its old name (keyword or variable) is taken, with a
        deprecation line; a keyword wins over a variable, as everywhere."""
        if not isinstance(data, dict):
            return data
        environ = {name.upper() for name in os.environ}
        for new, old in RENAMED.items():
            if old in data:
                log.warning("setting %s is deprecated: it is now %s", old, new)
                variables = {new, (ENV_PREFIX + new).lower(), (ENV_PREFIX + old).lower(), old}
                value = data.get(new, data[old])  # both: the new name's
                data = {k: v for k, v in data.items() if k not in variables} | {new: value}
            elif (ENV_PREFIX + old).upper() in environ:
                old_variable, variable = (ENV_PREFIX + old).upper(), (ENV_PREFIX + new).upper()
                log.warning("setting %s is deprecated: it is now %s", old_variable, variable)
        return data

    @model_validator(mode="after")
    def _default_ttl_within_max(self) -> Settings:
        if self.state_default_ttl_s > self.state_max_ttl_s:
            raise ValueError("state_default_ttl_s must not exceed state_max_ttl_s")
        return self

    @model_validator(mode="after")
    def _no_open_remote_without_keys(self) -> Settings:
        loopback = self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")
        if not loopback and not self.api_keys and not self.allow_remote_without_keys:
            raise ValueError(
                f"host {self.host} is not loopback and no API key is set: set PREFILL_API_KEYS, "
                "or PREFILL_ALLOW_REMOTE_WITHOUT_KEYS=true"
            )
        return self

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def default_model_dir(self) -> Path:
        return self.data_dir / "models" / DEFAULT_MODEL_DIRNAME

    @property
    def model_path(self) -> str:
        """What vLLM serves and what the tokenizer loads when none is named."""
        return self.model or str(self.default_model_dir)

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer or self.model_path

    @property
    def vllm_base_url(self) -> str:
        return str(self.vllm_url).rstrip("/")

    @property
    def vllm_log_path(self) -> Path:
        """vLLM's log: as set, else in the data folder, named after vLLM's port (where
        `--launch-vllm` writes it)."""
        if self.vllm_log_file is not None:
            return self.vllm_log_file
        port = urlsplit(self.vllm_base_url).port or 8001
        return self.data_dir / "logs" / f"vllm-{port}.log"
