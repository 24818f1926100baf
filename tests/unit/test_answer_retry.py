"""The JSON answer path retries an LLM server that dies mid-answer, once, from the start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from docqa_core.errors import DependencyUnavailable
from query_engine.answering import _whole_answer


class FlakyEngine:
    """Streams ``tokens``; the first ``failures`` streams die after ``fail_after`` tokens."""

    def __init__(self, tokens: list[str], failures: int, fail_after: int) -> None:
        self.tokens = tokens
        self.failures = failures
        self.fail_after = fail_after
        self.streams = 0

    async def stream_tokens(self, prepared: Any) -> AsyncIterator[str]:
        self.streams += 1
        for i, token in enumerate(self.tokens):
            if self.streams <= self.failures and i == self.fail_after:
                raise DependencyUnavailable("llm", "replica died")
            yield token


async def test_mid_answer_failure_is_retried_once_from_the_start() -> None:
    engine = FlakyEngine(["Brush ", "every ", "2 weeks"], failures=1, fail_after=2)
    assert await _whole_answer(engine, None) == "Brush every 2 weeks"  # type: ignore[arg-type]
    assert engine.streams == 2


async def test_a_second_mid_answer_failure_is_an_error() -> None:
    engine = FlakyEngine(["a", "b", "c"], failures=2, fail_after=1)
    with pytest.raises(DependencyUnavailable):
        await _whole_answer(engine, None)  # type: ignore[arg-type]
    assert engine.streams == 2


async def test_failure_before_any_token_is_not_retried_here() -> None:
    """The pool already failed over before the first token; a second round would double it."""
    engine = FlakyEngine(["a"], failures=1, fail_after=0)
    with pytest.raises(DependencyUnavailable):
        await _whole_answer(engine, None)  # type: ignore[arg-type]
    assert engine.streams == 1
