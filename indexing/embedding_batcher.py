"""Micro-batching of query embeddings: the questions that arrive while the model is busy are
embedded together in its next call.

One model handle embeds one call at a time, so under concurrency questions queue for it anyway;
embedding the queue in one call costs far less than one call each (the per-call overhead and
the matrix shapes favour batches; measured in ``bench/query.py``). With a single client nothing
waits: a question that finds the model idle is embedded at once, alone — no batching window is
added to its latency.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]
EmbedMany = Callable[[list[str]], Awaitable[Vectors]]


class QueryBatcher:
    """Collects questions while an embedding call runs and sends them as the next call."""

    def __init__(self, embed_many: EmbedMany, max_batch: int = 32) -> None:
        self._embed_many = embed_many
        self._max_batch = max_batch
        self._pending: list[tuple[str, asyncio.Future[Vectors]]] = []
        self._draining: asyncio.Task[None] | None = None
        self.calls = 0  # embedding calls made: tells a test (and a profile) batching happened

    async def embed(self, text: str) -> Vectors:
        turn: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._pending.append((text, turn))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await turn

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            waiting = [(text, turn) for text, turn in batch if not turn.done()]
            if not waiting:
                continue  # every asker went away: nothing to embed
            self.calls += 1
            try:
                vectors = await self._embed_many([text for text, _ in waiting])
            except Exception as exc:  # each asker gets the failure as its own
                for _, turn in waiting:
                    if not turn.done():
                        turn.set_exception(exc)
                continue
            for (_, turn), vector in zip(waiting, vectors, strict=True):
                if not turn.done():
                    turn.set_result(vector)


class PerLoopBatchers:
    """One :class:`QueryBatcher` per event loop: futures belong to the loop that made them, and
    an embedder outlives loops in tests and scripts (``asyncio.run`` twice)."""

    def __init__(self, embed_many: EmbedMany, max_batch: int = 32) -> None:
        self._embed_many = embed_many
        self._max_batch = max_batch
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, QueryBatcher] = (
            weakref.WeakKeyDictionary()
        )

    def current(self) -> QueryBatcher:
        loop = asyncio.get_running_loop()
        batcher = self._batchers.get(loop)
        if batcher is None:
            batcher = self._batchers[loop] = QueryBatcher(self._embed_many, self._max_batch)
        return batcher
