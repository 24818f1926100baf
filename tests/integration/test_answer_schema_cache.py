"""An answer cached under an older answer schema is never served after a deploy changes it."""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from query_engine.answer import ANSWER_SCHEMA_FINGERPRINT, VERIFIED_WITHOUT_CLAIMS, Answer
from query_engine.cache import AnswerCache, AnswerKeyParts

ANSWER = Answer(
    answer="일비는 1일 50,000원입니다 [1].",
    citations=[],
    grounding=VERIFIED_WITHOUT_CLAIMS,
    not_found=False,
    timings_ms={"total": 3.0},
)


def parts(answer_schema: str = ANSWER_SCHEMA_FINGERPRINT) -> AnswerKeyParts:
    return AnswerKeyParts(
        collection="kb",
        question="국내 출장의 일비는 하루에 얼마인가요?",
        filters={},
        top_k=4,
        model="smollm2",
        prompt_version="3",
        grounding_policy="flag",
        max_answer_tokens=256,
        answer_schema=answer_schema,
    )


async def test_an_answer_cached_in_an_older_schema_is_not_served(redis_server: str) -> None:
    """Written under another schema fingerprint (an earlier deploy's answer fields), the entry
    sits in the real Redis under the same index version, but the current code never finds it."""
    redis = Redis.from_url(redis_server)
    cache = AnswerCache(redis, prefix=f"schema-{uuid.uuid4().hex}", ttl_s=60, lock_ttl_s=1)
    try:
        old_key, cached = await cache.lookup(parts("an-older-shape"))
        assert old_key is not None and cached is None
        await cache.put(old_key, ANSWER)
        assert (await cache.lookup(parts("an-older-shape")))[1] is not None  # it is there
        new_key, cached = await cache.lookup(parts())
        assert new_key != old_key and cached is None
    finally:
        await redis.aclose()
