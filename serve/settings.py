"""The one typed configuration object, built at the edge (CLI / app start) and passed down.

Sources, highest priority first: constructor arguments, environment variables
(``TAGSMITH_`` prefix, ``__`` for nesting, e.g. ``TAGSMITH_LLM__BACKEND=openai``), a TOML
file (``TAGSMITH_CONFIG`` or ``./tagsmith.toml`` when present), then the defaults below.
Core packages never read settings themselves: they take plain constructor arguments.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from serve.attribute_selection import SelectionField


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/tagsmith`` (``~/.local/share/tagsmith``): all state lives below it."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "tagsmith"


class LLMSettings(BaseModel):
    backend: Literal["embedded", "openai"] = "embedded"
    model: str | None = Field(
        default=None,
        description="embedded: a GGUF file or model directory (default: packaged SmolLM2-135M-Instruct); "
        "openai: the served model name (default 'tagsmith').",
    )
    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8001/v1; several, "
        "comma-separated, make a pool of endpoints serving the same model (as base_urls)",
    )
    base_urls: list[str] = Field(
        default_factory=list,
        description="openai: several servers of the same model, balanced by this process "
        "(least outstanding requests, failing ones ejected and probed; docs/vllm.md). "
        "Environment: JSON, '[\"http://a:8001/v1\", \"http://b:8001/v1\"]'",
    )
    eject_s: float = Field(
        default=2.0, gt=0,
        description="openai pool: how long a failing endpoint is out before its first probe "
        "(doubled after each failed probe)",
    )
    eject_max_s: float = Field(default=60.0, gt=0, description="openai pool: the longest back-off between probes")
    model_dir: str | None = Field(
        default=None,
        description="openai: the model directory the server serves (`tagsmith llm serve` prints it); "
        "a fine-tuned model's manifest there gives the prompt shape it was trained on",
    )
    api_key: SecretStr = SecretStr("EMPTY")
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(
        default=2, ge=0, le=10,
        description="openai: retries of a failed request (connect, timeout, 5xx); with a pool, each on "
        "another endpoint",
    )
    max_concurrency: int = Field(
        default=32, ge=1, description="parallel requests sent to an openai backend (per endpoint of a pool)"
    )
    structured_output: Literal["json_schema", "json_object", "vllm"] = Field(
        default="json_schema",
        description="openai: how the schema is enforced: json_schema (vLLM, llama-server), "
        "vllm (extra_body structured_outputs), json_object (llama-cpp-python's server)",
    )
    n_ctx: int = Field(default=2048, ge=256, description="embedded: context window in tokens")
    n_threads: int | None = Field(default=None, ge=1, description="embedded: CPU threads (default: all cores)")

    @model_validator(mode="after")
    def _one_list_of_endpoints(self) -> LLMSettings:
        if self.base_url is not None and "," in self.base_url:
            if self.base_urls:
                raise ValueError("set llm.base_url or llm.base_urls, not both")
            self.base_urls = [u.strip() for u in self.base_url.split(",") if u.strip()]
            self.base_url = None
        if self.base_url is not None and self.base_urls:
            raise ValueError("set llm.base_url or llm.base_urls, not both")
        if len(self.base_urls) == 1:  # one URL is the plain backend, whichever way it was given
            self.base_url, self.base_urls = self.base_urls[0], []
        if len(set(self.base_urls)) != len(self.base_urls):
            raise ValueError("llm.base_urls lists an endpoint twice")
        if self.eject_max_s < self.eject_s:
            raise ValueError("llm.eject_max_s must be at least llm.eject_s")
        return self

    def endpoints(self) -> list[str]:
        """Every configured base URL (one, several, or none)."""
        return list(self.base_urls) if self.base_urls else [self.base_url] if self.base_url else []


class EmbedderSettings(BaseModel):
    backend: Literal["sentence-transformers", "hashing"] = Field(
        default="sentence-transformers",
        description="sentence-transformers (the real model) or hashing (hashed word and "
        "character n-grams, no model: for tests and development only, lexical matching)",
    )
    model: str | None = Field(
        default=None,
        description="a sentence-transformers model directory (default: packaged all-MiniLM-L6-v2)",
    )
    batch_size: int = Field(default=64, ge=1)
    device: str | None = Field(default=None, description="cpu, cuda… (default: cuda when visible)")
    num_threads: int | None = Field(
        default=None, ge=1, le=1024,
        description="torch's CPU threads for this process (default: torch's, one per core): set it to "
        "each replica's share of the cores when several replicas share a host, else their threads "
        "oversubscribe the cores (docs/benchmarks.md, \"1 vs 3 replicas\")",
    )
    runtime: Literal["torch", "onnx", "openvino"] = Field(
        default="torch",
        description="who runs the model on CPU: torch, or onnx / openvino on a graph exported "
        "locally from the same weights (the same vectors up to float rounding: indexes are shared; "
        "pip install 'tagsmith[onnx]' / 'tagsmith[openvino]')",
    )
    quantize: Literal["none", "int8"] = Field(
        default="none",
        description="int8: dynamic int8 quantisation on CPU (torch's, or ONNX Runtime's with the "
        "onnx/openvino runtimes): faster, other vectors (another embedder name: the index is "
        "rebuilt), MWPD WAF1 in docs/benchmarks.md",
    )
    bulk_runtime: Literal["auto", "torch", "onnx", "openvino"] = Field(
        default="auto",
        description="the runtime of bulk tagging (tag-file): auto = the fastest float32 runtime "
        "installed (openvino, then onnx, else torch; torch on a GPU), measured in docs/benchmarks.md",
    )


class TaggingSettings(BaseModel):
    pipeline: Literal["hybrid", "knn", "zero-shot", "rag", "cascade"] = Field(
        default="hybrid",
        description="hybrid (embedding neighbours + lexical classifier, no LLM), knn "
        "(neighbours only), zero-shot, rag, or cascade (hybrid when retrieval is confident, "
        "else rag). hybrid until the evals show an LLM pipeline beating it: the untuned "
        "SmolLM2 lowers accuracy (docs/benchmarks.md)",
    )
    llm_weight: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="LLM share in the blend with the vote (default: the weight fitted for a fine-tuned "
        "model, in its manifest; else 0.3)",
    )
    review_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="needs_review below this confidence; unset: the threshold fitted for the index "
        "generation in use (reaching target_precision on held-out examples), 0.5 when none was fitted "
        "(tiny pool) and for the rag / zero-shot pipelines. A value set here always wins",
    )
    target_precision: float = Field(
        default=0.95, gt=0.0, le=1.0,
        description="precision the unflagged answers should reach: every index publication fits the "
        "lowest review threshold whose held-out answers above it are this often right",
    )
    reask_budget: int = Field(default=2, ge=0, le=5)
    attributes: SelectionField = Field(
        default="on",
        description="which of the chosen category's attributes to tag when a request does not "
        "say (`?attributes=`, `--attributes`): on (all), off (none), or a list of attribute ids "
        "or names (TOML list; env as JSON, e.g. '[\"Color\", \"Size\"]')",
    )
    attribute_review_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="needs_review when an attribute value's confidence is below this",
    )


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    on_llm_unavailable: Literal["error", "degrade"] = Field(
        default="error",
        description="LLM backend down while tagging with an LLM pipeline: error (503 with "
        "Retry-After) or degrade (the retrieval-only answer, flagged degraded=true)",
    )
    engine_workers: int = Field(default=2, ge=1, le=16, description="tagging batches run at once")
    refresh_interval_s: float = Field(
        default=5.0, ge=0.0,
        description="how often to pick up taxonomy versions and index generations published "
        "by other processes (the CLI); 0 disables",
    )
    # slow clients (serve/http_protocol.py, serve/body_timeout.py)
    header_timeout_s: float = Field(
        default=10.0, gt=0, description="longest wait for a complete request head, from the "
        "connection or the previous response; trickled bytes do not extend it (408 / closed)",
    )
    body_timeout_s: float = Field(
        default=30.0, gt=0, description="longest wait for the next part of a request body (408)",
    )
    body_min_rate_bytes_s: int = Field(
        default=1024, ge=1, description="after body_timeout_s, a request body must keep arriving at "
        "this average rate: it may take body_timeout_s + bytes received / this rate (408 beyond), so "
        "a byte-a-second trickle is cut while a large upload on a slow link is not",
    )
    max_connections: int | None = Field(
        default=1000, ge=1, description="connections (or requests in progress) at once; beyond, "
        "503 with Retry-After; unset: no cap",
    )
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses of reverse proxies whose X-Forwarded-For/-Proto "
        "are believed (uvicorn's forwarded_allow_ips; '*' trusts any). Empty: none, the client "
        "address is the peer's; behind a proxy, name it, or every client shares the proxy's "
        "address (and its failed-authentication budget)",
    )


class AuthSettings(BaseModel):
    dev_mode: bool = Field(
        default=False,
        description="no API keys: every request gets every scope. Local development only.",
    )
    admin_key: SecretStr | None = Field(
        default=None,
        description="an admin key given by configuration (e.g. from a secret manager) in "
        "addition to the keys of `tagsmith keys`; at least 32 characters, no placeholder",
    )
    outage_key_ttl_s: float = Field(
        default=300.0, ge=0, le=86400,
        description="while the database is unreachable, a key this replica verified against it "
        "within the last this many seconds is still accepted (the tagging endpoints need no "
        "database); 0: every key check needs the database. While the database is up every "
        "request's key is checked in it, so a revocation counts everywhere at once",
    )


class LimitSettings(BaseModel):
    max_body_bytes: int = Field(default=1 << 20, ge=1024, description="JSON request bodies (413 above)")
    max_job_bytes: int = Field(default=64 << 20, ge=1024, description="JSONL job uploads (413 above)")
    max_batch_items: int = Field(default=64, ge=1, le=4096, description="products per POST /v1/tags:batch")
    max_job_items: int = Field(default=100_000, ge=1, description="lines per job")
    max_concurrent_uploads: int = Field(
        default=4, ge=1, le=64, description="job uploads read at once (503 with Retry-After above)"
    )
    max_json_depth: int = Field(
        default=64, ge=2, le=256, description="nesting of JSON bodies and job lines (422 above)"
    )
    rate_per_s: float = Field(default=50.0, gt=0, description="requests per second per API key")
    rate_burst: int = Field(default=100, ge=1, description="requests a key may send at once")
    max_queue_items: int = Field(
        default=4096, ge=1, description="products waiting for the tagging engine (503 above)"
    )
    # failed authentications per client address (serve/api/auth_failures.py)
    auth_failures_per_min: float = Field(
        default=10.0, gt=0, description="failed authentications a client address may make a minute, "
        "sustained; beyond that and the burst, its requests with a key get 429 until the budget refills",
    )
    auth_failure_burst: int = Field(default=20, ge=1, description="failed authentications at once per address")
    auth_failure_clients: int = Field(
        default=100_000, ge=1, description="addresses tracked (memory bound); the oldest is forgotten first",
    )
    history_reads_at_once: int = Field(
        default=1, ge=1, le=64,
        description="old taxonomy versions rebuilt, and diffs / migration maps computed, at once "
        "across all keys (CPU-heavy; cached results do not count); others wait history_wait_s, then 503",
    )
    history_wait_s: float = Field(default=1.0, ge=0.0, le=30.0, description="see history_reads_at_once")
    history_cpu_share: float = Field(
        default=0.05, gt=0.0, le=1.0,
        description="share of one core a key may spend, sustained, on old-version rebuilds and "
        "comparisons: their measured CPU time is taken from a per-key budget of CPU seconds that "
        "refills at this rate; once spent, such reads get 429 until it refills (other requests "
        "of the key are not affected)",
    )
    history_cpu_burst_s: float = Field(
        default=2.0, gt=0.0, le=60.0,
        description="CPU seconds of such reads a key may spend at once (~5 rebuilds of the 10k-node default)",
    )


class UISettings(BaseModel):
    reports_dir: Path | None = Field(
        default=None,
        description="where the UI finds eval reports and runs (directories written by "
        "`tagsmith eval report --out DIR` / `tagsmith eval run --out DIR`); default: "
        "<data_dir>/reports",
    )
    session_idle_s: float = Field(
        default=8 * 3600.0, gt=0, description="a UI session ends after this long without a request",
    )


class JobSettings(BaseModel):
    batch_size: int = Field(
        default=32, ge=1, le=1024,
        description="products per batch: a worker claims, tags and writes a batch at a time (fixed for a job when it is created)",
    )
    lease_s: float = Field(
        default=30.0, ge=0.5, le=3600.0,
        description="how long a worker's claim on a batch lasts without a heartbeat (extended every third of it "
        "while tagging): a replica killed mid-batch loses its batches to the other replicas after this long",
    )


class ReviewSettings(BaseModel):
    enqueue: bool = Field(
        default=False,
        description="put results flagged needs_review from POST /v1/tags, /v1/tags:batch and jobs "
        "into the review queue when the request or job does not say (`?review=true|false`)",
    )
    claim_ttl_s: float = Field(
        default=900.0, ge=10.0, le=86400.0,
        description="how long a reviewer's claim on an item lasts; then the item is back in the queue",
    )
    max_claim: int = Field(default=50, ge=1, le=500, description="items one claim-next call may take")
    enqueue_buffer: int = Field(
        default=10_000, ge=1,
        description="flagged results waiting to be written to the queue (in the background); beyond, "
        "they are dropped (logged), never slowing or failing the tagging response",
    )


StoreName = Literal["taxonomy", "keys", "feedback", "review", "jobs"]
#: each store's SQLite file in the data directory (the default, embedded layout)
SQLITE_FILES: dict[StoreName, str] = {
    "taxonomy": "taxonomy.db", "keys": "keys.db", "feedback": "feedback.db", "review": "review.db",
    "jobs": "jobs/jobs.db",
}


class DatabaseSettings(BaseModel):
    url: SecretStr | None = Field(
        default=None,
        description="where the service's state lives (taxonomy versions, API keys, feedback, the "
        "review queue, jobs): a SQLAlchemy URL, e.g. postgresql+psycopg://tagsmith:PASSWORD@db:5432/tagsmith "
        "for state shared by several replicas; unset: SQLite files in data_dir (taxonomy.db, keys.db, "
        "feedback.db, review.db, jobs/jobs.db). Also read from TAGSMITH_DATABASE_URL. A secret (it may hold a "
        "password): never shown in errors or logs",
    )
    auto_upgrade: bool = Field(
        default=True,
        description="upgrade the stores' schemas (migrations) when the service or a CLI command starts, "
        "serialised so that replicas starting together upgrade once; false: a pending upgrade refuses the "
        "start until `tagsmith db upgrade` has run (a release step). A database newer than the code is "
        "refused either way",
    )

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        try:
            backend = make_url(value.get_secret_value()).get_backend_name()
        except ArgumentError:
            raise ValueError("not a database URL (dialect+driver://user:password@host:port/database)") from None
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database {backend!r}: use postgresql+psycopg://… or sqlite:///…")
        return value

    @property
    def url_value(self) -> str | None:
        """The URL itself (``url`` is kept secret everywhere else)."""
        return self.url.get_secret_value() if self.url is not None else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TAGSMITH_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
        hide_input_in_errors=True,  # secrets (the database URL's password, keys) stay out of errors
    )

    data_dir: Path = Field(default_factory=default_data_dir, description="one directory for all state")
    llm: LLMSettings = LLMSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    tagging: TaggingSettings = TaggingSettings()
    server: ServerSettings = ServerSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitSettings = LimitSettings()
    jobs: JobSettings = JobSettings()
    review: ReviewSettings = ReviewSettings()
    ui: UISettings = UISettings()
    database: DatabaseSettings = DatabaseSettings()
    database_url: SecretStr | None = Field(
        default=None, exclude=True,
        description="TAGSMITH_DATABASE_URL, the conventional name: the same as database.url",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = config_file()
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _one_database_url(self) -> Settings:
        alias = self.database_url.get_secret_value() if self.database_url is not None else ""
        if alias:
            if self.database.url_value and self.database.url_value != alias:
                raise ValueError("TAGSMITH_DATABASE_URL and database.url disagree: set one")
            self.database = DatabaseSettings(url=self.database_url)
        return self

    @property
    def reports_dir(self) -> Path:
        """Eval reports the UI lists (``ui.reports_dir``, default ``<data_dir>/reports``)."""
        return self.ui.reports_dir if self.ui.reports_dir is not None else self.data_dir / "reports"

    def store_location(self, store: StoreName) -> Path | str:
        """Where ``store`` lives: ``database.url`` when set, else its SQLite file in the data
        directory (a Path); what the stores' constructors and ``serve.database.open_engine`` take."""
        url = self.database.url_value
        if url:
            return url
        return self.data_dir / SQLITE_FILES[store]

    def store_url(self, store: StoreName) -> str:
        """The SQLAlchemy URL of ``store`` (:meth:`store_location` as a URL)."""
        location = self.store_location(store)
        return f"sqlite:///{location}" if isinstance(location, Path) else location

    @property
    def taxonomy_db_url(self) -> str:
        return self.store_url("taxonomy")


def config_file() -> Path | None:
    """The TOML config file in effect: ``$TAGSMITH_CONFIG``, else ``./tagsmith.toml`` if present."""
    explicit = os.environ.get("TAGSMITH_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"TAGSMITH_CONFIG points to a missing file: {path}")
        return path
    local = Path("tagsmith.toml")
    return local if local.is_file() else None


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
