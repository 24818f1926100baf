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
