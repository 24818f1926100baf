"""How fast an oversized body is refused, next to a small query's latency, on a real server.

    python -m bench.limits [--rounds 5]

Both services' apps (``build_app``: the real factory, routers, front door and body limit) run
under uvicorn on 127.0.0.1, each in its own thread, with fakes behind the routes (no Milvus,
Redis or LLM: the figures are about the HTTP layer). A raw-socket client measures, median of
``--rounds``:

- baseline: a small ``POST /v1/query`` answered by a fake answerer;
- a 20 MB body with ``Content-Length`` (query) or twice the indexing limit (indexing): the time to
  the response's status line; only the headers are sent, so it shows the answer needs no byte of
  the body;
- the same size chunked: pieces of 64 KiB are sent until the status line arrives; the time, and
  how much had been sent by then (the server reads and drops what the client keeps sending);
- without the limit (``DOCQA_LIMITS_MAX_QUERY_BODY_BYTES`` at its 256 MiB maximum, as before the
  limit existed): a 20 MB JSON question with a wrong key, to its 401.

Prints a table, writes ``bench/results/limits.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from bench._common import median, ratio, table, write_results
from query_engine.answer import Answer, Grounding
from query_engine.answering import AnswerRequest, Lookup
from services.common.settings import AuthSettings, IndexingSettings, QuerySettings
from services.indexing_api.app import build_app as build_indexing_app
from services.query_api.app import build_app as build_query_app

KEY = "bench-key-" + "k" * 20
KEYS = AuthSettings(query_keys=[SecretStr(KEY)], admin_keys=[SecretStr(KEY)])
PIECE = 64 * 1024
ATTACK_BYTES = 20_000_000
SMALL = json.dumps({"collection": "kb", "question": "How often are the burrs brushed?"}).encode()
ANSWER = Answer(
    answer="Every 2 weeks.",
    citations=[],
    grounding=Grounding(verified=True, unsupported=[], checked_claims=0),
    not_found=False,
    timings_ms={},
)


class FakeAnswerer:
    async def lookup(self, request: AnswerRequest) -> Lookup:
        return Lookup(request, request.question, [])

    async def answer(self, request: AnswerRequest, looked_up: Lookup | None = None) -> Answer:
        return ANSWER


def query_app(**limits: Any) -> FastAPI:
    settings = QuerySettings(log_level="warning", auth=KEYS, limits=limits)
    app = build_query_app(settings)
    app.state.runtime = SimpleNamespace(settings=settings, answerer=FakeAnswerer())
    return app


def indexing_app() -> FastAPI:
    app = build_indexing_app(IndexingSettings(log_level="warning", auth=KEYS))
    app.state.jobs = app.state.pipeline = app.state.store = None
    return app


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[int]:
    """``app`` under uvicorn on 127.0.0.1 in a thread of its own; yields the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Sample:
    status: int
    seconds: float
    sent: int


async def request(
    port: int, path: str, *, size: int, chunked: bool, body: bytes = b"", key: str = KEY
) -> Sample:
    """One request over a fresh connection: headers, then the body (``body`` or spaces up to
    ``size``) a piece at a time until the status line arrives. ``size`` with no ``body`` and
    not ``chunked``: headers only (the server must answer from them)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    writer.write(head)
    status_line = asyncio.ensure_future(reader.readuntil(b"\r\n"))
    sent = 0
    while (body or chunked) and sent < size and not status_line.done():
        piece = body[sent : sent + PIECE] if body else b" " * min(PIECE, size - sent)
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        sent += len(piece)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
    if chunked and sent >= size and not status_line.done():
        writer.write(b"0\r\n\r\n")
    line = await status_line
    seconds = time.perf_counter() - started
    writer.close()
    return Sample(int(line.split()[1]), seconds, sent)


async def measured(rounds: int, port: int, path: str, **kwargs: Any) -> dict[str, Any]:
    samples = [await request(port, path, **kwargs) for _ in range(rounds)]
    return {
        "status": sorted({s.status for s in samples}),
        "ms": round(median([s.seconds * 1000 for s in samples]), 2),
        "sent_bytes": int(median([float(s.sent) for s in samples])),
    }


async def run(rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    documents = "/v1/collections/kb/documents"
    with serving(query_app()) as query, serving(indexing_app()) as indexing:
        small = {"size": len(SMALL), "chunked": False, "body": SMALL}
        await measured(2, query, "/v1/query", **small)  # warm up
        results["baseline_small_query"] = await measured(rounds * 4, query, "/v1/query", **small)
        indexing_size = 2 * IndexingSettings().max_body_bytes
        for name, port, path, size in (
            ("query /v1/query", query, "/v1/query", ATTACK_BYTES),
            ("query /v1/chat/completions", query, "/v1/chat/completions", ATTACK_BYTES),
            ("indexing documents", indexing, documents, indexing_size),
        ):
            for chunked in (False, True):
                label = f"{name}, {'chunked' if chunked else 'content-length'}"
                results[label] = await measured(rounds, port, path, size=size, chunked=chunked)
    big = json.dumps({"collection": "kb", "question": "x" * ATTACK_BYTES}).encode()
    with serving(query_app(max_query_body_bytes=256 * 1024 * 1024)) as unlimited:
        results["without the limit: 20 MB JSON, wrong key"] = await measured(
            rounds, unlimited, "/v1/query", size=len(big), chunked=False, body=big, key="wrong"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = asyncio.run(run(args.rounds))
    baseline = results["baseline_small_query"]["ms"]
    rows = [
        [label, r["status"], r["ms"], ratio(r["ms"], baseline), r["sent_bytes"]]
        for label, r in results.items()
    ]
    print(table(["request", "status", "ms (median)", "x small query", "bytes sent"], rows, 2))
    path = write_results("limits", {"rounds": args.rounds, "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
