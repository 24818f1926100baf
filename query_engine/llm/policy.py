"""Which endpoint serves a request: a pure function of (endpoints, stats, request).

The pool hands :func:`choose` one :class:`Candidate` per endpoint that may take the request
(healthy, breaker not open, serves the requested model) and gets back the one to use, or
``None`` when all of them are full (the request then waits in the pool's queue). Nothing here
does I/O or keeps state: randomness comes in as ``rng`` and the round-robin position as
``request.sequence``, so the same inputs always give the same answer.

- ``least_loaded``: power of two choices. Two random candidates with room, the less loaded one
  wins. Load is what *we* have in flight there plus what other clients have (from vLLM's
  ``/metrics``), so a slow server, which holds its requests longer, is chosen less. Sampling two
  instead of taking the global minimum keeps many query-api pods with slightly stale metrics
  from all piling onto the same "least loaded" server.
- ``session_affinity``: a conversation stays on one server so its prompt prefix stays in that
  server's KV cache. Rendezvous hashing (highest hash of session id and URL wins) is consistent:
  adding or removing a server moves only the sessions that lived there. When the session's
  server is loaded beyond ``affinity_max_load`` of its capacity, queues requests itself, or
  carries more than its share (1.5 times the mean load: bounded-load consistent hashing), the
  request goes to the least loaded of the others.
- ``prefix_affinity``: the same, keyed by the prompt's prefix instead of the session: RAG
  prompts are prefix-stable (system prompt, then the sources best first, then the question), so
  questions answered from the same top source share a long prefix, and sending them to one
  server lets its prefix cache skip that prefill. Same load bounds as ``session_affinity``; a
  conversation's session decides before the prefix, and without either, least-loaded.
- ``round_robin``: the next candidate with room, in URL order: the baseline a Kubernetes
  Service gives, kept for comparison.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from query_engine.prompts import SOURCE_CLOSE, SOURCE_OPEN  # how docqa frames each source

PolicyName = Literal["least_loaded", "session_affinity", "prefix_affinity", "round_robin"]
POLICIES: tuple[PolicyName, ...] = (
    "least_loaded",
    "session_affinity",
    "prefix_affinity",
    "round_robin",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    url: str
    in_flight: int  # ours, counted exactly
    max_in_flight: int
    others: float = 0.0  # other clients' requests there, from the last /metrics scrape
    waiting: float = 0.0  # requests queued inside vLLM (no batch slot yet)
    kv_cache_usage: float = 0.0

    @property
    def load(self) -> float:
        return self.in_flight + self.others

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.max_in_flight


@dataclass(frozen=True, slots=True)
class RouteRequest:
    session_id: str | None = None
    sequence: int = 0  # how many requests the pool has routed before: round-robin's position
    prefix_key: str | None = None  # a hash of the prompt's stable prefix (see prefix_key_of)


def choose(
    policy: PolicyName,
    candidates: Sequence[Candidate],
    request: RouteRequest,
    rng: random.Random,
    *,
    affinity_max_load: float = 0.8,
) -> Candidate | None:
    if policy == "round_robin":
        return round_robin(candidates, request)
    if policy == "session_affinity":
        return affine(candidates, request.session_id, rng, max_load=affinity_max_load)
    if policy == "prefix_affinity":
        # a conversation's history grows every turn, so its prefix key would too: the session
        # keeps it on the server that holds the earlier turns
        key = request.session_id or request.prefix_key
        return affine(candidates, key, rng, max_load=affinity_max_load)
    return least_loaded(candidates, rng)


def least_loaded(candidates: Sequence[Candidate], rng: random.Random) -> Candidate | None:
    open_ = [c for c in candidates if c.has_room]
    if len(open_) <= 1:
        return open_[0] if open_ else None
    first, second = rng.sample(open_, 2)
    return first if _score(first) <= _score(second) else second


def _score(candidate: Candidate) -> tuple[float, float]:
    # vLLM's own queue means a request sent there waits for a batch slot: count it twice
    return (candidate.load + candidate.waiting, candidate.kv_cache_usage)


def round_robin(candidates: Sequence[Candidate], request: RouteRequest) -> Candidate | None:
    ordered = sorted(candidates, key=lambda c: c.url)
    for step in range(len(ordered)):
        candidate = ordered[(request.sequence + step) % len(ordered)]
        if candidate.has_room:
            return candidate
    return None


def affine(
    candidates: Sequence[Candidate],
    key: str | None,
    rng: random.Random,
    *,
    max_load: float,
) -> Candidate | None:
    """The key's home server (rendezvous hashing) unless it is overloaded or more loaded than
    its share; else least-loaded."""
    if not key or not candidates:
        return least_loaded(candidates, rng)
    home = max(candidates, key=lambda c: rendezvous_weight(key, c.url))
    if not _overloaded(home, max_load) and not _above_its_share(home, candidates):
        return home
    return least_loaded([c for c in candidates if c.url != home.url], rng) or (
        home if home.has_room else None
    )


# "consistent hashing with bounded loads": a home takes one more request only while its load
# stays within (1 + this) times the mean, so a hot key cannot queue on one server while others
# idle (what vLLM's /metrics say comes up to a scrape late; our own in-flight count does not)
BOUNDED_LOAD_SLACK = 0.5


def _above_its_share(home: Candidate, candidates: Sequence[Candidate]) -> bool:
    mean = sum(c.load + c.waiting for c in candidates) / len(candidates)
    return home.load + home.waiting + 1 > max((1 + BOUNDED_LOAD_SLACK) * mean, mean + 1)


def _overloaded(candidate: Candidate, max_load: float) -> bool:
    return (
        not candidate.has_room
        or candidate.waiting > 0
        or candidate.load >= max_load * candidate.max_in_flight
    )


def rendezvous_weight(key: str, url: str) -> int:
    digest = hashlib.blake2b(f"{key}\x00{url}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


PREFIX_CHARS = 2048  # of the best source at most, which comes first in the last message


def first_source_of(message: str) -> str:
    """The message up to the end of its first source frame (at most PREFIX_CHARS of the
    source); "" when it has no source near its start: then it is the question itself, which
    no other request shares."""
    start = message.find(SOURCE_OPEN, 0, 256)
    if start < 0:
        return ""
    end = message.find(SOURCE_CLOSE, start, start + PREFIX_CHARS)
    return message[: end + len(SOURCE_CLOSE) if end >= 0 else start + PREFIX_CHARS]


def prefix_key_of(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """A hash of what requests answered from the same best source share: every message but the
    last, and the start of the last up to the end of its first source (the question comes
    after the sources). None for a prompt too short to be worth keeping together."""
    texts = [str(m.get("content") or "") for m in messages]
    if not texts:
        return None
    last = first_source_of(texts[-1])
    shared = "\x00".join([*texts[:-1], last])
    if len(shared) < PREFIX_CHARS // 4:
        return None
    return hashlib.blake2b(shared.encode(), digest_size=8).hexdigest()
