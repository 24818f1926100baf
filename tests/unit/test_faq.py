"""Unit tests for query_engine.faq: normalization, exact and similar matching, the threshold,
idempotent writes, validation, cross-replica invalidation and life without Redis.

Redis is a real redis-server (the session fixture); the embedder is a fake of our own seam whose
vectors the tests choose, so similarities are known exactly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from redis.asyncio import Redis

from deploy import processes
from docqa_core.errors import Conflict, DependencyUnavailable, InvalidRequest, PayloadTooLarge
from indexing.embedding import Vectors
from query_engine.cache import normalize_question
from query_engine.faq import (
    FaqConfig,
    FaqEntryIn,
    FaqEntryNotFound,
    FaqStore,
    entry_id_for,
    numbers_in,
)

DIM = 64
COLLECTION = "faq_unit"


def unit(*values: float) -> Vectors:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def at_cosine(cosine: float) -> Vectors:
    """A unit vector whose cosine with ``unit(1)`` is ``cosine``."""
    return unit(cosine, float(np.sqrt(1 - cosine**2)))


def unrelated(text: str) -> Vectors:
    """A vector of its own for every text, far from the others (random in the dimensions the
    chosen vectors leave at zero: cosines of a few tenths at most)."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8]))
    vector = np.zeros(DIM, dtype=np.float32)
    vector[4:] = rng.standard_normal(DIM - 4)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class FakeEmbedder:
    """Vectors chosen per text (else :func:`unrelated`); records the texts it embedded."""

    def __init__(self, vectors: dict[str, Vectors] | None = None, delay_s: float = 0.0) -> None:
        self.vectors = vectors or {}
        self.embedded: list[str] = []
        self.delay_s = delay_s

    @property
    def dim(self) -> int:
        return DIM

    @property
    def max_tokens(self) -> int:
        return 512

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def embed_passages(self, texts: list[str]) -> Vectors:
        raise AssertionError("FAQ questions are embedded as queries")

    async def embed_query(self, text: str) -> Vectors:
        self.embedded.append(text)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return self.vectors.get(text, unrelated(text))

    async def warm_up(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server)
    yield client
    await client.aclose()


StoreFactory = Callable[..., FaqStore]


@pytest.fixture
def make_store(redis: Redis) -> StoreFactory:
    """Stores sharing one key prefix per test: two of them behave like two replicas."""
    prefix = "faq" + uuid.uuid4().hex[:8]

    def make(embedder: FakeEmbedder | None = None, **config: Any) -> FaqStore:
        return FaqStore(
            redis,
            prefix=prefix,
            config=FaqConfig(**{"similarity_threshold": 0.9, **config}),
            embedder=embedder or FakeEmbedder(),
        )

    return make


TRIP = FaqEntryIn(question="출장 일비는 얼마인가요?", answer="하루 25,000원입니다.", id="trip")


# -- normalization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "출장 일비는 얼마인가요?",
        "출장 일비는 얼마인가요？",  # full-width question mark
        "  출장   일비는\t얼마인가요 ? ",
        "출장 일비는 얼마인가요?!",
        "출장 일비는 얼마인가요…",
        "출장 일비는 얼마인가요",
    ],
)
def test_question_variants_normalize_alike(variant: str) -> None:
    assert normalize_question(variant) == "출장 일비는 얼마인가요"
    assert entry_id_for(normalize_question(variant)) == entry_id_for("출장 일비는 얼마인가요")


def test_normalization_folds_case_and_width() -> None:
    assert normalize_question("How do I Reset my ＰＡＳＳＷＯＲＤ?") == "how do i reset my password"


def test_numbers_are_read_in_order_free_form() -> None:
    assert numbers_in("3일 출장 일비는 25,000원?") == ("25000", "3")
    assert numbers_in("5일 출장") != numbers_in("3일 출장")
    assert numbers_in("no numbers") == ()


# -- matching --------------------------------------------------------------------------------


async def test_exact_match_needs_no_embedding(make_store: StoreFactory) -> None:
    embedder = FakeEmbedder()
    store = make_store(embedder)
    await store.put(COLLECTION, [TRIP])
    embedder.embedded.clear()

    found = await store.match(COLLECTION, "  출장 일비는   얼마인가요？")

    assert found is not None
    assert (found.id, found.match, found.score) == ("trip", "exact", 1.0)
    assert found.question == TRIP.question and found.answer == TRIP.answer
    assert embedder.embedded == []


async def test_similar_question_matches_at_or_above_the_threshold(
    make_store: StoreFactory,
) -> None:
    embedder = FakeEmbedder(
        {
            TRIP.question: unit(1),
            "출장 가면 하루 일비가 얼마야?": at_cosine(0.95),
            "출장 숙박비는 얼마인가요?": at_cosine(0.85),
        }
    )
    store = make_store(embedder, similarity_threshold=0.9)
    await store.put(COLLECTION, [TRIP])

    close = await store.match(COLLECTION, "출장 가면 하루 일비가 얼마야?")
    far = await store.match(COLLECTION, "출장 숙박비는 얼마인가요?")

    assert close is not None and close.match == "similar" and close.id == "trip"
    assert close.score == pytest.approx(0.95, abs=1e-4)
    assert far is None


async def test_threshold_is_the_configured_one(make_store: StoreFactory) -> None:
    asked = "하루 일비?"
    embedder = FakeEmbedder({TRIP.question: unit(1), asked: at_cosine(0.95)})
    await make_store(embedder).put(COLLECTION, [TRIP])

    assert await make_store(embedder, similarity_threshold=0.94).match(COLLECTION, asked)
    assert await make_store(embedder, similarity_threshold=0.96).match(COLLECTION, asked) is None


async def test_a_given_vector_is_used_instead_of_embedding(make_store: StoreFactory) -> None:
    embedder = FakeEmbedder({TRIP.question: unit(1)})
    store = make_store(embedder)
    await store.put(COLLECTION, [TRIP])
    embedder.embedded.clear()

    found = await store.match(COLLECTION, "something else", question_vector=at_cosine(0.99) * 3)

    assert found is not None and found.match == "similar"
    assert found.score == pytest.approx(0.99, abs=1e-4)  # the vector was normalized first
    assert embedder.embedded == []


async def test_the_most_similar_entry_wins(make_store: StoreFactory) -> None:
    hours = FaqEntryIn(question="도서관 운영 시간은?", answer="9시-18시", id="hours")
    embedder = FakeEmbedder({TRIP.question: unit(1), hours.question: unit(0, 1), "q": unit(0.3, 1)})
    store = make_store(embedder, similarity_threshold=0.5)
    await store.put(COLLECTION, [TRIP, hours])

    found = await store.match(COLLECTION, "q")

    assert found is not None and found.id == "hours"


async def test_similar_questions_naming_other_numbers_do_not_match(
    make_store: StoreFactory,
) -> None:
    three = FaqEntryIn(question="3일 출장 일비는 얼마인가요?", answer="75,000원", id="three")
    embedder = FakeEmbedder(
        {three.question: unit(1), "5일 출장 일비는 얼마인가요?": at_cosine(0.99)}
    )
    store = make_store(embedder)
    await store.put(COLLECTION, [three])

    assert await store.match(COLLECTION, "5일 출장 일비는 얼마인가요?") is None


async def test_a_collection_without_entries_embeds_nothing(make_store: StoreFactory) -> None:
    embedder = FakeEmbedder()
    store = make_store(embedder)

    assert await store.match("faq_empty", "anything?") is None
    assert embedder.embedded == []


async def test_entries_belong_to_their_collection(make_store: StoreFactory) -> None:
    store = make_store()
    await store.put(COLLECTION, [TRIP])

    assert await store.match("faq_other", TRIP.question) is None


async def test_disabled_faq_matches_nothing(make_store: StoreFactory) -> None:
    await make_store().put(COLLECTION, [TRIP])

    assert await make_store(enabled=False).match(COLLECTION, TRIP.question) is None


async def test_vectors_of_another_model_match_only_exactly(make_store: StoreFactory) -> None:
    asked = "하루 일비?"
    embedder = FakeEmbedder({TRIP.question: unit(1), asked: at_cosine(0.99)})
    await make_store(embedder, model="old-model").put(COLLECTION, [TRIP])
    store = make_store(embedder, model="new-model")

    assert await store.match(COLLECTION, asked) is None
    exact = await store.match(COLLECTION, TRIP.question)
    assert exact is not None and exact.match == "exact"


async def test_lookup_gives_the_answerers_dict(make_store: StoreFactory) -> None:
    store = make_store()
    await store.put(COLLECTION, [TRIP])

    hit = await store.lookup(COLLECTION, TRIP.question)

    assert hit is not None
    assert {k: hit[k] for k in ("id", "question", "answer", "score", "match")} == {
        "id": "trip",
        "question": TRIP.question,
        "answer": TRIP.answer,
        "score": 1.0,
        "match": "exact",
    }
    assert await store.lookup(COLLECTION, "nothing like it") is None


# -- invalidation across replicas ------------------------------------------------------------


async def test_a_put_on_another_replica_is_seen(make_store: StoreFactory) -> None:
    replica_a, replica_b = make_store(), make_store()
    assert await replica_a.match(COLLECTION, TRIP.question) is None  # caches the empty FAQ

    await replica_b.put(COLLECTION, [TRIP])

    found = await replica_a.match(COLLECTION, TRIP.question)
    assert found is not None and found.id == "trip"


async def test_a_changed_answer_on_another_replica_is_seen(make_store: StoreFactory) -> None:
    replica_a, replica_b = make_store(), make_store()
    await replica_a.put(COLLECTION, [TRIP])
    assert await replica_a.match(COLLECTION, TRIP.question) is not None

    await replica_b.put(COLLECTION, [FaqEntryIn(TRIP.question, "하루 30,000원입니다.", "trip")])

    found = await replica_a.match(COLLECTION, TRIP.question)
    assert found is not None and found.answer == "하루 30,000원입니다."


async def test_deletes_on_another_replica_are_seen(make_store: StoreFactory) -> None:
    replica_a, replica_b = make_store(), make_store()
    hours = FaqEntryIn(question="도서관 운영 시간은?", answer="9시-18시", id="hours")
    await replica_a.put(COLLECTION, [TRIP, hours])
    assert await replica_a.match(COLLECTION, TRIP.question) is not None

    await replica_b.delete(COLLECTION, "trip")
    assert await replica_a.match(COLLECTION, TRIP.question) is None
    assert await replica_a.match(COLLECTION, hours.question) is not None

    assert await replica_b.delete_all(COLLECTION) == 1
    assert await replica_a.match(COLLECTION, hours.question) is None


async def test_an_unchanged_faq_is_not_reloaded(make_store: StoreFactory, redis: Redis) -> None:
    store = make_store()
    await store.put(COLLECTION, [TRIP])
    await store.match(COLLECTION, TRIP.question)
    # a change behind the store's back, without the version bump: the snapshot is kept
    await redis.delete(store.entries_key(COLLECTION))

    assert await store.match(COLLECTION, TRIP.question) is not None


# -- writing ---------------------------------------------------------------------------------


async def test_putting_the_same_entries_again_changes_nothing(
    make_store: StoreFactory, redis: Redis
) -> None:
    embedder = FakeEmbedder()
    store = make_store(embedder)
    first = await store.put(COLLECTION, [TRIP])
    version = await redis.get(store.version_key(COLLECTION))
    stored = await store.get(COLLECTION, "trip")

    again = await store.put(COLLECTION, [TRIP])

    assert (first.created, first.updated, first.unchanged) == (1, 0, 0)
    assert (again.ids, again.created, again.updated, again.unchanged) == (["trip"], 0, 0, 1)
    assert await redis.get(store.version_key(COLLECTION)) == version
    assert await store.get(COLLECTION, "trip") == stored
    assert embedder.embedded == [TRIP.question]


async def test_a_new_answer_keeps_the_vector_and_the_creation_time(
    make_store: StoreFactory,
) -> None:
    embedder = FakeEmbedder()
    store = make_store(embedder)
    await store.put(COLLECTION, [TRIP])
    before = await store.get(COLLECTION, "trip")

    result = await store.put(COLLECTION, [FaqEntryIn(TRIP.question, "바뀐 답", "trip")])

    after = await store.get(COLLECTION, "trip")
    assert result.updated == 1
    assert after.answer == "바뀐 답" and after.created_at == before.created_at
    assert after.updated_at >= before.updated_at
    assert embedder.embedded == [TRIP.question]


async def test_the_default_id_is_the_hash_of_the_normalized_question(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    first = await store.put(COLLECTION, [FaqEntryIn("How do I reset my password?", "Click.")])
    again = await store.put(COLLECTION, [FaqEntryIn("how do I reset my password", "Click.")])

    assert first.ids == again.ids == [entry_id_for("how do i reset my password")]
    assert again.updated == 1  # same entry, its question now spelled the new way


async def test_a_question_is_owned_by_one_entry(make_store: StoreFactory) -> None:
    store = make_store()
    await store.put(COLLECTION, [TRIP])

    with pytest.raises(Conflict, match="trip"):
        await store.put(COLLECTION, [FaqEntryIn("출장 일비는 얼마인가요", "다른 답", "other")])
    # moving a question from one entry to another in one request is fine
    await store.put(
        COLLECTION,
        [
            FaqEntryIn("출장 일비는 얼마인가요", "다른 답", "other"),
            FaqEntryIn("바뀐 질문", "답", "trip"),
        ],
    )
    found = await store.match(COLLECTION, TRIP.question)
    assert found is not None and found.id == "other"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "at least one"),
        ([FaqEntryIn(" ?? ", "answer")], "question must not be empty"),
        ([FaqEntryIn("question", "  ")], "answer must not be empty"),
        ([FaqEntryIn("q" * 101, "answer")], "question has 101 characters"),
        ([FaqEntryIn("question", "a" * 201)], "answer has 201 characters"),
        ([FaqEntryIn("question", "answer", id="no spaces")], "ids hold"),
        ([FaqEntryIn("question", "answer", metadata={"x": "y" * 5000})], "metadata"),
        ([FaqEntryIn("q1", "a", id="x"), FaqEntryIn("q2", "a", id="x")], "twice"),
        ([FaqEntryIn("Same?", "a"), FaqEntryIn("same", "b", id="y")], "same question"),
    ],
)
async def test_bad_entries_are_refused(
    make_store: StoreFactory, entries: list[FaqEntryIn], message: str
) -> None:
    store = make_store(max_question_chars=100, max_answer_chars=200)

    with pytest.raises(InvalidRequest, match=message):
        await store.put(COLLECTION, entries)


async def test_bad_collection_names_are_refused(make_store: StoreFactory) -> None:
    store = make_store()
    for call in (
        store.put("bad-name!", [TRIP]),
        store.list_entries("bad-name!"),
        store.get("bad-name!", "trip"),
        store.delete_all("bad-name!"),
    ):
        with pytest.raises(InvalidRequest, match="collection names"):
            await call


async def test_too_many_entries_in_one_request(make_store: StoreFactory) -> None:
    store = make_store(max_entries_per_request=2)
    entries = [FaqEntryIn(f"question {i}", "answer") for i in range(3)]

    with pytest.raises(PayloadTooLarge, match="limit is 2"):
        await store.put(COLLECTION, entries)


async def test_a_full_collection_refuses_new_entries(make_store: StoreFactory) -> None:
    store = make_store(max_entries_per_collection=2)
    await store.put(COLLECTION, [FaqEntryIn("q1", "a"), FaqEntryIn("q2", "a")])

    with pytest.raises(Conflict, match="limit is 2"):
        await store.put(COLLECTION, [FaqEntryIn("q3", "a")])
    await store.put(COLLECTION, [FaqEntryIn("q1", "new answer")])  # updates still fit


async def test_concurrent_puts_on_two_replicas_respect_the_limit(
    make_store: StoreFactory,
) -> None:
    # slow embeddings: both replicas read the same version, then race to write
    replica_a = make_store(FakeEmbedder(delay_s=0.05), max_entries_per_collection=3)
    replica_b = make_store(FakeEmbedder(delay_s=0.05), max_entries_per_collection=3)

    results = await asyncio.gather(
        replica_a.put(COLLECTION, [FaqEntryIn("a1", "x"), FaqEntryIn("a2", "x")]),
        replica_b.put(COLLECTION, [FaqEntryIn("b1", "x"), FaqEntryIn("b2", "x")]),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["Conflict", "PutResult"]
    assert (await replica_a.list_entries(COLLECTION)).total == 2


# -- reading and deleting --------------------------------------------------------------------


async def test_list_pages_oldest_first(make_store: StoreFactory) -> None:
    store = make_store()
    for i in range(5):
        await store.put(COLLECTION, [FaqEntryIn(f"question {i}", f"answer {i}", id=f"e{i}")])

    first = await store.list_entries(COLLECTION, limit=2)
    rest = await store.list_entries(COLLECTION, limit=10, offset=2)

    assert first.total == rest.total == 5
    assert [e.id for e in first.entries] == ["e0", "e1"]
    assert [e.id for e in rest.entries] == ["e2", "e3", "e4"]
    assert "vector" not in first.entries[0].public()


async def test_unknown_entries_are_not_found(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(FaqEntryNotFound):
        await store.get(COLLECTION, "missing")
    with pytest.raises(FaqEntryNotFound):
        await store.delete(COLLECTION, "missing")
    assert await store.delete_all(COLLECTION) == 0


# -- without Redis ---------------------------------------------------------------------------


@pytest.fixture
async def store_without_redis() -> AsyncIterator[FaqStore]:
    dead = Redis.from_url(
        f"redis://127.0.0.1:{processes.free_port()}/0",
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
    )
    yield FaqStore(dead, prefix="faq", config=FaqConfig(), embedder=FakeEmbedder())
    await dead.aclose()


async def test_match_without_redis_is_a_miss(
    store_without_redis: FaqStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="query_engine.faq"):
        assert await store_without_redis.match(COLLECTION, TRIP.question) is None
    assert "FAQ lookup skipped" in caplog.text


async def test_admin_calls_without_redis_name_redis(store_without_redis: FaqStore) -> None:
    for call in (
        store_without_redis.put(COLLECTION, [TRIP]),
        store_without_redis.list_entries(COLLECTION),
        store_without_redis.get(COLLECTION, "trip"),
        store_without_redis.delete(COLLECTION, "trip"),
        store_without_redis.delete_all(COLLECTION),
    ):
        with pytest.raises(DependencyUnavailable) as caught:
            await call
        assert caught.value.dependency == "redis"
