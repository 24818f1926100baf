"""The per-request bounds of issue 15 that are not about the body's size: ``top_k``
(``DOCQA_LIMITS_MAX_TOP_K``), documents per ingest request, characters per document, unique
``doc_id``s in one request, and OpenAI's own error shape for a 401 on its route.

Each is refused with a clear 4xx in the service's one envelope (OpenAI's on
``/v1/chat/completions``) and changes nothing: no question reaches the answerer, no job is
queued. Bounds on the conversation itself (number and size of messages) are in
``test_request_limits``; body size and JSON depth in ``test_body_limits``.

The apps are the services' own ``build_app`` over fakes of our seams
(``tests.unit._service_apps``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.unit._service_apps import (
    ADMIN_AUTH,
    QUERY_AUTH,
    FakeAnswerer,
    client_for,
    indexing_app,
    query_app,
)

pytestmark = pytest.mark.unit

QUESTION = "How often should the burrs be brushed?"
DOCUMENTS = "/v1/collections/kb/documents"


def docqa_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """docqa's one envelope, with the status and code asked for."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == code
    return body["error"]


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# --------------------------------------------------------------------------- top_k


def query_body(path: str, top_k: int) -> dict[str, Any]:
    if path == "/v1/chat/completions":
        return {"model": "kb", "messages": [{"role": "user", "content": QUESTION}], "top_k": top_k}
    return {"collection": "kb", "question": QUESTION, "top_k": top_k}


async def ask(path: str, top_k: int, **limits: Any) -> tuple[FakeAnswerer, httpx.Response]:
    answerer = FakeAnswerer()
    async with client_for(query_app(answerer, **limits)) as client:
        response = await client.post(path, json=query_body(path, top_k), headers=QUERY_AUTH)
    return answerer, response


@pytest.mark.parametrize("path", ["/v1/query", "/v1/retrieve"])
@pytest.mark.parametrize(("max_top_k", "top_k"), [(5, 6), (20, 21)])
async def test_top_k_over_the_setting_is_a_422_before_any_lookup(
    path: str, max_top_k: int, top_k: int
) -> None:
    """Under the schema's own bound (200), so it is the setting that refuses it."""
    answerer, response = await ask(path, top_k, max_top_k=max_top_k)
    error = docqa_error(response, 422, "invalid_request")
    assert f"top_k may be at most {max_top_k}" in error["message"]
    assert answerer.asked == []


async def test_top_k_over_the_setting_on_the_openai_route_is_a_400_in_its_shape() -> None:
    answerer, response = await ask("/v1/chat/completions", 6, max_top_k=5)
    error = openai_error(response, 400)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"
    assert "top_k may be at most 5" in error["message"]
    assert answerer.asked == []


@pytest.mark.parametrize("path", ["/v1/query", "/v1/chat/completions"])
async def test_top_k_at_the_setting_is_served_with_that_top_k(path: str) -> None:
    answerer, response = await ask(path, 5, max_top_k=5)
    assert response.status_code == 200, response.text
    assert [asked.top_k for asked in answerer.asked] == [5]


# --------------------------------------------------------------------------- ingest requests


def documents(*ids: str, chars: int = 10) -> dict[str, Any]:
    return {"documents": [{"doc_id": doc_id, "text": "w" * chars} for doc_id in ids]}


async def ingest(body: Any, **limits: Any) -> tuple[Any, httpx.Response]:
    """(the app, so its fake jobs can be inspected; the response)."""
    app = indexing_app(**limits)
    async with client_for(app) as client:
        if isinstance(body, dict):
            response = await client.post(DOCUMENTS, json=body, headers=ADMIN_AUTH)
        else:
            response = await client.post(DOCUMENTS, files=body, headers=ADMIN_AUTH)
    return app, response


async def test_more_documents_than_the_setting_is_a_413_and_queues_nothing() -> None:
    app, response = await ingest(documents("a", "b", "c"), max_documents_per_request=2)
    error = docqa_error(response, 413, "payload_too_large")
    assert "3 documents in one request; the limit is 2" in error["message"]
    assert error["detail"] == {"limit": 2}
    assert app.state.jobs.created == []


async def test_more_files_than_the_setting_is_a_413_and_queues_nothing() -> None:
    files = [("files", (f"{n}.txt", b"some words", "text/plain")) for n in range(3)]
    app, response = await ingest(files, max_documents_per_request=2)
    docqa_error(response, 413, "payload_too_large")
    assert app.state.jobs.created == []


async def test_documents_at_the_setting_are_queued() -> None:
    app, response = await ingest(documents("a", "b"), max_documents_per_request=2)
    assert response.status_code == 202, response.text
    assert app.state.jobs.created == [("kb", 2)]


@pytest.mark.parametrize(("chars", "status"), [(1000, 202), (1001, 413)])
async def test_a_document_over_the_character_limit_is_a_413_and_queues_nothing(
    chars: int, status: int
) -> None:
    body = {
        "documents": [
            *documents("short")["documents"],
            *documents("long", chars=chars)["documents"],
        ]
    }
    app, response = await ingest(body, max_document_chars=1000)
    if status == 202:
        assert response.status_code == 202, response.text
        assert app.state.jobs.created == [("kb", 2)]
        return
    error = docqa_error(response, 413, "payload_too_large")
    assert "'long' has 1001 characters; the limit is 1000" in error["message"]
    assert app.state.jobs.created == []


async def test_a_text_file_over_the_character_limit_is_a_413() -> None:
    files = [("files", ("big.txt", b"w" * 1001, "text/plain"))]
    app, response = await ingest(files, max_document_chars=1000)
    docqa_error(response, 413, "payload_too_large")
    assert app.state.jobs.created == []


async def test_duplicate_doc_ids_in_one_request_are_a_422_and_queue_nothing() -> None:
    app, response = await ingest(documents("a", "b", "a"))
    error = docqa_error(response, 422, "invalid_request")
    assert "doc_id values must be unique within a request" in error["message"]
    assert app.state.jobs.created == []


async def test_two_files_of_the_same_name_are_duplicate_doc_ids() -> None:
    """An uploaded file's doc_id is its base name: two ``a.txt`` in one request (even from
    different folders) would replace each other, so the request is refused."""
    files = [
        ("files", ("x/a.txt", b"first words", "text/plain")),
        ("files", ("y/a.txt", b"other words", "text/plain")),
    ]
    app, response = await ingest(files)
    docqa_error(response, 422, "invalid_request")
    assert app.state.jobs.created == []


# --------------------------------------------------------------------------- 401, OpenAI's shape


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-key-not-a-key-not-a-key"}])
async def test_a_401_on_the_openai_route_of_the_real_app_is_in_openais_shape(
    headers: dict[str, str],
) -> None:
    answerer = FakeAnswerer()
    body = {"model": "kb", "messages": [{"role": "user", "content": QUESTION}]}
    async with client_for(query_app(answerer)) as client:
        chat = await client.post("/v1/chat/completions", json=body, headers=headers)
        query = await client.post(
            "/v1/query", json={"collection": "kb", "question": QUESTION}, headers=headers
        )
    error = openai_error(chat, 401)
    assert error["type"] == "authentication_error" and error["code"] == "unauthorized"
    docqa_error(query, 401, "unauthorized")  # docqa's envelope everywhere else
    assert answerer.asked == []
