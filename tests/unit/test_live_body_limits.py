"""Issue 15's bounded-input claims as a client on a socket sees them, against a real uvicorn
server (``tests.unit._live_servers``: each service's own ``build_app`` over fakes of our seams,
in a process of its own):

- a 20 MB body to any route of either service that takes a body is refused with 413 within
  100 ms of its first byte, with ``Content-Length`` and chunked;
- while 1 MB OpenAI histories are being refused, a concurrent normal query is served about as
  fast as alone.

These are the issue's "Done when" figures, so they are asserted, with the margins said below;
``bench/limits.py`` has the detailed timings. The same refusals, byte-exact and without timing
(what the app read, the envelope), are in ``test_body_limits`` and ``test_request_limits``.
"""

from __future__ import annotations

import json
import select
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.unit._live_servers import live_server
from tests.unit._service_apps import ADMIN_KEY, QUERY_AUTH, indexing_app, query_app

pytestmark = pytest.mark.unit

SIZE = 20_000_000
PIECE = 64 * 1024
# the indexing service takes a 20 MiB file by default (its body limit is that plus multipart
# framing): with 4 MiB files its limit is 5 MiB, so a 20 MB body is over it as on the query side
INDEXING_LIMITS = {"max_upload_bytes": 4 * 1024 * 1024}
REFUSED_WITHIN_S = 0.100
# the best of a few tries is compared with the bound: on a shared two-core machine one try can
# lose the CPU to another process for longer than the server's own work takes
TRIES = 3
QUESTION = "How often should the burrs be brushed?"


def body_routes(service: str) -> list[tuple[str, str]]:
    app = query_app() if service == "query" else indexing_app()
    return sorted(
        (method.upper(), path.replace("{collection}", "kb"))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method in {"post", "put", "patch"}
    )


CASES = [(service, *route) for service in ("query", "indexing") for route in body_routes(service)]


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    with live_server("query") as query, live_server("indexing", **INDEXING_LIMITS) as indexing:
        yield {"query": query, "indexing": indexing}


def request_head(method: str, path: str, declared: bool) -> bytes:
    framing = f"Content-Length: {SIZE}" if declared else "Transfer-Encoding: chunked"
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def body_pieces(declared: bool) -> Iterator[bytes]:
    """``SIZE`` bytes of JSON whitespace, ``PIECE`` at a time (chunk-framed when not declared)."""
    for start in range(0, SIZE, PIECE):
        piece = b" " * min(PIECE, SIZE - start)
        yield piece if declared else b"%x\r\n%s\r\n" % (len(piece), piece)
    if not declared:
        yield b"0\r\n\r\n"


def time_to_answer(port: int, head: bytes, pieces: Iterator[bytes]) -> tuple[bytes, float]:
    """(what the server answered, seconds from the first byte sent to the answer's first bytes).

    Sends only while the server reads, and stops as soon as an answer arrives: a server that
    stopped reading would block a plain ``sendall`` of the rest."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setblocking(False)
        pending: bytes | None = head
        start = time.perf_counter()
        while time.perf_counter() - start < 10:
            writers = [sock] if pending is not None else []
            readable, writable, _ = select.select([sock], writers, [], 0.5)
            if readable:
                answer = sock.recv(65536)
                return answer, time.perf_counter() - start
            if writable and pending is not None:
                try:
                    sent = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    pending = None  # the server stopped reading; its answer is on its way
                    continue
                pending = pending[sent:] or next(pieces, None)
    raise AssertionError("no answer within 10 s")


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("service", "method", "path"), CASES)
def test_a_20_mb_body_is_refused_with_413_within_100_ms(
    ports: dict[str, int], service: str, method: str, path: str, declared: bool
) -> None:
    timings = []
    for _ in range(TRIES):
        head = request_head(method, path, declared)
        answer, seconds = time_to_answer(ports[service], head, body_pieces(declared))
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
        timings.append(seconds)
    assert min(timings) < REFUSED_WITHIN_S, timings


def test_the_routes_measured_are_found_in_each_app() -> None:
    """The cases come from each app's OpenAPI (a new route with a body is measured too); an
    empty list would only skip the test above."""
    assert ("query", "POST", "/v1/chat/completions") in CASES
    assert ("indexing", "POST", "/v1/collections/kb/documents") in CASES


# --------------------------------------------------------------------------- 1 MB histories

# a 1 MB conversation under the 1 MiB body limit: it is read, parsed and then refused by the
# route's message limits (the costliest refusal; a bigger one stops at the body limit)
HISTORY = json.dumps(
    {
        "model": "kb",
        "messages": [
            {"role": "user", "content": "x" * 500_000},
            {"role": "assistant", "content": "y" * 500_000},
            {"role": "user", "content": QUESTION},
        ],
    }
).encode()
SENDERS = 4
QUERIES = 40


def query_latencies(client: httpx.Client, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.post("/v1/query", json={"collection": "kb", "question": QUESTION})
        latencies.append(time.perf_counter() - start)
        assert response.status_code == 200, response.text
    return latencies


def send_histories(port: int, stop: threading.Event, statuses: list[int]) -> None:
    headers = {**QUERY_AUTH, "content-type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
        while not stop.is_set():
            statuses.append(client.post("/v1/chat/completions", content=HISTORY).status_code)


def test_refusing_1_mb_histories_leaves_a_concurrent_query_as_fast(ports: dict[str, int]) -> None:
    assert 1_000_000 < len(HISTORY) < 1024 * 1024
    port = ports["query"]
    stop = threading.Event()
    statuses: list[int] = []
    senders = [
        threading.Thread(target=send_histories, args=(port, stop, statuses)) for _ in range(SENDERS)
    ]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=QUERY_AUTH) as client:
        query_latencies(client, 5)  # warm: connection, first-request imports
        alone = query_latencies(client, QUERIES)
        for sender in senders:
            sender.start()
        try:
            while len(statuses) < SENDERS:  # the burst is under way
                time.sleep(0.005)
            refused_before = len(statuses)
            during = query_latencies(client, QUERIES)
            refused_during = len(statuses) - refused_before
        finally:
            stop.set()
            for sender in senders:
                sender.join(timeout=30)

    assert set(statuses) == {413}
    assert refused_during >= SENDERS  # the histories really were refused meanwhile
    # medians: one request behind one refusal is expected, a stalled event loop is not
    typical_alone, typical_during = statistics.median(alone), statistics.median(during)
    assert typical_during <= 3 * typical_alone + 0.050, (typical_alone, typical_during)
