"""The one front door of ``POST /v1/query``: auth → validation → rate limits → session context
→ FAQ → cache.

A repeated question is the cheapest and, under heavy traffic, the most frequent request. Served
by the route, a cache hit spent more time in FastAPI (route matching, dependency resolution,
request validation, the exception layers) than in docqa's own work, so these steps run here, in
front of routing, exactly once per request:

- a request that is not a valid, authorized question goes on to the route untouched (its body
  replayed), which refuses it in the one error envelope; no lookup was done for it;
- otherwise :meth:`Answerer.lookup` runs here. An answer found without the LLM (FAQ or cache) is
  sent from here, with the bytes the route would send; on a miss (or for a stream) the lookup
  travels to the route in the request state and the route only generates.

It sits inside ``RequestContextMiddleware``: every request still gets its request id, access-log
line and metrics, under the route's own label; and inside the body limit
(:mod:`services.common.limits`): what it reads has been counted and measured for JSON depth.
A question admitted here is counted against its key's rate limits right after auth and validation
(:func:`services.query_api.rate_limits.admitted_then`), before the FAQ and the cache, so a hit
counts too; the requests it passes on untouched are counted right behind it
(:class:`services.query_api.rate_limits.QueryRateLimits`).
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from docqa_core.errors import DocqaError
from query_engine.answer import Answer
from query_engine.answering import AnswerRequest, CachedHit, Lookup
from services.common.errors import docqa_error_response
from services.common.rate_limits import RateLimiter
from services.query_api.outcomes import observe
from services.query_api.rate_limits import CallerCache, admitted_then
from services.query_api.requests import answer_request
from services.query_api.runtime import QueryRuntime
from services.query_api.schemas import QueryIn

QUERY_PATH = "/v1/query"
# a question is at most a few KB; a bigger body is left to the route and its limits
MAX_FAST_BODY_BYTES = 64 * 1024
# where the route finds the lookup done here (``request.state``)
LOOKUP_STATE = "docqa_lookup"


class _RouteLabel(NamedTuple):
    """Stands in for the matched route in ``scope["route"]``, which routing never set."""

    path: str


QUERY_ROUTE_LABEL = _RouteLabel(QUERY_PATH)


class _Admitted(NamedTuple):
    request: AnswerRequest
    stream: bool


class QueryFrontDoor:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._callers = CallerCache()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != QUERY_PATH:
            await self.app(scope, receive, send)
            return
        received, body = await _read_body(receive)
        admitted = await self._admitted(scope, body) if body is not None else None
        receive = _replaying(received, receive)
        if admitted is None:
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter | None = getattr(scope["app"].state, "rate_limiter", None)
        if limiter is None:
            await self._answer(admitted, scope, receive, send)
            return

        async def answer(scope: Scope, receive: Receive, send: Send) -> None:
            await self._answer(admitted, scope, receive, send)

        fingerprint = admitted.request.owner  # the asking key's fingerprint
        await admitted_then(limiter, fingerprint, admitted.stream, answer, scope, receive, send)

    async def _answer(
        self, admitted: _Admitted, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """FAQ and cache: an answer found there is sent from here; otherwise the route
        generates, with the lookup done here."""
        runtime: QueryRuntime = scope["app"].state.runtime
        try:
            found = await runtime.answerer.lookup(admitted.request)
        except DocqaError as exc:
            await docqa_error_response(exc)(scope, receive, send)
            return
        if found.early is not None and not admitted.stream:
            await runtime.answerer.remember(admitted.request, found.early)
            await _send_early(scope, send, found.early)
            return
        scope.setdefault("state", {})[LOOKUP_STATE] = found
        await self.app(scope, receive, send)

    async def _admitted(self, scope: Scope, body: bytes) -> _Admitted | None:
        """The question the route would answer (built by the route's own function, with its
        checks), or None when the route must see the request to refuse it: also when the key
        may not see the collection, so nothing (FAQ, cache) of another tenant's collection is
        looked up. The key's grant is remembered a few seconds: no Redis round trip here."""
        request = Request(scope)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None
        caller = await self._callers.query_caller(scope)
        if caller is None:  # no key, or not one that may query
            return None
        try:
            payload = QueryIn.model_validate_json(body)
            if not caller.grant.sees(payload.collection):
                return None
            asked = answer_request(payload, request, scope["app"].state.settings)
        except (ValidationError, DocqaError):
            return None
        return _Admitted(asked, payload.stream)


def lookup_for(request: Request, asked: AnswerRequest) -> Lookup | None:
    """The front door's lookup for this request, if it made one (the route then only
    generates)."""
    found: Lookup | None = getattr(request.state, LOOKUP_STATE, None)
    return found if found is not None and found.request == asked else None


async def _send_early(scope: Scope, send: Send, early: Answer | CachedHit) -> None:
    scope["route"] = QUERY_ROUTE_LABEL  # what the access log and metrics read
    if isinstance(early, CachedHit):
        content = early.body()  # sent as stored: no parsing, no re-validation
        observe(None)
    else:
        content = early.model_dump_json().encode()
        observe(early)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


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
    """``receive`` that first gives back what the front door already read."""
    pending = list(received)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
