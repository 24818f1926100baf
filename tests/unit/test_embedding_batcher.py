"""Query embeddings asked while the model is busy go in one call; each asker gets its own
vector (or the failure); a lone question is embedded at once."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from indexing.embedding_batcher import PerLoopBatchers, QueryBatcher, Vectors


class SlowModel:
    """Embeds text as [len(text)], one call at a time, each held until ``go`` is set."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.go = asyncio.Event()
        self.fail = False

    async def embed_many(self, texts: list[str]) -> Vectors:
        self.calls.append(list(texts))
        await self.go.wait()
        if self.fail:
            raise RuntimeError("model crashed")
        return np.asarray([[float(len(t))] for t in texts], dtype=np.float32)


async def test_questions_arriving_while_the_model_is_busy_share_its_next_call() -> None:
    model = SlowModel()
    batcher = QueryBatcher(model.embed_many)
    first = asyncio.create_task(batcher.embed("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.create_task(batcher.embed("b" * n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    model.go.set()
    vectors = await asyncio.gather(first, *later)
    assert [float(v[0]) for v in vectors] == [1.0, 2.0, 3.0, 4.0]  # each its own
    assert model.calls == [["a"], ["bb", "bbb", "bbbb"]]
    assert batcher.calls == 2


async def test_a_lone_question_is_embedded_alone_and_at_once() -> None:
    model = SlowModel()
    model.go.set()
    batcher = QueryBatcher(model.embed_many)
    vector = await asyncio.wait_for(batcher.embed("hello"), 1)
    assert float(vector[0]) == 5.0 and model.calls == [["hello"]]


async def test_batches_are_capped_at_max_batch() -> None:
    model = SlowModel()
    model.go.set()
    batcher = QueryBatcher(model.embed_many, max_batch=2)
    await asyncio.gather(*(batcher.embed(str(n)) for n in range(5)))
    assert [len(c) for c in model.calls] == [2, 2, 1]


async def test_a_failure_reaches_every_asker_of_that_call_and_the_next_call_works() -> None:
    model = SlowModel()
    model.fail = True
    batcher = QueryBatcher(model.embed_many)
    asks = [asyncio.create_task(batcher.embed(t)) for t in ("x", "yy")]
    model.go.set()
    results = await asyncio.gather(*asks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    model.fail = False
    assert float((await batcher.embed("zzz"))[0]) == 3.0


async def test_an_asker_that_went_away_is_not_embedded_and_does_not_block_others() -> None:
    model = SlowModel()
    batcher = QueryBatcher(model.embed_many)
    busy = asyncio.create_task(batcher.embed("busy"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gone = asyncio.create_task(batcher.embed("gone"))
    kept = asyncio.create_task(batcher.embed("kept"))
    await asyncio.sleep(0)
    gone.cancel()
    model.go.set()
    assert float((await kept)[0]) == 4.0
    await busy
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert model.calls == [["busy"], ["kept"]]


def test_each_event_loop_gets_its_own_batcher() -> None:
    model = SlowModel()
    batchers = PerLoopBatchers(model.embed_many)

    async def one() -> float:
        model.go = asyncio.Event()  # an Event belongs to the loop that waits on it
        model.go.set()
        return float((await batchers.current().embed("abc"))[0])

    assert asyncio.run(one()) == 3.0
    assert asyncio.run(one()) == 3.0  # a second loop: no future of the first is reused
