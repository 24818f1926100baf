"""Conversation sessions: memory in Redis with a token budget, and follow-up condensation.

A session belongs to the API key that created it (the key's fingerprint is part of the Redis
key), so one tenant can neither read nor delete another's conversation by guessing its id.
Without Redis a question is answered as if it started a new conversation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from llama_index.core.llms import LLM, ChatMessage, MessageRole
from redis.asyncio import Redis

from docqa_core.redis_keys import session_key
from query_engine.cache import REDIS_ERRORS
from query_engine.prompts import CONDENSE_PROMPT, estimate_llm_tokens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


def key_fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class SessionStore:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ttl_s: int,
        max_history_tokens: int,
        max_turns: int,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._max_history_tokens = max_history_tokens
        self._max_turns = max_turns

    def _key(self, owner: str, session_id: str) -> str:
        return session_key(self._prefix, owner, session_id)

    async def history(self, owner: str, session_id: str) -> list[Turn]:
        """The most recent turns that fit the token budget, oldest first."""
        try:
            raw = await self._redis.lrange(self._key(owner, session_id), -self._max_turns, -1)
        except REDIS_ERRORS as exc:
            log.warning("session %s unavailable, answering without history: %s", session_id, exc)
            return []
        turns = [_decode(item) for item in raw]
        return trim_to_budget([t for t in turns if t is not None], self._max_history_tokens)

    async def append(self, owner: str, session_id: str, turn: Turn) -> None:
        key = self._key(owner, session_id)
        record = json.dumps(
            {"q": turn.question, "a": turn.answer, "ts": time.time()}, ensure_ascii=False
        )
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, record)
                pipe.ltrim(key, -self._max_turns, -1)
                pipe.expire(key, self._ttl_s)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("session %s not saved: %s", session_id, exc)

    async def delete(self, owner: str, session_id: str) -> bool:
        """True when the session existed. Raises the Redis error: the caller asked for this."""
        return bool(await self._redis.delete(self._key(owner, session_id)))


def trim_to_budget(turns: Sequence[Turn], budget_tokens: int) -> list[Turn]:
    """Drop the oldest turns until the rest fit ``budget_tokens``."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = estimate_llm_tokens(turn.question) + estimate_llm_tokens(turn.answer)
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    return kept


def history_messages(turns: Sequence[Turn]) -> list[ChatMessage]:
    messages = []
    for turn in turns:
        messages.append(ChatMessage(role=MessageRole.USER, content=turn.question))
        messages.append(ChatMessage(role=MessageRole.ASSISTANT, content=turn.answer))
    return messages


async def condense_question(
    llm: LLM, turns: Sequence[Turn], question: str, *, timeout_s: float, max_tokens: int = 96
) -> str:
    """A follow-up ("그럼 숙박비는?") rewritten as a standalone question for retrieval.

    Falls back to the last question joined with the follow-up when the LLM fails, is slow, or
    returns something that is clearly not a question; retrieval then still sees the topic.
    """
    if not turns:
        return question
    fallback = f"{turns[-1].question} {question}"
    prompt = CONDENSE_PROMPT.format(history=_format_history(turns), question=question)
    try:
        async with asyncio.timeout(timeout_s):
            response = await llm.acomplete(prompt, max_tokens=max_tokens)
    except Exception as exc:  # any LLM failure must not fail the question itself
        log.warning("condensing a follow-up failed, using a concatenation: %s", exc)
        return fallback
    return sane_standalone(response.text, question) or fallback


def sane_standalone(text: str, question: str) -> str | None:
    candidate = text.strip().splitlines()[0].strip().strip('"') if text.strip() else ""
    if not candidate or len(candidate) > 4 * len(question) + 200:
        return None
    return candidate


def _format_history(turns: Sequence[Turn]) -> str:
    return "\n".join(f"User: {t.question}\nAssistant: {t.answer}" for t in turns)


def _decode(raw: bytes | str) -> Turn | None:
    try:
        record = json.loads(raw)
        return Turn(question=str(record["q"]), answer=str(record["a"]))
    except (ValueError, KeyError, TypeError):
        return None
