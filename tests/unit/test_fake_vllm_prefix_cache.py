"""The fake vLLM's prefix cache works like vLLM's automatic prefix caching: whole blocks of the
prompt chained by hash, the longest cached prefix is not prefilled again, LRU eviction."""

from __future__ import annotations

import pytest

from bench.fake_vllm import BLOCK_CHARS, FakeConfig, FakeEngine


def engine(blocks: int = 1500) -> FakeEngine:
    # 1 token = 4 characters; 1,000 tokens/s: prefill seconds = characters / 4,000
    return FakeEngine(FakeConfig(prefill_rate=1000.0, prefix_cache_blocks=blocks))


def prompt(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def test_a_repeated_prompt_prefills_only_its_last_partial_block() -> None:
    fake = engine()
    messages = prompt("s" * 640, "q" * 100)  # 741 characters with the separator
    first = fake.prefill_s(messages)
    assert first == pytest.approx(741 / 4000)
    again = fake.prefill_s(messages)
    assert again == pytest.approx((741 % BLOCK_CHARS) / 4000)  # the 37 characters past 11 blocks


async def test_prompts_share_exactly_the_blocks_of_their_common_prefix() -> None:
    fake = engine()
    fake.prefill_s(prompt("s" * 640, "sources A" * 100 + " question 1"))
    other = fake.prefill_s(prompt("s" * 640, "sources B" * 100 + " question 2"))
    # the system prompt and its separator fill 10 whole blocks (640 chars), then they differ
    shared = 640
    assert other == pytest.approx((641 + 900 + 11 - shared) / 4000)


async def test_least_recently_used_blocks_are_evicted() -> None:
    fake = engine(blocks=10)
    a, b = prompt("a" * 640, "x"), prompt("b" * 640, "y")
    fake.prefill_s(a)
    fake.prefill_s(b)  # ten new blocks push all of a's out
    assert fake.prefill_s(a) == pytest.approx(642 / 4000)
    assert fake.metrics().count("prefix_cache_hits") == 2  # TYPE line and the sample
