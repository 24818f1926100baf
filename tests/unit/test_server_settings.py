"""ServerSettings and the indexing service's own settings, read from the environment as the
services read them."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from services.common.settings import IndexingSettings, QuerySettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DOCQA_"):
            monkeypatch.delenv(name)


def test_indexing_keeps_its_port_when_other_server_variables_are_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the Kubernetes ConfigMap sets DOCQA_SERVER_HOST for both services
    monkeypatch.setenv("DOCQA_SERVER_HOST", "0.0.0.0")
    monkeypatch.setenv("DOCQA_SERVER_SHUTDOWN_TIMEOUT_S", "45")
    indexing, query = IndexingSettings(), QuerySettings()
    assert (indexing.server.host, indexing.server.port) == ("0.0.0.0", 8001)
    assert (query.server.host, query.server.port) == ("0.0.0.0", 8000)
    assert indexing.server.shutdown_timeout_s == query.server.shutdown_timeout_s == 45


def test_an_explicit_port_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_SERVER_PORT", "9001")
    assert IndexingSettings().server.port == 9001


def test_shutdown_timeout_defaults_to_30_s() -> None:
    assert IndexingSettings().server.shutdown_timeout_s == 30


@pytest.mark.parametrize("value", ["-1", "3601", "soon"])
def test_shutdown_timeout_is_bounded(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DOCQA_SERVER_SHUTDOWN_TIMEOUT_S", value)
    with pytest.raises(ValidationError, match="shutdown_timeout_s"):
        QuerySettings()


def test_job_lease_ttl_is_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_JOB_LEASE_TTL_S", "4.5")
    assert IndexingSettings().job_lease_ttl_s == 4.5
    monkeypatch.setenv("DOCQA_JOB_LEASE_TTL_S", "0.5")
    with pytest.raises(ValidationError, match="job_lease_ttl_s"):
        IndexingSettings()


# --------------------------------------------------------------------------- production mode

LONG_KEYS = {"DOCQA_AUTH_QUERY_KEYS": "q" * 30, "DOCQA_AUTH_ADMIN_KEYS": "a" * 30}


def set_all(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_admin_port_is_off_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert QuerySettings().server.admin_port is None
    monkeypatch.setenv("DOCQA_SERVER_ADMIN_PORT", "9090")
    indexing, query = IndexingSettings(), QuerySettings()
    assert (indexing.server.port, indexing.server.admin_port) == (8001, 9090)
    assert (query.server.port, query.server.admin_port) == (8000, 9090)


def test_admin_port_must_differ_from_the_public_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_SERVER_ADMIN_PORT", "8001")
    with pytest.raises(ValidationError, match="DOCQA_SERVER_ADMIN_PORT must differ"):
        IndexingSettings()


@pytest.mark.parametrize("variable", ["DOCQA_ENVIRONMENT", "DOCQA_ENV"])
def test_either_spelling_turns_production_on(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    set_all(monkeypatch, **{variable: "production"}, **LONG_KEYS)
    assert QuerySettings().environment == IndexingSettings().environment == "production"
    monkeypatch.setenv("DOCQA_AUTH_ADMIN_KEYS", "dev-admin-key")
    with pytest.raises(ValidationError, match="DOCQA_AUTH_ADMIN_KEYS holds a development"):
        QuerySettings()


def test_the_two_spellings_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    set_all(monkeypatch, DOCQA_ENVIRONMENT="production", DOCQA_ENV="development", **LONG_KEYS)
    with pytest.raises(ValidationError, match="disagree"):
        QuerySettings()
    monkeypatch.setenv("DOCQA_ENV", "production")
    assert QuerySettings().environment == "production"


def test_production_refuses_cors_star(monkeypatch: pytest.MonkeyPatch) -> None:
    set_all(monkeypatch, DOCQA_ENVIRONMENT="production", DOCQA_CORS_ORIGINS="*", **LONG_KEYS)
    with pytest.raises(ValidationError, match="DOCQA_CORS_ORIGINS holds '\\*'"):
        IndexingSettings()
    monkeypatch.setenv("DOCQA_CORS_ORIGINS", "https://a.example,https://b.example")
    assert QuerySettings().cors_origins == ["https://a.example", "https://b.example"]


def test_development_allows_cors_star(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_CORS_ORIGINS", "*")
    assert QuerySettings().cors_origins == ["*"]


def test_production_lists_every_problem_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    set_all(
        monkeypatch,
        DOCQA_ENVIRONMENT="production",
        DOCQA_AUTH_QUERY_KEYS="dev-query-key",
        DOCQA_AUTH_ADMIN_KEYS="short",
        DOCQA_CORS_ORIGINS="*",
    )
    with pytest.raises(ValidationError) as caught:
        QuerySettings()
    message = str(caught.value)
    for problem in (
        "DOCQA_AUTH_QUERY_KEYS holds a development or short key",
        "DOCQA_AUTH_ADMIN_KEYS holds a development or short key",
        "DOCQA_CORS_ORIGINS holds '*'",
    ):
        assert problem in message
