"""`make up` with DOCQA_LLM_ENDPOINTS set: the services use that LLM, no local vLLM is installed
or started."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deploy import stack

KEYS = {"DOCQA_QUERY_KEY": "q" * 30, "DOCQA_ADMIN_KEY": "a" * 30}
LLM_VARS = (
    "DOCQA_LLM_ENDPOINTS",
    "DOCQA_LLM_MODEL",
    "DOCQA_LLM_API_KEY",
    "DOCQA_ANSWER_MODE",
    "DOCQA_UP_MODEL",
)


@pytest.fixture(autouse=True)
def no_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LLM_VARS:
        monkeypatch.delenv(name, raising=False)


def test_without_an_endpoint_the_local_vllm_serves() -> None:
    assert stack.external_llm_env() is None
    env = stack.service_env(stack.StackPorts(), KEYS)
    assert env["DOCQA_LLM_ENDPOINTS"] == "http://127.0.0.1:8010/v1"
    assert env["DOCQA_LLM_MODEL"] == "smollm2"
    assert env["DOCQA_ANSWER_MODE"] == "extractive"  # the bundled model measured below it


def test_an_answer_mode_set_before_up_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_ANSWER_MODE", "auto")
    assert stack.service_env(stack.StackPorts(), KEYS)["DOCQA_ANSWER_MODE"] == "auto"


def test_an_endpoint_set_before_up_replaces_the_local_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCQA_LLM_ENDPOINTS", "http://gpu-1:8000/v1,http://gpu-2:8000/v1")
    monkeypatch.setenv("DOCQA_LLM_MODEL", "qwen2.5-7b-instruct")
    monkeypatch.setenv("DOCQA_LLM_API_KEY", "sk-test")
    env = stack.service_env(stack.StackPorts(), KEYS)
    assert env["DOCQA_LLM_ENDPOINTS"] == "http://gpu-1:8000/v1,http://gpu-2:8000/v1"
    assert env["DOCQA_LLM_MODEL"] == "qwen2.5-7b-instruct"
    assert env["DOCQA_LLM_API_KEY"] == "sk-test"
    assert "DOCQA_ANSWER_MODE" not in env  # a real model: the server's default (auto)


def test_up_with_an_endpoint_installs_and_starts_no_vllm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCQA_LLM_ENDPOINTS", "http://gpu-1:8000/v1")
    started: list[str] = []

    def refuse_setup(*_: Any, **__: Any) -> None:
        raise AssertionError("the local vLLM must not be installed")

    def record(plan: list[tuple[Any, ...]], log: Any) -> None:
        started.extend(spec.name for spec, *_ in plan)

    monkeypatch.setattr(stack, "setup", refuse_setup)
    monkeypatch.setattr(stack, "ensure_redis_server", lambda log: "redis-server")
    monkeypatch.setattr(stack, "_start_and_wait", record)
    monkeypatch.setattr(stack, "load_or_create_keys", lambda paths: KEYS)
    stack.up(stack.StackPaths(tmp_path), log=lambda _: None)
    assert not any(name.startswith("vllm") for name in started)
    assert {"redis", "milvus", "indexing-api", "query-api"} <= set(started)
