"""Answer-cache keys, coalescing, session trimming and follow-up handling, without servers."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import numpy as np
import pytest
from redis.asyncio import Redis

from docqa_core.errors import InvalidRequest
from query_engine.answer import ANSWER_SCHEMA_FINGERPRINT, VERIFIED_WITHOUT_CLAIMS, Answer
from query_engine.cache import (
    AnswerCache,
    AnswerKeyParts,
    CachedAnswer,
    CachedQueryEmbedder,
    SingleFlight,
    normalize_question,
)
from query_engine.memory import Turn, condense_question, sane_standalone, trim_to_budget
from services.query_api.openai_schemas import ChatMessageIn, question_and_history

ANSWER = Answer(
    answer="a",
    citations=[],
    grounding=VERIFIED_WITHOUT_CLAIMS,
    not_found=False,
    timings_ms={"total": 3.0},
)

# nothing listens on port 1: every call fails the way a dead Redis does
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


def parts(**changes: Any) -> AnswerKeyParts:
    base: dict[str, Any] = {
        "collection": "kb",
        "question": "출장 일비는 얼마인가요?",
        "filters": {},
        "top_k": 4,
        "model": "smollm2",
        "prompt_version": "2",
        "grounding_policy": "flag",
        "max_answer_tokens": 256,
    }
    base.update(changes)
    return AnswerKeyParts(**base)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("출장 일비는 얼마인가요?", "출장  일비는 얼마인가요"),
        ("How often?", "  how OFTEN ？ "),
        ("ＡＢＣ 규정", "abc 규정"),
    ],
)
def test_questions_that_differ_only_in_form_normalize_alike(a: str, b: str) -> None:
    assert normalize_question(a) == normalize_question(b)


def test_different_questions_stay_different() -> None:
    assert normalize_question("일비는?") != normalize_question("숙박비는?")


@pytest.mark.parametrize(
    "change",
    [
        {"question": "숙박비는 얼마인가요?"},
        {"filters": {"doc_ids": ["a"]}},
        {"top_k": 5},
        {"model": "other"},
        {"prompt_version": "3"},
        {"grounding_policy": "refuse"},
        {"max_answer_tokens": 512},
        {"retrieval_config": "weights changed"},
    ],
)
def test_everything_an_answer_depends_on_changes_the_key(change: dict[str, Any]) -> None:
    assert parts(**change).digest() != parts().digest()


def test_key_ignores_filter_order_and_question_form() -> None:
    one = parts(filters={"a": 1, "b": 2}, question="Where?")
    two = parts(filters={"b": 2, "a": 1}, question="where")
    assert one.digest() == two.digest()


async def test_single_flight_runs_concurrent_identical_calls_once() -> None:
    flight = SingleFlight[int]()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(flight.do("k", work) for _ in range(20)))
    assert results == [42] * 20 and calls == 1
    assert flight.in_flight() == 0
    await flight.do("k", work)  # finished calls are not remembered: that is the cache's job
    assert calls == 2


async def test_single_flight_shares_a_failure_then_forgets_it() -> None:
    flight = SingleFlight[int]()

    async def fail() -> int:
        await asyncio.sleep(0.01)
        raise RuntimeError("llm down")

    results = await asyncio.gather(
        *(flight.do("k", fail) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    assert flight.in_flight() == 0


async def test_cancelled_waiter_does_not_cancel_the_shared_call() -> None:
    flight = SingleFlight[str]()
    done = asyncio.Event()

    async def work() -> str:
        await done.wait()
        return "answer"

    leader = asyncio.create_task(flight.do("k", work))
    await asyncio.sleep(0)
    follower = asyncio.create_task(flight.do("k", work))
    await asyncio.sleep(0)
    follower.cancel()
    done.set()
    assert await leader == "answer"


async def test_answer_cache_without_redis_is_a_miss_and_still_computes_once() -> None:
    redis = Redis.from_url(DEAD_REDIS_URL, socket_connect_timeout=0.5)
    cache = AnswerCache(redis, prefix="t", ttl_s=60, lock_ttl_s=5)
    try:
        assert await cache.lookup(parts()) == (None, None)
        assert await cache.get("t:answer:x") is None
        await cache.put("t:answer:x", ANSWER)  # swallowed, logged
        calls = 0

        async def compute() -> Answer:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.02)
            return ANSWER

        results = await asyncio.gather(*(cache.compute_once("k", compute) for _ in range(5)))
    finally:
        await redis.aclose()
    assert calls == 1
    assert sorted(shared for _, shared in results) == [False, True, True, True, True]


class DictRedis:
    """The three Redis calls ``AnswerCache.put``/``get`` make, over a dict."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def register_script(self, script: str) -> object:
        return object()

    async def set(self, key: str, value: bytes, ex: int) -> None:
        self.values[key] = value

    async def get(self, key: str) -> bytes | None:
        return self.values.get(key)


async def test_a_fallback_of_the_moment_is_not_stored() -> None:
    """An extractive answer given because no LLM could answer (down or saturated) must not
    outlive the outage in the cache; one that replaced a wrong generated answer may."""
    cache = AnswerCache(cast(Redis, DictRedis()), prefix="t", ttl_s=60, lock_ttl_s=5)
    stored = {}
    for reason in ("llm_unavailable", "llm_saturated", "unsupported_claims"):
        await cache.put(reason, ANSWER.model_copy(update={"fallback_reason": reason}))
        stored[reason] = await cache.get(reason) is not None
    assert stored == {"llm_unavailable": False, "llm_saturated": False, "unsupported_claims": True}


class CountingEmbedder:
    dim = 4
    max_tokens = 512

    def __init__(self) -> None:
        self.queries = 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def embed_passages(self, texts: list[str]) -> Any:
        return np.ones((len(texts), 4), dtype=np.float32)

    async def embed_query(self, text: str) -> Any:
        self.queries += 1
        return np.full(4, float(len(text)), dtype=np.float32)

    async def warm_up(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_query_embeddings_are_cached_in_process_even_without_redis() -> None:
    inner = CountingEmbedder()
    redis = Redis.from_url(DEAD_REDIS_URL, socket_connect_timeout=0.5)
    embedder = CachedQueryEmbedder(inner, redis, prefix="t", model="m", ttl_s=60, local_entries=2)
    try:
        first = await embedder.embed_query("abc")
        again = await embedder.embed_query("abc")
        await embedder.embed_query("de")
        await embedder.embed_query("f")  # evicts "abc" (LRU of 2)
        await embedder.embed_query("abc")
    finally:
        await redis.aclose()
    assert np.array_equal(first, again)
    assert inner.queries == 4


def test_history_keeps_the_newest_turns_that_fit() -> None:
    turns = [Turn(question=f"q{i} " + "word " * 20, answer="answer " * 20) for i in range(5)]
    kept = trim_to_budget(turns, budget_tokens=150)
    assert kept and kept == turns[-len(kept) :]
    assert len(kept) < len(turns)
    assert trim_to_budget(turns, budget_tokens=0) == []


def test_a_runaway_rewrite_is_rejected() -> None:
    assert sane_standalone('"대출 연장은 몇 번 가능한가요?"\nextra', "연장은?") == (
        "대출 연장은 몇 번 가능한가요?"
    )
    assert sane_standalone("", "연장은?") is None
    assert sane_standalone("x" * 500, "연장은?") is None


class FailingLLM:
    async def acomplete(self, prompt: str, **kwargs: Any) -> Any:
        raise ConnectionError("no LLM")


async def test_condensing_falls_back_to_the_previous_question_when_the_llm_fails() -> None:
    turns = [Turn(question="도서 대출 기간은?", answer="14일입니다.")]
    condensed = await condense_question(
        FailingLLM(),  # type: ignore[arg-type]
        turns,
        "연장은?",
        timeout_s=1,
    )
    assert condensed == "도서 대출 기간은? 연장은?"
    no_history = await condense_question(FailingLLM(), [], "연장은?", timeout_s=1)  # type: ignore[arg-type]
    assert no_history == "연장은?"


def test_openai_messages_become_question_and_turns() -> None:
    messages = [
        ChatMessageIn(role="system", content="be nice"),
        ChatMessageIn(role="user", content="대출 기간은?"),
        ChatMessageIn(role="assistant", content="14일입니다."),
        ChatMessageIn(role="user", content=[{"type": "text", "text": "연장은?"}]),
    ]
    question, turns = question_and_history(messages)
    assert question == "연장은?"
    assert turns == [Turn(question="대출 기간은?", answer="14일입니다.")]


@pytest.mark.parametrize(
    "last", [ChatMessageIn(role="assistant", content="hi"), ChatMessageIn(role="user", content=" ")]
)
def test_openai_request_must_end_with_a_user_question(last: ChatMessageIn) -> None:
    with pytest.raises(InvalidRequest):
        question_and_history([ChatMessageIn(role="user", content="q"), last])


def test_a_cache_hit_is_the_stored_answer_plus_its_per_response_fields() -> None:
    stored = json.dumps({"answer": "14일 [1]", "citations": [{"n": 1, "text": "…"}]}).encode()
    body = json.loads(CachedAnswer(stored).response_body({"total": 1.5}))
    assert body == {
        "answer": "14일 [1]",
        "citations": [{"n": 1, "text": "…"}],
        "cached": True,
        "coalesced": False,
        "timings_ms": {"total": 1.5},
    }


def test_a_stored_answer_leaves_out_the_per_response_fields_and_reads_back_whole() -> None:
    stored = ANSWER.model_copy(update={"cached": False, "coalesced": True}).stored_json()
    assert set(json.loads(stored)) == set(Answer.model_fields) - {
        "cached",
        "coalesced",
        "timings_ms",
    }
    hit = CachedAnswer(stored).to_answer({"total": 0.2})
    assert hit == ANSWER.model_copy(update={"cached": True, "timings_ms": {"total": 0.2}})


def test_a_change_of_the_answer_schema_changes_every_key() -> None:
    assert parts().answer_schema == ANSWER_SCHEMA_FINGERPRINT
    assert parts(answer_schema="an-older-shape").digest() != parts().digest()
