"""The query service's rate limits, in front of the front door (:mod:`.front_door`).

Every ``POST`` to ``/v1/query``, ``/v1/retrieve`` and ``/v1/chat/completions`` that carries a
query-scoped key is counted here exactly once, before any lookup, so answers from the cache or
the FAQ count too: one Redis round trip (:class:`services.common.rate_limits.RateLimiter`). A
request that asks for a stream also takes one of the key's stream slots in that same round trip,
given back when the response ends. A refused request is a 429 in the route's error shape
(docqa's envelope, or OpenAI's on ``/v1/chat/completions``) with ``Retry-After`` and the
``X-RateLimit-*`` headers; an admitted one gets the ``X-RateLimit-*`` headers on its response.
Requests without a valid key go on untouched (the route refuses them, uncounted).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import NamedTuple

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query_engine.memory import key_fingerprint
from services.common.auth import KeyRing, bearer_token
from services.common.auth import Scope as KeyScope
from services.common.errors import docqa_error_response
from services.common.rate_limits import Decision, RateLimiter, refusal
from services.query_api import openai_errors

CHAT_PATH = "/v1/chat/completions"
LIMITED_PATHS = frozenset({"/v1/query", "/v1/retrieve", CHAT_PATH})
STREAMING_PATHS = frozenset({"/v1/query", CHAT_PATH})
_AS_BOOL = TypeAdapter(bool)  # the routes' own (lax) reading of "stream"


class _RouteLabel(NamedTuple):
    """The route label of a refused request in the access log and metrics."""

    path: str


class QueryRateLimits:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or path not in LIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter | None = getattr(scope["app"].state, "rate_limiter", None)
        fingerprint = _query_key(scope) if limiter is not None else None
        if limiter is None or fingerprint is None:
            await self.app(scope, receive, send)
            return
        stream_id = None
        if path in STREAMING_PATHS and limiter.limits_of(fingerprint).concurrent_streams:
            received, body = await _read_body(receive)
            receive = _replaying(received, receive)
            stream_id = os.urandom(8).hex() if wants_stream(body) else None
        decision = await limiter.admit_query(fingerprint, stream_id=stream_id)
        if not decision.allowed:
            await _refuse(scope, receive, send, decision)
            return
        try:
            await self.app(scope, receive, _with_headers(send, decision))
        finally:
            if stream_id is not None:
                # shielded: a cancelled request still gives its slot back
                release = asyncio.ensure_future(limiter.release_stream(fingerprint, stream_id))
                await asyncio.shield(release)


def _query_key(scope: Scope) -> str | None:
    """The fingerprint of the request's key if it may query, else None."""
    token = bearer_token(Request(scope))
    keyring: KeyRing = scope["app"].state.keyring
    if token is None or KeyScope.QUERY not in keyring.scopes_of(token):
        return None
    return key_fingerprint(token)


def wants_stream(body: bytes) -> bool:
    """Whether the route will read ``"stream"`` of this JSON body as true. A body without the
    word (and without escapes that could spell it) is not parsed at all."""
    if b"stream" not in body and b"\\" not in body:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if not isinstance(data, dict) or "stream" not in data:
        return False
    try:
        return _AS_BOOL.validate_python(data["stream"])
    except ValidationError:
        return False


async def _refuse(scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
    scope["route"] = _RouteLabel(scope["path"])
    if scope["path"] == CHAT_PATH:
        response = openai_errors.docqa_error_response(refusal(decision, "requests per minute"))
    else:
        response = docqa_error_response(refusal(decision, "requests per minute"))
    await response(scope, receive, send)


def _with_headers(send: Send, decision: Decision) -> Send:
    extra = decision.raw_headers()
    if not extra:
        return send

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return send_with_headers


async def _read_body(receive: Receive) -> tuple[list[Message], bytes]:
    """(messages taken from ``receive``, the body; what came before a disconnect). The body
    limit outside (:mod:`services.common.limits`) bounds it."""
    received: list[Message] = []
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return received, b"".join(m.get("body", b"") for m in received)


def _replaying(received: list[Message], receive: Receive) -> Receive:
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
