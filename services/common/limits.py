"""Bounded input, enforced before any parsing or auth work: body size and JSON nesting depth.

:class:`BodyLimitMiddleware` sits right inside the request-context middleware of both services
(so a refusal still carries its request id, access-log line and metrics) and outside everything
that reads a body (the query front door, FastAPI's body parsing, the multipart parser):

- a ``Content-Length`` over the service's limit is refused with ``413`` at once; nothing is read;
- without one (a chunked body) the bytes are counted as the app reads them, and the ``413`` goes
  out as soon as the count passes the limit: the app is told the client went away and reads no
  more (the server drains or drops the rest, the app never holds it);
- a JSON body (``application/json``, ``application/*+json``, or no content type, which FastAPI
  parses as JSON unless its strict content-type check is on) is also measured for nesting depth
  as it arrives, and refused with ``422`` once it opens more than :data:`MAX_JSON_DEPTH` arrays
  and objects, before any parser sees it.

Both refusals come in the one error envelope (``payload_too_large``, ``json_too_deep``). A body
the app never reads (a request refused by auth first) is never counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import error_response

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 32
_DISCONNECT: Message = {"type": "http.disconnect"}

# each byte's step in nesting depth: +1 opens an array or object, -1 closes one
_STEPS = np.zeros(256, dtype=np.int8)
_STEPS[list(b"[{")] = 1
_STEPS[list(b"]}")] = -1
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


class JsonDepthGauge:
    """Nesting depth of a JSON text fed in pieces, without parsing or keeping it.

    A few vectorised passes (numpy) over a piece that holds quotes, a byte count over one that
    does not (all inside one long string, or no strings at all): a few ns a byte, whatever the
    piece holds, where a byte-by-byte scanner in Python costs a hundred times that and regular
    expressions skipping strings 60 ms per MiB of short strings. The last piece of a body that
    cannot pass the limit even if every bracket in it opened something is not examined at all
    (the usual small request). Malformed JSON is not this gauge's business (the parser refuses
    it); only "deeper than ``limit``" is.
    """

    def __init__(self, limit: int = MAX_JSON_DEPTH) -> None:
        self.limit = limit
        self.depth = 0  # arrays and objects open at the end of what was fed
        self.too_deep = False
        self._in_string = False
        self._backslashes = 0  # the run of backslashes that ended the last piece

    def feed(self, data: bytes, *, last: bool = False) -> bool:
        """Take the next piece (``last``: nothing follows); False once too deep."""
        if self.too_deep or not data:
            return not self.too_deep
        opened = data.count(b"[") + data.count(b"{")
        if last and self.depth + opened <= self.limit:
            return True
        if b'"' not in data:  # the piece is all inside one string, or has none (bytes.count: C)
            self._note_backslashes(data)
            if not self._in_string:
                self._add(data, opened)
            return not self.too_deep
        piece = np.frombuffer(data, dtype=np.uint8)
        quotes = self._unescaped_quotes(piece)
        brackets = np.flatnonzero(_STEPS[piece])
        # a bracket after an odd number of quotes (counting a string left open) is in a string
        outside = (np.searchsorted(quotes, brackets) + self._in_string) % 2 == 0
        self._in_string = (quotes.size + self._in_string) % 2 == 1
        self._note_backslashes(data)
        steps = _STEPS[piece[brackets[outside]]]
        if steps.size:
            self._walk(steps)
        return not self.too_deep

    def _add(self, data: bytes, opened: int) -> None:
        """A piece outside any string: every bracket counts."""
        if self.depth + opened <= self.limit:  # cannot pass the limit: the sum is enough
            self.depth += opened - data.count(b"]") - data.count(b"}")
        else:
            self._walk(_STEPS[np.frombuffer(data, dtype=np.uint8)])

    def _walk(self, steps: np.ndarray) -> None:
        profile = self.depth + np.cumsum(steps, dtype=np.int64)
        self.too_deep = int(profile.max()) > self.limit
        self.depth = int(profile[-1])

    def _note_backslashes(self, data: bytes) -> None:
        """The run of backslashes the piece ends with (it escapes the next piece's first byte
        when odd), joined to the last piece's when the piece is nothing else."""
        trailing = len(data) - len(data.rstrip(b"\\")) if data.endswith(b"\\") else 0
        self._backslashes = trailing + (self._backslashes if trailing == len(data) else 0)

    def _unescaped_quotes(self, piece: np.ndarray) -> np.ndarray:
        """Positions of the quotes that open or close a string: those not escaped by an odd
        run of backslashes (counting the run the last piece ended with). Only quotes right after
        a backslash need the runs, and the runs cost in proportion to the backslashes."""
        quotes = np.flatnonzero(piece == _QUOTE)
        if quotes.size == 0:
            return quotes
        suspect = piece[np.maximum(quotes - 1, 0)] == _BACKSLASH  # (a quote at 0 sees itself)
        if quotes[0] == 0 and self._backslashes % 2 == 1:
            suspect[0] = True
        if not suspect.any():
            return quotes
        backslashes = np.flatnonzero(piece == _BACKSLASH)
        first = np.diff(backslashes, prepend=-2) != 1  # each run's first backslash
        run_start = np.maximum.accumulate(np.where(first, backslashes, 0))
        candidates = quotes[suspect]
        at = np.searchsorted(backslashes, np.maximum(candidates - 1, 0))
        # where each suspect's run starts (none in this piece: only the last piece's run)
        starts = run_start[np.minimum(at, backslashes.size - 1)] if backslashes.size else at
        runs = np.where(candidates > 0, candidates - starts, 0)
        runs += np.where((candidates == 0) | (starts == 0), self._backslashes, 0)
        escaped = np.zeros(quotes.size, dtype=bool)
        escaped[np.flatnonzero(suspect)] = runs % 2 == 1
        return quotes[~escaped]


def is_json(content_type: str | None) -> bool:
    """What FastAPI may parse as JSON: ``application/json``, ``application/*+json``, and no
    content type at all (parsed unless the strict content-type check is on)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


@dataclass
class _Guard:
    """One request's count; ``refused``: the app reads no more; ``answered``: the middleware
    sent the response, and what the app sends or raises afterwards is dropped."""

    limit: int
    gauge: JsonDepthGauge | None
    size: int = 0
    started: bool = False
    refused: bool = False
    answered: bool = False


class BodyLimitMiddleware:
    """Refuses bodies over ``max_body_bytes`` (413) and JSON deeper than ``max_json_depth``
    (422) before anything parses them; see the module docstring."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, max_json_depth: int = MAX_JSON_DEPTH
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length, content_type = _length_and_type(scope)
        declared = _declared_length(length)
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        depth = JsonDepthGauge(self.max_json_depth) if is_json(content_type) else None
        guard = _Guard(self.max_body_bytes, depth)
        try:
            await self.app(
                scope, self._counting(guard, scope, receive, send), _guarded(guard, send)
            )
        except Exception:
            if not guard.answered:
                raise
            # the app's reaction to the "disconnect" it was handed: the client has its answer
            log.debug("request refused by the body limit; the app gave up", exc_info=True)

    def _counting(self, guard: _Guard, scope: Scope, receive: Receive, send: Send) -> Receive:
        async def receive_counted() -> Message:
            if guard.refused:
                return _DISCONNECT
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            guard.size += len(chunk)
            if guard.size > guard.limit:
                refusal = self._too_large
            elif guard.gauge is not None and not guard.gauge.feed(
                chunk, last=not message.get("more_body", False)
            ):
                refusal = self._too_deep
            else:
                return message
            guard.refused = True
            if not guard.started:  # a response under way cannot be replaced: the app just stops
                guard.answered = True
                await refusal(scope, receive, send)
            return _DISCONNECT

        return receive_counted

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        response = error_response(
            413,
            "payload_too_large",
            f"the request body is larger than this service's limit of {limit} bytes",
            {"limit_bytes": limit},
        )
        await response(scope, receive, send)

    async def _too_deep(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_json_depth
        response = error_response(
            422,
            "json_too_deep",
            f"the JSON body nests arrays and objects more than {limit} levels deep",
            {"max_depth": limit},
        )
        await response(scope, receive, send)


def _guarded(guard: _Guard, send: Send) -> Send:
    """``send`` that drops what the app sends after the middleware answered for it."""

    async def send_guarded(message: Message) -> None:
        if guard.answered:
            return
        if message["type"] == "http.response.start":
            guard.started = True
        await send(message)

    return send_guarded


def _length_and_type(scope: Scope) -> tuple[str | None, str | None]:
    """The request's ``Content-Length`` and ``Content-Type`` (the first of each), in one pass
    over the raw headers: this runs for every request of both services."""
    length = content_type = None
    for name, value in scope["headers"]:
        if name == b"content-length" and length is None:
            length = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    return length, content_type


def _declared_length(raw: str | None) -> int | None:
    """The Content-Length, if there is a usable one (the server refuses a malformed one)."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None
