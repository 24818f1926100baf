"""What one request may hold beyond its body size: the OpenAI conversation (number and size of
messages) and filters (number of keys, values), refused before any lookup, embedding or
analysis; the settings that bound them, documented; and the analysis of what is admitted kept
off the event loop.

The app is the query service's own ``build_app`` over a fake answerer
(``tests.unit._service_apps``).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import pytest
from llama_index.core.schema import QueryBundle
from pydantic import ValidationError

from indexing.embedding import Embedder as EmbedderSeam
from indexing.store import ChunkStore
from query_engine import retrieval
from services.common.settings import LimitsSettings, QuerySettings
from services.query_api.requests import MAX_FILTER_KEYS
from tests.unit._service_apps import QUERY_AUTH, FakeAnswerer, client_for, query_app

pytestmark = pytest.mark.unit

QUESTION = "How often should the burrs be brushed?"


async def post(answerer: FakeAnswerer, path: str, body: dict[str, Any], **limits: Any) -> Any:
    async with client_for(query_app(answerer, **limits)) as client:
        return await client.post(path, json=body, headers=QUERY_AUTH)


def conversation(turns: int, chars: int = 10, question: str = QUESTION) -> list[dict[str, str]]:
    """``turns`` user/assistant pairs of ``chars`` characters each, then the question."""
    earlier = [
        {"role": role, "content": "x" * chars}
        for _ in range(turns)
        for role in ("user", "assistant")
    ]
    return [*earlier, {"role": "user", "content": question}]


def openai_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """OpenAI's error shape (not docqa's envelope) on the OpenAI route."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    return body["error"]


async def test_a_one_megabyte_history_is_refused_in_openai_shape() -> None:
    """A 1 MB conversation fits the 1 MiB body limit; the route refuses it before condensing,
    embedding or analysing any of it."""
    answerer = FakeAnswerer()
    messages = conversation(1, chars=500_000)
    response = await post(answerer, "/v1/chat/completions", {"model": "kb", "messages": messages})
    error = openai_error(response, 413, "payload_too_large")
    assert error["type"] == "invalid_request_error" and error["param"] == "messages"
    assert "DOCQA_LIMITS_MAX_MESSAGES_CHARS" in error["message"]
    assert answerer.asked == []


async def test_a_korean_one_megabyte_history_is_over_the_body_limit() -> None:
    answerer = FakeAnswerer()
    messages = [{"role": "user", "content": "출장 일비는 얼마인가요? " * 80_000}]
    response = await post(answerer, "/v1/chat/completions", {"model": "kb", "messages": messages})
    assert response.status_code == 413
    assert answerer.asked == []


@pytest.mark.parametrize(
    ("limits", "messages", "status"),
    [
        ({}, conversation(25), 413),  # 51 messages
        ({}, conversation(24), 200),  # 49
        ({"max_messages": 3}, conversation(1), 200),
        ({"max_messages": 3}, conversation(2), 413),
        ({"max_messages_chars": 2000}, conversation(1, 1000, "x" * 1000), 413),  # 3000
        ({"max_messages_chars": 2000}, conversation(1, 500, "x" * 1000), 200),  # exactly 2000
    ],
)
async def test_the_conversation_is_bounded_by_the_settings(
    limits: dict[str, int], messages: list[dict[str, str]], status: int
) -> None:
    answerer = FakeAnswerer()
    body = {"model": "kb", "messages": messages}
    response = await post(answerer, "/v1/chat/completions", body, **limits)
    if status == 200:
        assert response.status_code == 200, response.text
        assert len(answerer.asked) == 1
    else:
        assert openai_error(response, 413, "payload_too_large")["param"] == "messages"
        assert answerer.asked == []


def too_many_filters() -> dict[str, str]:
    return {f"key_{n}": "v" for n in range(MAX_FILTER_KEYS + 1)}


@pytest.mark.parametrize("path", ["/v1/query", "/v1/retrieve"])
async def test_too_many_filter_keys_are_refused_with_422(path: str) -> None:
    answerer = FakeAnswerer()
    body = {"collection": "kb", "question": QUESTION, "filters": too_many_filters()}
    response = await post(answerer, path, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and f"at most {MAX_FILTER_KEYS}" in error["message"]
    assert answerer.asked == []


@pytest.mark.parametrize(
    "filters",
    [
        {"source": {"nested": "object"}},
        {"doc_ids": ["d"] * 101},
        {"bad key!": "v"},
    ],
)
async def test_filters_retrieval_would_refuse_are_refused_before_the_lookup(
    filters: dict[str, Any],
) -> None:
    answerer = FakeAnswerer()
    body = {"collection": "kb", "question": QUESTION, "filters": filters}
    response = await post(answerer, "/v1/query", body)
    assert response.status_code == 422, response.text
    assert answerer.asked == []


async def test_filters_at_the_limit_are_served() -> None:
    answerer = FakeAnswerer()
    filters = {f"key_{n}": ["a", "b"] for n in range(MAX_FILTER_KEYS)}
    body = {"collection": "kb", "question": QUESTION, "filters": filters}
    response = await post(answerer, "/v1/query", body)
    assert response.status_code == 200, response.text
    assert dict(answerer.asked[0].filters) == filters


async def test_too_many_filter_keys_on_the_openai_route_are_a_400_in_its_shape() -> None:
    answerer = FakeAnswerer()
    body = {"model": "kb", "messages": conversation(0), "filters": too_many_filters()}
    response = await post(answerer, "/v1/chat/completions", body)
    openai_error(response, 400, "invalid_request")  # OpenAI sends its 422s as 400s
    assert answerer.asked == []


def test_the_readme_documents_every_limit() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"^\| `(DOCQA_LIMITS_[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == {f"DOCQA_LIMITS_{name.upper()}" for name in LimitsSettings.model_fields}


def test_the_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("DOCQA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DOCQA_LIMITS_MAX_QUERY_BODY_BYTES", "65536")
    monkeypatch.setenv("DOCQA_LIMITS_MAX_MESSAGES", "10")
    monkeypatch.setenv("DOCQA_LIMITS_MAX_MESSAGES_CHARS", "5000")
    settings = QuerySettings()
    assert settings.max_body_bytes == 65536
    assert (settings.limits.max_messages, settings.limits.max_messages_chars) == (10, 5000)


def test_the_conversation_must_hold_the_longest_question() -> None:
    with pytest.raises(ValidationError, match="DOCQA_LIMITS_MAX_MESSAGES_CHARS"):
        LimitsSettings(max_question_chars=5000, max_messages_chars=4000)


async def test_the_questions_analysis_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kiwi's analysis of a question (a condensed follow-up holds the previous question too)
    is CPU work: it runs in a thread while the loop serves other requests."""
    threads: list[int] = []

    def analyze(text: str) -> str:
        threads.append(threading.get_ident())
        return text

    class Store:
        async def require(self, collection: str) -> str:
            return collection

        async def search_dense(self, *args: Any, **kwargs: Any) -> list[Any]:
            return []

        async def search_sparse(self, *args: Any, **kwargs: Any) -> list[Any]:
            return []

    class Embedder:
        async def embed_query(self, text: str) -> Any:
            return np.ones(4, dtype=np.float32)

    monkeypatch.setattr(retrieval, "analyze", analyze)
    retriever = retrieval.HybridRetriever(
        store=cast(ChunkStore, Store()),
        embedder=cast(EmbedderSeam, Embedder()),
        collection="kb",
        config=retrieval.RetrievalConfig(),
    )
    await retriever.aretrieve(QueryBundle("출장 일비는 얼마인가요?"))
    assert threads and threads[0] != threading.get_ident()
