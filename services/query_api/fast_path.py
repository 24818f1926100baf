"""Cache hits of ``POST /v1/query`` answered in front of FastAPI's routing.

A repeated question is the cheapest and, under heavy traffic, the most frequent request. Served
by the route, a hit spent more time in FastAPI (route matching, dependency resolution, request
validation, the exception-handling layers) than in docqa's own work. This middleware answers a
request only when it is a valid, authorized, non-streaming, session-less question whose answer
is cached, with the very bytes the route would send. Everything else (bad JSON, a missing or
wrong key, a miss, an FAQ hit, streaming, sessions) goes on to the route with the body replayed,
so errors, FAQ answers and generation keep one implementation.

It sits inside ``RequestContextMiddleware``: a hit still gets its request id, access-log line
and metrics, under the route's own label.
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docqa_core.errors import DocqaError
from query_engine.answering import Answerer, AnswerRequest, CachedHit
from services.common.auth import KeyRing, bearer_token
from services.common.auth import Scope as KeyScope
from services.common.settings import QuerySettings
from services.query_api.routes import CACHED_OUTCOMES, answer_request
from services.query_api.schemas import QueryIn

QUERY_PATH = "/v1/query"
# a question is at most a few KB; a bigger body is left to the route and its limits
MAX_FAST_BODY_BYTES = 64 * 1024


class _RouteLabel(NamedTuple):
    """Stands in for the matched route in ``scope["route"]``, which routing never set."""

    path: str


QUERY_ROUTE_LABEL = _RouteLabel(QUERY_PATH)


class CachedQueryFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != QUERY_PATH:
            await self.app(scope, receive, send)
            return
        received, body = await _read_body(receive)
        if body is not None:
            hit = await self._cached(scope, body)
            if hit is not None:
                await self._send_hit(scope, send, hit)
                return
        await self.app(scope, _replaying(received, receive), send)

    async def _cached(self, scope: Scope, body: bytes) -> CachedHit | None:
        request = Request(scope)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None
        keyring: KeyRing = scope["app"].state.keyring
        token = bearer_token(request)
        if token is None or KeyScope.QUERY not in keyring.scopes_of(token):
            return None
        asked = _answer_request(body, request, scope["app"].state.settings)
        if asked is None:
            return None
        answerer: Answerer = scope["app"].state.answerer
        return await answerer.cached_only(asked)

    async def _send_hit(self, scope: Scope, send: Send, hit: CachedHit) -> None:
        scope["route"] = QUERY_ROUTE_LABEL  # what the access log and metrics read
        CACHED_OUTCOMES.inc()
        content = hit.body()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _answer_request(body: bytes, request: Request, settings: QuerySettings) -> AnswerRequest | None:
    """What the route would ask (built by the route's own function, with its checks), or None
    when the route must see the request: to refuse it, or because it streams or belongs to a
    session."""
    try:
        payload = QueryIn.model_validate_json(body)
        if payload.stream or payload.session_id:
            return None
        return answer_request(payload, request, settings)
    except (ValidationError, DocqaError):
        return None


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """(messages taken from ``receive``, the whole body or None if it is too big or the
    client went away)."""
    received: list[Message] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        size += len(message.get("body", b""))
        if size > MAX_FAST_BODY_BYTES:
            return received, None
        if not message.get("more_body", False):
            return received, b"".join(m.get("body", b"") for m in received)


def _replaying(received: list[Message], receive: Receive) -> Receive:
    """``receive`` that first gives back what the fast path already read."""
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
