"""One question, end to end: session memory → FAQ → answer cache (coalesced) → engine → memory.

Both the JSON and the streaming paths, and the OpenAI-compatible endpoint, go through
:class:`Answerer`, so a cached answer, an FAQ hit or a "not found" looks the same on all of them.
Answers are plain dicts shaped like the API's ``QueryOut``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from llama_index.core.base.response.schema import Response
from llama_index.core.llms import LLM
from llama_index.core.schema import NodeWithScore

from docqa_core.errors import DependencyUnavailable, DocqaError
from query_engine.cache import AnswerCache, AnswerKeyParts, CachedAnswer
from query_engine.engine import DocqaQueryEngine, PreparedQuery
from query_engine.memory import SessionStore, Turn, condense_question, history_messages
from query_engine.prompts import PROMPT_VERSION

log = logging.getLogger(__name__)

# the pool reports failures as DocqaErrors; these are what another LlamaIndex LLM may raise
LLM_ERRORS = (httpx.HTTPError, OSError)


@dataclass(frozen=True)
class AnswerRequest:
    collection: str
    question: str
    top_k: int
    filters: Mapping[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    owner: str = ""  # fingerprint of the API key: sessions are private to it
    history: Sequence[Turn] = ()  # earlier turns sent by the client (OpenAI-style requests)


@dataclass(frozen=True)
class AnswererConfig:
    model: str
    grounding_policy: str
    max_answer_tokens: int
    retrieval_fingerprint: str
    condense_timeout_s: float


class FaqLookup(Protocol):
    async def __call__(self, collection: str, question: str) -> dict[str, Any] | None: ...


EngineFactory = Callable[[AnswerRequest, LLM], DocqaQueryEngine]


@dataclass
class _Context:
    question: str  # standalone: what retrieval, the FAQ and the cache see
    history: list[Turn]
    cache_key: str | None = None
    started: float = field(default_factory=time.perf_counter)


class Answerer:
    def __init__(
        self,
        *,
        config: AnswererConfig,
        llm: LLM,
        engine_for: EngineFactory,
        answer_cache: AnswerCache | None,
        sessions: SessionStore,
        faq: FaqLookup | None = None,
    ) -> None:
        self._config = config
        self._llm = llm
        self._engine_for = engine_for
        self._cache = answer_cache
        self._sessions = sessions
        self._faq = faq

    async def answer(self, request: AnswerRequest) -> dict[str, Any] | CachedHit:
        """The answer as a dict shaped like the API's ``QueryOut``, or a cache hit kept as the
        stored bytes (the hot path: see :class:`CachedHit`)."""
        context = await self._context(request)
        early = await self._without_llm(request, context)
        if early is not None:
            await self._remember(request, early)
            return early
        if context.cache_key is None:
            answer = await self._generate(request, context)
        else:
            key = context.cache_key
            answer, shared = await self._cache_or_fail().compute_once(
                key, lambda: self._generate(request, context)
            )
            answer = {**answer, "cached": False, "coalesced": shared}
        await self._remember(request, answer)
        return answer

    async def cached_only(self, request: AnswerRequest) -> CachedHit | None:
        """The cached answer when there is one and nothing else would answer first (no FAQ
        entry matches, no conversation); None means "ask :meth:`answer`". Never computes."""
        if request.session_id or request.history:
            return None
        context = _Context(question=request.question, history=[])
        early = await self._without_llm(request, context)
        return early if isinstance(early, CachedHit) else None

    async def stream(self, request: AnswerRequest) -> AnswerStream:
        """Everything up to the first token happens here, so failures (unknown collection, every
        LLM server busy) still become a proper HTTP error before the stream starts."""
        context = await self._context(request)
        early = await self._without_llm(request, context)
        if early is not None:
            await self._remember(request, early)
            return AnswerStream.complete(early if isinstance(early, dict) else early.as_dict())
        engine = self._engine_for(request, self._llm_for(request))
        prepared = await engine.prepare(context.question, history_messages(context.history))
        tokens = engine.stream_tokens(prepared)
        first = await _first_token(tokens)

        async def finish(raw_answer: str) -> dict[str, Any]:
            answer = self._payload(engine.finish(prepared, raw_answer), context)
            if context.cache_key is not None and self._cache is not None:
                await self._cache.put(context.cache_key, answer)
            await self._remember(request, answer)
            return answer

        return AnswerStream(first, tokens, finish)

    async def _context(self, request: AnswerRequest) -> _Context:
        history = list(request.history)
        if request.session_id:
            history = await self._sessions.history(request.owner, request.session_id) + history
        if not history:  # the common case, and the cache-hit path: no LLM view to build
            return _Context(question=request.question, history=history)
        question = await condense_question(
            self._llm_for(request),
            history,
            request.question,
            timeout_s=self._config.condense_timeout_s,
        )
        return _Context(question=question, history=history)

    async def _without_llm(
        self, request: AnswerRequest, context: _Context
    ) -> dict[str, Any] | CachedHit | None:
        """An FAQ hit or a cached answer; on a miss, ``context.cache_key`` is set for the caller."""
        if self._faq is not None:
            hit = await self._faq(request.collection, context.question)
            if hit is not None:
                return _faq_answer(hit, context)
        if self._cache is None or context.history:
            return None  # a follow-up's answer depends on the conversation, not just the question
        context.cache_key, cached = await self._cache.lookup(self._key_parts(request, context))
        return CachedHit(cached, _total(context)) if cached is not None else None

    async def _generate(self, request: AnswerRequest, context: _Context) -> dict[str, Any]:
        engine = self._engine_for(request, self._llm_for(request))
        prepared = await engine.prepare(context.question, history_messages(context.history))
        raw_answer = await _whole_answer(engine, prepared)
        return self._payload(engine.finish(prepared, raw_answer), context)

    def _payload(self, response: Response, context: _Context) -> dict[str, Any]:
        metadata = response.metadata or {}
        cited = set(metadata.get("cited", []))
        return {
            "answer": str(response.response),
            "citations": citations_from(response.source_nodes, cited),
            "grounding": metadata["grounding"],
            "not_found": bool(metadata.get("not_found")),
            "cached": False,
            "coalesced": False,
            "faq": None,
            "standalone_question": _standalone(context),
            "timings_ms": metadata.get("timings_ms", {}),
        }

    async def _remember(self, request: AnswerRequest, answer: dict[str, Any] | CachedHit) -> None:
        if request.session_id:
            text = answer["answer"] if isinstance(answer, dict) else answer.as_dict()["answer"]
            turn = Turn(question=request.question, answer=str(text))
            await self._sessions.append(request.owner, request.session_id, turn)

    def _key_parts(self, request: AnswerRequest, context: _Context) -> AnswerKeyParts:
        return AnswerKeyParts(
            collection=request.collection,
            question=context.question,
            filters=request.filters,
            top_k=request.top_k,
            model=self._config.model,
            prompt_version=PROMPT_VERSION,
            grounding_policy=self._config.grounding_policy,
            max_answer_tokens=self._config.max_answer_tokens,
            retrieval_config=self._config.retrieval_fingerprint,
        )

    def _llm_for(self, request: AnswerRequest) -> LLM:
        """The pool's view for this request (session affinity, the collection's LoRA adapter)."""
        for_request = getattr(self._llm, "for_request", None)
        if for_request is None:
            return self._llm
        llm: LLM = for_request(session_id=request.session_id, collection=request.collection)
        return llm

    def _cache_or_fail(self) -> AnswerCache:
        assert self._cache is not None  # a cache key exists only when the cache does
        return self._cache


@dataclass(frozen=True)
class CachedHit:
    """A cache hit as stored: the JSON route sends ``body()`` without parsing it."""

    answer: CachedAnswer
    timings_ms: dict[str, float]

    def body(self) -> bytes:
        return self.answer.response_body(self.timings_ms)

    def as_dict(self) -> dict[str, Any]:
        return self.answer.as_dict(self.timings_ms)


class AnswerStream:
    """Answer tokens as they come, then the complete answer (citations, grounding, timings)."""

    def __init__(
        self,
        first: str | None,
        rest: AsyncIterator[str] | None,
        finish: Callable[[str], Awaitable[dict[str, Any]]],
    ) -> None:
        self._first = first
        self._rest = rest
        self._finish = finish

    @classmethod
    def complete(cls, answer: dict[str, Any]) -> AnswerStream:
        async def done(_: str) -> dict[str, Any]:
            return answer

        return cls(str(answer["answer"]), None, done)

    async def tokens(self) -> AsyncIterator[str]:
        parts: list[str] = []
        if self._first:
            parts.append(self._first)
            yield self._first
        if self._rest is not None:
            async for token in _mapped(self._rest):
                parts.append(token)
                yield token
        self.raw_answer = "".join(parts)

    async def final(self) -> dict[str, Any]:
        """Call after :meth:`tokens` is exhausted."""
        return await self._finish(self.raw_answer)

    async def aclose(self) -> None:
        if self._rest is not None and hasattr(self._rest, "aclose"):
            await self._rest.aclose()


async def _whole_answer(engine: DocqaQueryEngine, prepared: PreparedQuery) -> str:
    """The answer for a JSON response. It is streamed too (for the first-token timing), but the
    client has seen none of it, so an LLM server dying mid-answer is retried once from the start:
    the pool fails over only before the first token, and has ejected that server by now."""
    for attempt in (1, 2):
        parts: list[str] = []
        try:
            async for token in _mapped(engine.stream_tokens(prepared)):
                parts.append(token)
            return "".join(parts)
        except DependencyUnavailable:
            if attempt == 2 or not parts:
                raise
            log.warning("the LLM failed mid-answer; answering again from the start")
    raise AssertionError("unreachable")


async def _first_token(tokens: AsyncIterator[str]) -> str | None:
    try:
        return await anext(tokens)
    except StopAsyncIteration:
        return None
    except DocqaError:
        raise
    except LLM_ERRORS as exc:
        raise _llm_unavailable(exc) from exc


async def _mapped(tokens: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for token in tokens:
            yield token
    except DocqaError:
        raise
    except LLM_ERRORS as exc:
        raise _llm_unavailable(exc) from exc


def _llm_unavailable(exc: BaseException) -> DependencyUnavailable:
    log.warning("LLM request failed: %s: %s", type(exc).__name__, exc)
    return DependencyUnavailable("llm", f"the LLM service failed: {type(exc).__name__}")


def _faq_answer(hit: Mapping[str, Any], context: _Context) -> dict[str, Any]:
    return {
        "answer": str(hit["answer"]),
        "citations": [],
        "grounding": {"verified": True, "unsupported": [], "checked_claims": 0},
        "not_found": False,
        "cached": False,
        "coalesced": False,
        "faq": {
            "id": hit["id"],
            "question": hit["question"],
            "score": hit["score"],
            "match": hit["match"],
        },
        "standalone_question": _standalone(context),
        "timings_ms": _total(context),
    }


def _standalone(context: _Context) -> str | None:
    return context.question if context.history else None


def _total(context: _Context) -> dict[str, float]:
    return {"total": round((time.perf_counter() - context.started) * 1000, 2)}


def citations_from(
    nodes: Sequence[NodeWithScore], cited: set[int] | None = None
) -> list[dict[str, Any]]:
    """Source ``[n]`` is ``nodes[n - 1]``: everything a UI needs to highlight the passage."""
    citations = []
    for n, node in enumerate(nodes, start=1):
        meta = node.node.metadata
        citations.append(
            {
                "n": n,
                "doc_id": str(meta.get("doc_id") or ""),
                "title": str(meta.get("title") or ""),
                "section": str(meta.get("section") or ""),
                "page": meta.get("page"),
                "char_start": meta.get("char_start"),
                "char_end": meta.get("char_end"),
                "score": round(float(node.score or 0.0), 6),
                "dense_score": meta.get("dense_score"),
                "bm25_score": meta.get("bm25_score"),
                "cited": bool(cited and n in cited),
                "text": node.node.get_content(),
            }
        )
    return citations
