"""Bad input gets the right 4xx in the one error envelope, and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Servers
from tests.integration.conftest import (
    ADMIN_AUTH,
    QUERY_AUTH,
    build_indexing_app,
    indexing_settings,
    running,
)


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_missing_key_is_401(query_client: httpx.AsyncClient) -> None:
    response = await query_client.post(
        "/v1/query", json={"collection": "samples", "question": "hi"}
    )
    assert_envelope(response, 401, "unauthorized")


async def test_wrong_key_is_401(query_client: httpx.AsyncClient) -> None:
    response = await query_client.post(
        "/v1/query",
        json={"collection": "samples", "question": "hi"},
        headers={"Authorization": "Bearer nope"},
    )
    assert_envelope(response, 401, "unauthorized")


async def test_query_key_on_indexing_is_403(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        json={"documents": [{"doc_id": "a", "text": "x"}]},
        headers=QUERY_AUTH,
    )
    assert_envelope(response, 403, "forbidden")


async def test_malformed_json_is_400(query_client: httpx.AsyncClient) -> None:
    response = await query_client.post(
        "/v1/query",
        content=b'{"collection": "samples", "question": ',
        headers={**QUERY_AUTH, "content-type": "application/json"},
    )
    assert_envelope(response, 400, "invalid_json")


async def test_malformed_json_on_ingest_is_4xx_and_queues_nothing(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        content=b'{"documents": [',
        headers={**ADMIN_AUTH, "content-type": "application/json"},
    )
    assert_envelope(response, 422, "invalid_request")
    missing = await indexing_client.get(
        f"/v1/collections/{collection}/documents/a", headers=ADMIN_AUTH
    )
    assert_envelope(missing, 404, "collection_not_found")


async def test_unknown_collection_is_404(query_client: httpx.AsyncClient) -> None:
    response = await query_client.post(
        "/v1/query", json={"collection": "no_such_kb", "question": "anything?"}, headers=QUERY_AUTH
    )
    body = assert_envelope(response, 404, "collection_not_found")
    assert body["error"]["detail"] == {"collection": "no_such_kb"}


@pytest.mark.parametrize("question", ["", "   "])
async def test_empty_question_is_422(query_client: httpx.AsyncClient, question: str) -> None:
    response = await query_client.post(
        "/v1/query", json={"collection": "samples", "question": question}, headers=QUERY_AUTH
    )
    assert_envelope(response, 422, "invalid_request")


async def test_wrong_type_is_422(query_client: httpx.AsyncClient) -> None:
    response = await query_client.post(
        "/v1/query",
        json={"collection": "samples", "question": "hi", "top_k": "many"},
        headers=QUERY_AUTH,
    )
    body = assert_envelope(response, 422, "invalid_request")
    assert body["error"]["detail"][0]["loc"] == ["body", "top_k"]


async def test_bad_collection_name_is_422(query_client: httpx.AsyncClient) -> None:
    response = await query_client.post(
        "/v1/query", json={"collection": "../etc", "question": "hi"}, headers=QUERY_AUTH
    )
    assert_envelope(response, 422, "invalid_request")


async def test_unsupported_upload_is_415(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files={"files": ("photo.png", b"\x89PNG....", "image/png")},
        headers=ADMIN_AUTH,
    )
    assert_envelope(response, 415, "unsupported_media_type")
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        content=b"plain",
        headers={**ADMIN_AUTH, "content-type": "text/plain"},
    )
    assert_envelope(response, 415, "unsupported_media_type")


async def test_too_large_upload_is_413(data_servers: Servers, collection: str) -> None:
    app = build_indexing_app(indexing_settings(data_servers, limits={"max_upload_bytes": 2048}))
    async with running(app) as client:
        response = await client.post(
            f"/v1/collections/{collection}/documents",
            files={"files": ("big.txt", b"x" * 4096, "text/plain")},
            headers=ADMIN_AUTH,
        )
        assert_envelope(response, 413, "payload_too_large")


async def test_unknown_job_and_route_are_404(indexing_client: httpx.AsyncClient) -> None:
    assert_envelope(
        await indexing_client.get("/v1/jobs/nope", headers=ADMIN_AUTH), 404, "job_not_found"
    )
    assert_envelope(
        await indexing_client.get("/v1/nothing-here", headers=ADMIN_AUTH), 404, "not_found"
    )
