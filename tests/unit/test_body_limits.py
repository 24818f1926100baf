"""Bounded bodies, enforced before parsing and before auth work (``services.common.limits``).

The apps are the services' own ``build_app`` over fakes (``tests.unit._service_apps``). Bodies
come from an async generator over ``httpx.ASGITransport``, which pulls a piece only when the app
asks for one: what the generator handed out is what the app read. Whether the app stopped
reading early is asserted that way, not by timing (``bench/limits.py`` has the timings).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.common.limits import MAX_JSON_DEPTH, JsonDepthGauge, is_json
from services.common.settings import MULTIPART_OVERHEAD_BYTES, IndexingSettings
from tests.unit._service_apps import (
    ADMIN_AUTH,
    QUERY_AUTH,
    FakeAnswerer,
    client_for,
    indexing_app,
    query_app,
)

pytestmark = pytest.mark.unit

PIECE = 64 * 1024
JSON = "application/json"
MULTIPART = "multipart/form-data; boundary=b"
MULTIPART_HEAD = (
    b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
)
# every route of either service that takes a body: a new one must be added here (and is then
# covered by every test below)
BODY_ROUTES = {
    "query": {
        ("POST", "/v1/query"),
        ("POST", "/v1/retrieve"),
        ("POST", "/v1/chat/completions"),
        ("PUT", "/v1/collections/{collection}/faq"),
    },
    "indexing": {("POST", "/v1/collections/{collection}/documents"), ("POST", "/v1/keys")},
}
APPS = {"query": query_app, "indexing": indexing_app}
CASES = [
    (service, method, path, media)
    for service, routes in sorted(BODY_ROUTES.items())
    for method, path in sorted(routes)
    for media in ([JSON, MULTIPART] if service == "indexing" else [JSON])
]


class Upload:
    """A body of ``size`` bytes (``head``, then spaces) handed out ``PIECE`` bytes at a time;
    ``taken`` counts what the app pulled."""

    def __init__(self, size: int, head: bytes = b"") -> None:
        self.size, self.head, self.taken = size, head, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        left = self.size
        if self.head:
            self.taken += len(self.head)
            left -= len(self.head)
            yield self.head
        while left > 0:
            piece = b" " * min(PIECE, left)
            left -= len(piece)
            self.taken += len(piece)
            yield piece


async def send(
    app: FastAPI, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    async with client_for(app) as client:
        return await client.request(
            method, path.replace("{collection}", "kb"), content=body, headers=headers
        )


def oversized(app: FastAPI, media: str) -> Upload:
    """20 MB, or twice the service's limit where 20 MB is an allowed upload."""
    limit = app.state.settings.max_body_bytes
    return Upload(max(20_000_000, 2 * limit), MULTIPART_HEAD if media == MULTIPART else b"")


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "request_id"} and body["error"]["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]  # still got its request id
    return body


def test_every_route_that_takes_a_body_is_covered() -> None:
    for service, build in APPS.items():
        paths = build().openapi()["paths"]
        routes = {
            (method.upper(), path)
            for path, operations in paths.items()
            for method in operations
            if method in {"post", "put", "patch"}
        }
        assert routes == BODY_ROUTES[service]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("service", "method", "path", "media"), CASES)
async def test_an_oversized_body_is_refused_without_being_read(
    service: str, method: str, path: str, media: str, declared: bool
) -> None:
    app = APPS[service]()
    limit = app.state.settings.max_body_bytes
    body = oversized(app, media)
    headers = {**ADMIN_AUTH, "content-type": media}
    if declared:
        headers["content-length"] = str(body.size)

    response = await send(app, method, path, body, headers)

    refused = assert_refused(response, 413, "payload_too_large")
    assert refused["error"]["detail"] == {"limit_bytes": limit}
    if declared:
        assert body.taken == 0  # refused on the header alone
    else:
        assert limit < body.taken <= limit + PIECE  # stopped at the first piece past the limit
    if service == "indexing":
        assert app.state.jobs.created == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", sorted(p for m, p in BODY_ROUTES["query"] if m == "POST"))
async def test_without_a_key_an_oversized_body_is_413_not_401(path: str, declared: bool) -> None:
    """The query routes read their body before auth (FastAPI parses it first; the front door
    reads it to answer cached questions early): the limit comes before both."""
    answerer = FakeAnswerer()
    app = query_app(answerer)
    body = oversized(app, JSON)
    headers = {"content-type": JSON} | ({"content-length": str(body.size)} if declared else {})

    response = await send(app, "POST", path, body, headers)

    assert_refused(response, 413, "payload_too_large")
    assert body.taken <= app.state.settings.max_body_bytes + PIECE
    assert answerer.asked == []


@pytest.mark.parametrize("media", [JSON, MULTIPART])
async def test_an_upload_without_a_key_is_refused_having_read_nothing(media: str) -> None:
    app = indexing_app()
    body = oversized(app, media)
    path = "/v1/collections/{collection}/documents"
    response = await send(app, "POST", path, body, {"content-type": media})
    assert_refused(response, 401, "unauthorized")
    assert body.taken == 0


async def test_an_upload_of_the_largest_file_is_taken_whole() -> None:
    """The indexing limit is the file limit plus multipart framing: the largest file allowed
    still fits, sent chunked."""
    app = indexing_app(max_upload_bytes=256 * 1024)
    data = b"word " * (256 * 1024 // 5)
    body = MULTIPART_HEAD + data + b"\r\n--b--\r\n"

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    headers = {**ADMIN_AUTH, "content-type": MULTIPART}
    response = await send(app, "POST", "/v1/collections/{collection}/documents", pieces(), headers)
    assert response.status_code == 202, response.text
    assert app.state.jobs.created == [("kb", 1)]


def test_the_indexing_body_limit_is_the_upload_limit_plus_multipart_framing() -> None:
    settings = IndexingSettings(limits={"max_upload_bytes": 4096})
    assert settings.max_body_bytes == 4096 + MULTIPART_OVERHEAD_BYTES


# ------------------------------------------------------------------------------ JSON depth


def nested(depth: int) -> Any:
    value: Any = 'leaf [{ \\" }]'  # brackets and escapes in strings do not count
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def chat(content_extra: Any) -> dict[str, Any]:
    """A chat request whose one message part holds ``content_extra`` (6 levels deep)."""
    part = {"type": "text", "text": "How often?", "x": content_extra}
    return {"model": "kb", "messages": [{"role": "user", "content": [part]}]}


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/query", json.dumps({"collection": "kb", "question": "q?", "filters": nested(40)})),
        ("/v1/chat/completions", json.dumps(chat(nested(40)))),
        ("/v1/query", "[" * 100_000 + "]" * 100_000),
    ],
    ids=["query-filters", "chat-content-part", "bare-brackets"],
)
async def test_json_nested_too_deep_is_refused_before_any_parser(path: str, raw: str) -> None:
    answerer = FakeAnswerer()
    app = query_app(answerer)
    data = raw.encode()

    async def pieces() -> AsyncIterator[bytes]:  # split mid-string and mid-escape
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    response = await send(app, "POST", path, pieces(), {"content-type": JSON})

    refused = assert_refused(response, 422, "json_too_deep")
    assert refused["error"]["detail"] == {"max_depth": MAX_JSON_DEPTH}
    assert answerer.asked == []


async def test_an_upload_with_metadata_nested_too_deep_is_refused() -> None:
    app = indexing_app()
    documents = {"documents": [{"doc_id": "d", "text": "t", "metadata": {"m": nested(40)}}]}
    raw = json.dumps(documents).encode()
    headers = {**ADMIN_AUTH, "content-type": JSON}
    response = await send(app, "POST", "/v1/collections/{collection}/documents", raw, headers)
    assert_refused(response, 422, "json_too_deep")
    assert app.state.jobs.created == []


@pytest.mark.parametrize(("depth", "status"), [(MAX_JSON_DEPTH, 200), (MAX_JSON_DEPTH + 1, 422)])
async def test_json_up_to_the_depth_limit_is_served(depth: int, status: int) -> None:
    answerer = FakeAnswerer()
    app = query_app(answerer)
    body = chat(nested(depth - 5))  # request, messages, message, content, part: 5 levels
    raw = json.dumps(body).encode()
    headers = {**QUERY_AUTH, "content-type": JSON}
    response = await send(app, "POST", "/v1/chat/completions", raw, headers)
    assert response.status_code == status, response.text
    assert len(answerer.asked) == (status == 200)


async def test_a_body_under_the_limit_reaches_the_route_intact_in_small_pieces() -> None:
    answerer = FakeAnswerer()
    app = query_app(answerer)
    raw = json.dumps({"collection": "kb", "question": "출장 일비는? [1] {x}" * 20}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 5):
            yield raw[start : start + 5]

    response = await send(app, "POST", "/v1/query", pieces(), {**QUERY_AUTH, "content-type": JSON})
    assert response.status_code == 200, response.text
    assert answerer.asked[0].question == ("출장 일비는? [1] {x}" * 20).strip()


TRICKY = {
    "a": ["x\\", 'y\\"[[[', "\\u005b {{"],
    "b": [[{"c": ']]]}}} " [', "d": [[], {}]}]],
    "e": "출장 일비 [1] 「25,000원」",
}
TRICKY_DEPTH = 6  # {"b": [[{"d": [[]]}]]}


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_the_gauge_measures_the_same_wherever_the_body_is_cut(ensure_ascii: bool) -> None:
    raw = json.dumps(TRICKY, ensure_ascii=ensure_ascii).encode()
    cuts = [[raw[:i], raw[i:]] for i in range(len(raw) + 1)]
    cuts.append([raw[i : i + 1] for i in range(len(raw))])
    for pieces in cuts:
        for limit, fits in ((TRICKY_DEPTH, True), (TRICKY_DEPTH - 1, False)):
            gauge = JsonDepthGauge(limit)
            fed = [gauge.feed(p, last=n == len(pieces) - 1) for n, p in enumerate(pieces)]
            assert all(fed) is fits and gauge.too_deep is not fits, (pieces, limit)


@pytest.mark.parametrize(
    ("content_type", "measured"),
    [
        (None, True),
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("multipart/form-data; boundary=x", False),
        ("text/plain", False),
    ],
)
def test_json_is_what_fastapi_would_parse_as_json(content_type: str | None, measured: bool) -> None:
    assert is_json(content_type) is measured
