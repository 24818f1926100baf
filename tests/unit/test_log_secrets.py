"""No secrets in logs or error bodies: neither a key a client presents (right or wrong) nor the
server's own keys appear in any log record (as the JSON formatter writes it, with its extras and
traceback), in any response body or in any response header, whatever the request's fate: refused
by auth, by the body limit, by validation, or failing inside the app.

The apps are the services' own ``build_app`` over fakes (``tests.unit._service_apps``); every
logger is captured at DEBUG.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from indexing.embedding import EmbedderConfig
from query_engine.llm.pool.config import PoolConfig
from services.common.logging import JsonFormatter
from services.common.settings import AuthSettings
from tests.unit._service_apps import FakeAnswerer, client_for, indexing_app, query_app

pytestmark = pytest.mark.unit

BAD_KEY = "sk-attacker-guess-7f3a9c1e5b2d8f4a6c0e"
QUERY_KEY = "query-key-1b9e7d3c5a2f4e6d8c0b"
ADMIN_KEY = "admin-key-9d4c2b7a5e3f1d8c6b0a"
SECRETS = (BAD_KEY, QUERY_KEY, ADMIN_KEY)
KEYS = AuthSettings(query_keys=[SecretStr(QUERY_KEY)], admin_keys=[SecretStr(ADMIN_KEY)])


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    path: str
    key: str
    status: int
    body: Any = None
    scheme: str = "Bearer"
    headers: tuple[tuple[str, str], ...] = ()


QUESTION = {"collection": "kb", "question": "How often?"}
CHAT = {"model": "kb", "messages": [{"role": "user", "content": "How often?"}]}
DOCUMENTS = {"documents": [{"doc_id": "d", "text": "t"}]}
TOO_LONG = (("content-length", str(10**9)),)  # a body far over the limit, declared
CALLS = [
    Call("query", "POST", "/v1/query", BAD_KEY, 401, QUESTION),
    Call("query", "POST", "/v1/query", BAD_KEY, 401, QUESTION, scheme="Basic"),
    Call("query", "POST", "/v1/retrieve", BAD_KEY, 401, QUESTION),
    Call("query", "POST", "/v1/chat/completions", BAD_KEY, 401, CHAT),
    Call("query", "GET", "/v1/models", BAD_KEY, 401),
    Call("query", "PUT", "/v1/collections/kb/faq", BAD_KEY, 401, {"entries": []}),
    Call("query", "DELETE", "/v1/sessions/s1", BAD_KEY, 401),
    Call("query", "POST", "/v1/query", BAD_KEY, 413, QUESTION, headers=TOO_LONG),
    Call("query", "POST", "/v1/query", BAD_KEY, 422, "[" * 40 + "]" * 40),
    Call("query", "POST", "/v1/query", BAD_KEY, 400, "{not json"),
    Call("query", "PUT", "/v1/collections/kb/faq", QUERY_KEY, 403, {"entries": []}),
    Call("query", "POST", "/v1/query", QUERY_KEY, 500, QUESTION),  # the answerer fails
    Call("query", "POST", "/v1/chat/completions", QUERY_KEY, 500, CHAT),
    Call("indexing", "POST", "/v1/collections/kb/documents", BAD_KEY, 401, DOCUMENTS),
    Call("indexing", "DELETE", "/v1/collections/kb", BAD_KEY, 401),
    Call("indexing", "GET", "/v1/jobs/j1", QUERY_KEY, 403),
]


def content_of(call: Call) -> dict[str, Any]:
    if call.body is None:
        return {}
    raw = call.body if isinstance(call.body, str) else json.dumps(call.body)
    return {"content": raw.encode()}


async def answer(call: Call) -> httpx.Response:
    answerer = FakeAnswerer()
    answerer.fail = RuntimeError("the engine broke")
    app = query_app(answerer, auth=KEYS) if call.service == "query" else indexing_app(auth=KEYS)
    headers = {
        "Authorization": f"{call.scheme} {call.key}",
        "Content-Type": "application/json",
        **dict(call.headers),
    }
    async with client_for(app) as client:
        return await client.request(call.method, call.path, headers=headers, **content_of(call))


def written(record: logging.LogRecord) -> str:
    """The record as the services write it (JSON, extras and traceback included), and its
    arguments however another formatter might render them."""
    return JsonFormatter().format(record) + repr(record.args) + repr(record.__dict__)


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.service}-{c.method}-{c.path}-{c.status}")
async def test_no_key_appears_in_logs_or_responses(
    call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await answer(call)

    assert response.status_code == call.status, response.text
    assert caplog.records  # the access log at least: something was captured to look at
    exposed = [response.text, repr(response.headers.multi_items())]
    exposed += [written(record) for record in caplog.records]
    for secret in SECRETS:
        assert not [text for text in exposed if secret in text], secret


def test_configurations_holding_keys_do_not_print_them() -> None:
    """A configuration object printed in a log line or an error must not carry its key."""
    assert "s3cret-llm-key" not in repr(PoolConfig(model="m", api_key="s3cret-llm-key"))
    assert "s3cret-emb-key" not in repr(EmbedderConfig(api_key="s3cret-emb-key"))
