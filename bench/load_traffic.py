"""Open-loop traffic against the running stack, shared by ``bench.load`` and ``bench.soak``.

Why an open-loop asyncio generator and not locust: locust users are closed loops (a user sends
its next request when the previous one returns), so when the server slows down the offered load
falls with it and the slow requests that *would* have been sent are never measured (coordinated
omission). Here arrivals follow a Poisson process at the offered rate whatever the server does,
and each latency is measured from the moment the request was *due*, not from when the generator
got round to sending it. The generator shares the machine's two cores with the stack, so it also
reports its own lag (how late requests left) — a late generator is visible, not hidden.

The mix is what a busy deployment sees: the same questions again (answer cache), FAQ questions,
new questions answered in the server's default mode (retrieval + LLM, extractive when the pool is
full), some of them streamed, and bare ``/v1/retrieve`` calls.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench._common import percentile
from deploy.sample_docs import SAMPLE_COLLECTION

COLLECTION = SAMPLE_COLLECTION  # what `make up` ingests
DEFAULT_MIX = {"cached": 0.55, "faq": 0.10, "new": 0.10, "stream": 0.05, "retrieve": 0.20}
REQUEST_TIMEOUT_S = 60.0
NOT_SENT = -1  # the generator's in-flight cap was reached: counted, never hidden
CONNECTION_ERROR = 0

# questions about the two sample documents (deploy/samples), Korean and English
SAMPLE_QUESTIONS = (
    "국내 출장의 일비는 하루에 얼마인가요?",
    "임원의 국내 출장 일비는 얼마인가요?",
    "당일 출장의 일비는 얼마인가요?",
    "미국 출장 숙박비 상한은 얼마인가요?",
    "3일을 초과하는 국내출장은 누가 승인하나요?",
    "출장 여비는 언제까지 정산해야 하나요?",
    "How heavy is the Aurora-7 when fully populated?",
    "What inlet temperature does the Aurora-7 need during operation?",
    "How much clearance is needed behind the appliance?",
    "How many drive bays does the Aurora-7 have?",
    "What protects the DRAM write cache?",
    "What are the data ports of the Aurora-7?",
)
FAQ_ENTRIES = (
    ("출장 신청서 양식은 어디에서 받나요?", "인트라넷 서식함의 '출장 신청서'를 쓰십시오."),
    ("법인카드 분실은 어디에 신고하나요?", "재무팀 카드 담당자에게 즉시 신고하십시오."),
    ("Who do I call when the Aurora-7 beeps?", "Call the on-site operations desk."),
    ("Where is the Aurora-7 warranty card?", "In the accessory box, under the rail kit."),
)


@dataclass(frozen=True)
class Outcome:
    kind: str
    status: int  # HTTP status, CONNECTION_ERROR, or NOT_SENT
    latency_ms: float  # from when the request was due (open loop)
    lag_ms: float  # how late the generator sent it
    first_byte_ms: float | None = None  # streams: the first event


@dataclass
class Traffic:
    """Sends the mix at a given rate with a pool of query keys (so per-key limits behave as
    they would for many clients) and keeps every outcome."""

    query_url: str
    keys: Sequence[str]
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    max_in_flight: int = 1000
    seed: int = 7
    _session: aiohttp.ClientSession | None = None
    _in_flight: int = 0
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    async def __aenter__(self) -> Traffic:
        connector = aiohttp.TCPConnector(limit=self.max_in_flight, force_close=False)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def run_rate(self, rate: float, duration_s: float) -> list[Outcome]:
        """Poisson arrivals at ``rate``/s for ``duration_s``; waits for every request sent."""
        rng = random.Random(f"{self.seed}-{rate}-{duration_s}")
        kinds, weights = list(self.mix), list(self.mix.values())
        tasks: list[asyncio.Task[Outcome]] = []
        started = time.perf_counter()
        due = 0.0
        while True:
            due += rng.expovariate(rate)
            if due >= duration_s:
                break
            delay = started + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            kind = rng.choices(kinds, weights)[0]
            tasks.append(asyncio.create_task(self._send(kind, started + due)))
        return list(await asyncio.gather(*tasks))

    async def _send(self, kind: str, due: float) -> Outcome:
        lag_ms = (time.perf_counter() - due) * 1000
        if self._in_flight >= self.max_in_flight:
            return Outcome(kind, NOT_SENT, lag_ms, lag_ms)
        self._in_flight += 1
        try:
            status, first_byte = await self._request(kind, due)
        except (aiohttp.ClientError, TimeoutError):
            status, first_byte = CONNECTION_ERROR, None
        finally:
            self._in_flight -= 1
        return Outcome(kind, status, (time.perf_counter() - due) * 1000, lag_ms, first_byte)

    async def _request(self, kind: str, due: float) -> tuple[int, float | None]:
        assert self._session is not None
        n = next(self._counter)
        path, body = request_for(kind, n)
        headers = {"Authorization": f"Bearer {self.keys[n % len(self.keys)]}"}
        async with self._session.post(
            f"{self.query_url}{path}", json=body, headers=headers
        ) as response:
            if kind != "stream" or response.status != 200:
                await response.read()
                return response.status, None
            first_byte: float | None = None
            async for _chunk in response.content.iter_any():
                if first_byte is None:
                    first_byte = (time.perf_counter() - due) * 1000
            return response.status, first_byte


def request_for(kind: str, n: int) -> tuple[str, dict[str, Any]]:
    """The path and body of the ``n``-th request of ``kind``. New questions are made unique by a
    request number so they miss the answer cache (and the retrieval cache) every time."""
    question = SAMPLE_QUESTIONS[n % len(SAMPLE_QUESTIONS)]
    if kind == "cached":
        return "/v1/query", {"collection": COLLECTION, "question": question}
    if kind == "faq":
        return "/v1/query", {"collection": COLLECTION, "question": FAQ_ENTRIES[n % 4][0]}
    unique = f"{question} (#{n})"
    if kind == "retrieve":
        return "/v1/retrieve", {"collection": COLLECTION, "question": unique}
    return "/v1/query", {"collection": COLLECTION, "question": unique, "stream": kind == "stream"}


# --------------------------------------------------------------------------- summaries


def summarise(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Per kind: n, ok, p50/p95/p99 of the 2xx latencies, errors by status; and in total."""
    kinds: dict[str, Any] = {}
    for kind in sorted({o.kind for o in outcomes}):
        of_kind = [o for o in outcomes if o.kind == kind]
        ok = [o.latency_ms for o in of_kind if 200 <= o.status < 300]
        first = [o.first_byte_ms for o in of_kind if o.first_byte_ms is not None]
        kinds[kind] = {
            "n": len(of_kind),
            "ok": len(ok),
            "p50_ms": round(percentile(ok, 50), 1),
            "p95_ms": round(percentile(ok, 95), 1),
            "p99_ms": round(percentile(ok, 99), 1),
            "errors": errors_by_status(of_kind),
            **({"first_event_p50_ms": round(percentile(first, 50), 1)} if first else {}),
        }
    return {"kinds": kinds, "errors_by_status": errors_by_status(outcomes)}


def errors_by_status(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        if not 200 <= o.status < 300:
            label = {NOT_SENT: "not_sent", CONNECTION_ERROR: "connection"}.get(o.status)
            counts[label or str(o.status)] = counts.get(label or str(o.status), 0) + 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------- set-up


async def make_query_keys(indexing_url: str, admin_key: str, count: int) -> list[dict[str, str]]:
    """``count`` query keys for the sample collection: the load looks like many clients, each
    within its own per-key rate limit, the way a real deployment's traffic does."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    body = {"scopes": ["query"], "collections": [COLLECTION]}
    async with aiohttp.ClientSession(headers=headers) as session:
        made = []
        for _ in range(count):
            async with session.post(f"{indexing_url}/v1/keys", json=body) as response:
                response.raise_for_status()
                record = await response.json()
                made.append({"id": record["id"], "key": record["key"]})
        return made


async def revoke_keys(indexing_url: str, admin_key: str, keys: Sequence[dict[str, str]]) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for key in keys:
            async with session.delete(f"{indexing_url}/v1/keys/{key['id']}") as response:
                await response.read()


async def prepare_answers(query_url: str, admin_key: str, query_key: str) -> None:
    """FAQ entries in place and every sample question asked once, so 'cached' and 'faq'
    requests are what they say from the first one on."""
    entries = [{"question": q, "answer": a} for q, a in FAQ_ENTRIES]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        admin = {"Authorization": f"Bearer {admin_key}"}
        url = f"{query_url}/v1/collections/{COLLECTION}/faq"
        async with session.put(url, json={"entries": entries}, headers=admin) as response:
            response.raise_for_status()
        asking = {"Authorization": f"Bearer {query_key}"}
        for question in SAMPLE_QUESTIONS:
            body = {"collection": COLLECTION, "question": question}
            async with session.post(f"{query_url}/v1/query", json=body, headers=asking) as r:
                if r.status != 200:
                    raise SystemExit(f"warming '{question}': {r.status} {await r.text()}")
