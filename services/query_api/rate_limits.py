"""The query service's rate limits: every ``POST`` to ``/v1/query``, ``/v1/retrieve`` and
``/v1/chat/completions`` that carries a query-scoped key is counted exactly once, before any
lookup or generation, so answers from the cache or the FAQ count too
(:class:`services.common.rate_limits.RateLimiter`; a busy key's queries are charged in batches).

A question the front door (:mod:`.front_door`) admits is counted there, right after auth and
validation, with what it already knows (the key, whether it asks for a stream); everything else
is counted by :class:`QueryRateLimits`, right inside the front door. A
request that asks for a stream also takes one of the key's stream slots in that same round trip,
given back when the response ends. A refused request is a 429 in the route's error shape
(docqa's envelope, or OpenAI's on ``/v1/chat/completions``) with ``Retry-After`` and the
``X-RateLimit-*`` headers; an admitted one gets the ``X-RateLimit-*`` headers on its response.
Requests without a valid key go on untouched (the route refuses them, uncounted).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from typing import NamedTuple

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docqa_core.errors import DocqaError
from query_engine.memory import key_fingerprint
from services.common.auth import KeyRing, bearer_token
from services.common.auth import Scope as KeyScope
from services.common.errors import docqa_error_response
from services.common.grants import Grant
from services.common.rate_limits import Decision, RateLimiter, refusal
from services.query_api import openai_errors

CHAT_PATH = "/v1/chat/completions"
LIMITED_PATHS = frozenset({"/v1/query", "/v1/retrieve", CHAT_PATH})
STREAMING_PATHS = frozenset({"/v1/query", CHAT_PATH})
# set in the request state once the request is counted (by the front door, for an admitted
# /v1/query), so nothing counts it twice
COUNTED_STATE = "docqa_rate_counted"
CALLER_TTL_S = 5.0
MAX_CALLERS = 4096
_AS_BOOL = TypeAdapter(bool)  # the routes' own (lax) reading of "stream"


class _RouteLabel(NamedTuple):
    """The route label of a refused request in the access log and metrics."""

    path: str


class QueryRateLimits:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._callers = CallerCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or path not in LIMITED_PATHS
            or scope.get("state", {}).get(COUNTED_STATE)  # the front door counted it
        ):
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter | None = getattr(scope["app"].state, "rate_limiter", None)
        fingerprint = await self._callers.query_key(scope) if limiter is not None else None
        if limiter is None or fingerprint is None:
            await self.app(scope, receive, send)
            return
        stream = False
        if path in STREAMING_PATHS and limiter.limits_of(fingerprint).concurrent_streams:
            received, body = await _read_body(receive)
            receive = _replaying(received, receive)
            stream = wants_stream(body)
        await admitted_then(limiter, fingerprint, stream, self.app, scope, receive, send)


async def admitted_then(
    limiter: RateLimiter,
    fingerprint: str,
    stream: bool,
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """Count one query of the key ``fingerprint`` (and, for a ``stream``, take one of its
    stream slots until the response ends); then ``app``, with the ``X-RateLimit-*`` headers,
    or the 429."""
    limits = limiter.limits_of(fingerprint)
    stream_id = os.urandom(8).hex() if stream and limits.concurrent_streams else None
    decision = await limiter.admit_query(fingerprint, stream_id=stream_id)
    if not decision.allowed:
        await _refuse(scope, receive, send, decision)
        return
    scope.setdefault("state", {})[COUNTED_STATE] = True
    try:
        await app(scope, receive, _with_headers(send, decision))
    finally:
        if stream_id is not None:
            # shielded: a cancelled request still gives its slot back
            release = asyncio.ensure_future(limiter.release_stream(fingerprint, stream_id))
            await asyncio.shield(release)


class CallerCache:
    """Which key a request's ``Authorization`` header is, remembered for :data:`CALLER_TTL_S`.

    Resolving it (parsing the header, comparing against every key in constant time, hashing
    the fingerprint) was a fifth of a cached answer's time when done for every request; the
    same few keys send nearly all of them. At most :data:`MAX_CALLERS` headers are kept (a
    flood of made-up keys only empties the cache), and an entry lives a few seconds, never
    longer than the keyring's answer for a stored key holds, so a key added or revoked is
    counted (and, at the front door, admitted) accordingly within that time."""

    def __init__(self) -> None:
        self._known: dict[bytes, tuple[float, Caller | None]] = {}

    async def query_key(self, scope: Scope) -> str | None:
        """The fingerprint of the request's key if it may query, else None."""
        caller = await self.query_caller(scope)
        return caller.fingerprint if caller is not None else None

    async def query_caller(self, scope: Scope) -> Caller | None:
        """The request's key if it may query (its fingerprint and grant), else None."""
        header = _authorization(scope)
        if header is None:
            return None
        now = time.monotonic()
        known = self._known.get(header)
        if known is not None and known[0] > now:
            return known[1]
        if len(self._known) >= MAX_CALLERS:
            self._known.clear()
        caller, valid_until = await _resolve(scope, header)
        self._known[header] = (min(now + CALLER_TTL_S, valid_until), caller)
        return caller


class Caller(NamedTuple):
    fingerprint: str  # names the key's rate-limit state and sessions
    grant: Grant  # the collections it may query


def _authorization(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return None


async def _resolve(scope: Scope, header: bytes) -> tuple[Caller | None, float]:
    """(the caller if its key may query, until when that holds)."""
    token = bearer_token(Request({"type": "http", "headers": [(b"authorization", header)]}))
    if token is None:
        return None, math.inf
    keyring: KeyRing = scope["app"].state.keyring
    try:
        grant, valid_until = await keyring.resolve(token)
    except DocqaError:  # Redis is down: the route answers (503); nothing to count meanwhile
        return None, 0.0
    if grant is None or not grant.allows(KeyScope.QUERY):
        return None, valid_until
    return Caller(key_fingerprint(token), grant), valid_until


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
