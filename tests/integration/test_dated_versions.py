"""Dated versions over the real services: real Milvus (the filter expressions), real Redis (the
answer cache), real embedder. A regulation in two versions that share ``version_of`` and state
their 시행일 in a 부칙, a pilot with an explicit window, and an undated document; questions ask
``as_of`` the days around each boundary."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.integration.conftest import QUERY_AUTH, ingest, query_settings, running


def travel_rules(daily: str, since: str) -> str:
    return (
        "출장 여비 규정\n\n"
        "제1조(목적) 이 규정은 임직원의 출장 여비 지급에 관한 사항을 정함을 목적으로 한다.\n\n"
        f"제8조(일비) ① 국내 출장의 일비는 하루 {daily}으로 한다.\n"
        "② 일비는 출발일부터 귀임일까지의 출장 일수에 따라 지급한다.\n\n"
        "제9조(숙박비) 숙박비는 실비로 지급하되 1박 10만원을 넘을 수 없다.\n\n"
        f"부칙\n이 규정은 {since}부터 시행한다.\n"
    )


DOCUMENTS: list[dict[str, Any]] = [
    {
        "doc_id": "travel-2024",
        "title": "출장 여비 규정",
        "text": travel_rules("2만원", "2024년 1월 1일"),
        "metadata": {"version_of": "travel"},
    },
    {
        "doc_id": "travel-2025",
        "title": "출장 여비 규정",
        "text": travel_rules("3만원", "2025년 3월 1일"),
        "metadata": {"version_of": "travel"},
    },
    {
        "doc_id": "pilot",
        "title": "Remote work pilot",
        "text": "Remote work pilot. During the pilot, staff may work from home two days a week.",
        "metadata": {"effective_from": "2025-01-01", "effective_to": "2025-06-30"},
    },
    {
        "doc_id": "cafeteria",
        "title": "Cafeteria",
        "text": "The cafeteria opens at eight and serves lunch until two.",
    },
]
TRAVEL_QUESTION = "국내 출장의 일비는 하루에 얼마인가요?"
PILOT_QUESTION = "May staff work from home during the remote work pilot?"


@pytest.fixture(scope="module")
async def loaded(indexing_client: httpx.AsyncClient) -> str:
    collection = "t_dated_" + uuid.uuid4().hex[:8]
    job = await ingest(indexing_client, collection, DOCUMENTS)
    assert job["state"] == "succeeded", job
    return collection


@pytest.fixture(scope="module")
async def extractive_client(data_servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    """The query service without an LLM: /v1/retrieve and extractive answers need none."""
    settings = query_settings(data_servers, answer_mode="extractive")
    async with running(build_query_app(settings)) as client:
        yield client


async def retrieved(
    client: httpx.AsyncClient, collection: str, question: str, as_of: str | None = None
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"collection": collection, "question": question, "top_k": 10}
    if as_of is not None:
        body["as_of"] = as_of
    response = await client.post("/v1/retrieve", json=body, headers=QUERY_AUTH)
    assert response.status_code == 200, response.text
    citations: list[dict[str, Any]] = response.json()["citations"]
    return citations


async def documents(*args: Any) -> set[str]:
    return {c["doc_id"] for c in await retrieved(*args)}


@pytest.mark.parametrize(
    ("as_of", "travel"),
    [
        ("2023-12-31", set()),  # the day before the first version
        ("2024-01-01", {"travel-2024"}),  # the day of
        ("2024-01-02", {"travel-2024"}),  # the day after
        ("2025-02-28", {"travel-2024"}),  # the day before the second version
        ("2025-03-01", {"travel-2025"}),  # the day of
        ("2025-03-02", {"travel-2025"}),  # the day after
        (None, {"travel-2025"}),  # today: the current version only
    ],
)
async def test_a_question_sees_the_version_in_force_on_its_date(
    extractive_client: httpx.AsyncClient, loaded: str, as_of: str | None, travel: set[str]
) -> None:
    found = await documents(extractive_client, loaded, TRAVEL_QUESTION, as_of)
    assert found & {"travel-2024", "travel-2025"} == travel
    assert "cafeteria" in found  # undated documents are always in force


@pytest.mark.parametrize(
    ("as_of", "visible"),
    [
        ("2024-12-31", False),
        ("2025-01-01", True),  # effective_from, inclusive
        ("2025-06-30", True),  # effective_to, inclusive
        ("2025-07-01", False),
        (None, False),  # ended before today
    ],
)
async def test_an_explicit_window_bounds_a_document(
    extractive_client: httpx.AsyncClient, loaded: str, as_of: str | None, visible: bool
) -> None:
    assert ("pilot" in await documents(extractive_client, loaded, PILOT_QUESTION, as_of)) is visible


async def test_a_named_article_comes_first(
    extractive_client: httpx.AsyncClient, loaded: str
) -> None:
    citations = await retrieved(extractive_client, loaded, "제9조는 무슨 내용인가요?", "2025-03-01")
    assert citations[0]["doc_id"] == "travel-2025"
    assert "제9조" in citations[0]["section"]


async def test_the_answer_cache_keeps_dates_apart(
    extractive_client: httpx.AsyncClient, loaded: str
) -> None:
    async def cited(as_of: str) -> tuple[set[str], bool]:
        body = {"collection": loaded, "question": TRAVEL_QUESTION, "as_of": as_of}
        response = await extractive_client.post("/v1/query", json=body, headers=QUERY_AUTH)
        assert response.status_code == 200, response.text
        answer = response.json()
        return {c["doc_id"] for c in answer["citations"]}, answer["cached"]

    old, _ = await cited("2025-02-28")
    new, cached = await cited("2025-03-01")
    assert "travel-2024" in old and "travel-2025" not in old
    assert "travel-2025" in new and "travel-2024" not in new and cached is False
    assert (await cited("2025-03-01"))[1] is True  # the same date is a cache hit


async def test_a_bad_date_is_a_422(extractive_client: httpx.AsyncClient, loaded: str) -> None:
    body = {"collection": loaded, "question": TRAVEL_QUESTION, "as_of": "2025-02-30"}
    response = await extractive_client.post("/v1/retrieve", json=body, headers=QUERY_AUTH)
    assert response.status_code == 422
    assert "error" in response.json()


async def test_a_bad_effective_date_fails_that_document_in_the_job(
    indexing_client: httpx.AsyncClient,
) -> None:
    bad = {"doc_id": "bad", "text": "Leave rules.", "metadata": {"effective_from": "March 2025"}}
    job = await ingest(indexing_client, "t_dated_bad_" + uuid.uuid4().hex[:8], [bad])
    assert job["state"] == "failed" and "effective_from" in str(job["errors"]), job
