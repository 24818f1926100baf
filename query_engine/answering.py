"""One question, end to end: session context → FAQ → answer cache (coalesced) → engine → memory.

Both the JSON and the streaming paths, and the OpenAI-compatible endpoint, go through
:class:`Answerer`, so a cached answer, an FAQ hit or a "not found" is the same typed
:class:`~query_engine.answer.Answer` on all of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

import httpx
from llama_index.core.base.response.schema import Response
from llama_index.core.llms import LLM

from docqa_core.errors import DependencyUnavailable, DocqaError, RateLimited
from query_engine.answer import (
    VERIFIED_WITHOUT_CLAIMS,
    Answer,
    AnswerMode,
    FaqMatch,
    Grounding,
    citations_from,
)
from query_engine.cache import AnswerCache, AnswerKeyParts, CachedAnswer
from query_engine.engine import DocqaQueryEngine, PreparedQuery
from query_engine.generation import SERVER_DEFAULTS, GenerationOptions
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
    answer_mode: AnswerMode | None = None  # None: the server's default
    generation: GenerationOptions = SERVER_DEFAULTS  # the request's own (OpenAI route)
    as_of: date | None = None  # versions of dated documents in force then (None: today)


@dataclass(frozen=True)
class AnswererConfig:
    model: str
    grounding_policy: str
    max_answer_tokens: int
    retrieval_fingerprint: str
    condense_timeout_s: float
    default_mode: AnswerMode = "auto"


class FaqLookup(Protocol):
    async def __call__(self, collection: str, question: str) -> dict[str, Any] | None: ...


EngineFactory = Callable[[AnswerRequest, LLM], DocqaQueryEngine]


@dataclass
class Lookup:
    """What is known of a question before any generation: its standalone form (a follow-up is
    condensed), the conversation, and an answer found without the LLM (FAQ or cache), if any.
    On a cache miss ``cache_key`` is where the generated answer will be stored."""

    request: AnswerRequest
    question: str
    history: list[Turn]
    early: Answer | CachedHit | None = None
    cache_key: str | None = None
    started: float = field(default_factory=time.perf_counter)

    def standalone(self) -> str | None:
        return self.question if self.history else None

    def total_ms(self) -> dict[str, float]:
        return {"total": round((time.perf_counter() - self.started) * 1000, 2)}


class Answerer:
    """One question's path: session context → FAQ → cache → engine (retrieve → prompt →
    generate → ground) → remember. :meth:`lookup` is everything before generation; the HTTP
    front door runs it once and hands the result on, so nothing is looked up twice."""

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

    async def lookup(self, request: AnswerRequest) -> Lookup:
        """Session context, then the FAQ, then the answer cache. Never generates."""
        found = await self._context(request)
        if self._faq is not None:
            hit = await self._faq(request.collection, found.question)
            if hit is not None:
                found.early = _faq_answer(hit, found)
                return found
        # a follow-up's answer depends on the conversation, not just the question
        if self._cache is not None and not found.history:
            found.cache_key, cached = await self._cache.lookup(self._key_parts(found))
            if cached is not None:
                found.early = CachedHit(cached, found.total_ms())
        return found

    async def answer(
        self, request: AnswerRequest, looked_up: Lookup | None = None
    ) -> Answer | CachedHit:
        """The answer, or a cache hit kept as the stored bytes (see :class:`CachedHit`)."""
        found = looked_up or await self.lookup(request)
        if found.early is not None:
            await self.remember(request, found.early)
            return found.early
        if found.cache_key is None:
            answer = await self._compute(found)
        else:
            answer, shared = await self._cache_or_fail().compute_once(
                found.cache_key, lambda: self._compute(found)
            )
            answer = answer.model_copy(update={"cached": False, "coalesced": shared})
        await self.remember(request, answer)
        return answer

    async def stream(self, request: AnswerRequest, looked_up: Lookup | None = None) -> AnswerStream:
        """Everything up to the first token happens here, so failures (unknown collection, every
        LLM server busy) still become a proper HTTP error before the stream starts."""
        found = looked_up or await self.lookup(request)
        if found.early is not None:
            await self.remember(request, found.early)
            early = found.early
            return AnswerStream.complete(early if isinstance(early, Answer) else early.to_answer())
        mode = self._mode(request)
        engine = self._engine_for(request, self._llm_for(request))
        prepared = await engine.prepare(
            found.question, history_messages(found.history), request.generation
        )

        async def finish(raw_answer: str) -> Answer:
            answer = await self._checked(found, engine, prepared, raw_answer, mode)
            if found.cache_key is not None and self._cache is not None:
                await self._cache.put(found.cache_key, answer)
            await self.remember(request, answer)
            return answer

        if mode == "extractive" or prepared.not_found:
            return AnswerStream.complete(await finish(""))
        tokens = engine.stream_tokens(prepared)
        try:
            first = await _first_token(tokens)
        except (DependencyUnavailable, RateLimited) as exc:
            if mode != "auto":
                raise
            answer = await self._extracted(found, engine, prepared, _unavailable_reason(exc))
            return AnswerStream.complete(answer)
        return AnswerStream(first, tokens, finish)

    async def remember(self, request: AnswerRequest, answer: Answer | CachedHit) -> None:
        """The last step: the turn joins the session's history (if the question has one)."""
        if request.session_id:
            text = answer.answer if isinstance(answer, Answer) else answer.to_answer().answer
            turn = Turn(question=request.question, answer=text)
            await self._sessions.append(request.owner, request.session_id, turn)

    async def _context(self, request: AnswerRequest) -> Lookup:
        history = list(request.history)
        if request.session_id:
            history = await self._sessions.history(request.owner, request.session_id) + history
        if not history:  # the common case, and the cache-hit path: no LLM view to build
            return Lookup(request, request.question, history)
        question = await condense_question(
            self._llm_for(request),
            history,
            request.question,
            timeout_s=self._config.condense_timeout_s,
        )
        return Lookup(request, question, history)

    def _mode(self, request: AnswerRequest) -> AnswerMode:
        return request.answer_mode or self._config.default_mode

    async def _compute(self, found: Lookup) -> Answer:
        """Retrieve and pack, then answer in the request's mode."""
        mode = self._mode(found.request)
        engine = self._engine_for(found.request, self._llm_for(found.request))
        prepared = await engine.prepare(
            found.question, history_messages(found.history), found.request.generation
        )
        if mode == "extractive" or prepared.not_found:
            return await self._checked(found, engine, prepared, "", mode)
        try:
            raw_answer = await _whole_answer(engine, prepared)
        except (DependencyUnavailable, RateLimited) as exc:
            if mode != "auto":
                raise
            # the graceful path under load or outage: answers keep coming without the LLM
            return await self._extracted(found, engine, prepared, _unavailable_reason(exc))
        return await self._checked(found, engine, prepared, raw_answer, mode)

    async def _checked(
        self,
        found: Lookup,
        engine: DocqaQueryEngine,
        prepared: PreparedQuery,
        raw_answer: str,
        mode: AnswerMode,
    ) -> Answer:
        """The answer in ``mode``; in ``auto``, the generated one unless it fails its checks."""
        if mode == "extractive" or prepared.not_found:
            return answer_from_response(await engine.extract(prepared), found.standalone())
        generated = answer_from_response(engine.finish(prepared, raw_answer), found.standalone())
        reason = _fallback_reason(generated) if mode == "auto" else None
        if reason is None:
            return generated
        extracted = await self._extracted(found, engine, prepared, reason)
        if generated.not_found and extracted.not_found:
            return generated  # both say "not found": the model's own words are fine
        return extracted

    async def _extracted(
        self, found: Lookup, engine: DocqaQueryEngine, prepared: PreparedQuery, reason: str
    ) -> Answer:
        answer = answer_from_response(await engine.extract(prepared), found.standalone())
        return answer.model_copy(update={"fallback_reason": reason})

    def _key_parts(self, found: Lookup) -> AnswerKeyParts:
        request = found.request
        generation = request.generation
        return AnswerKeyParts(
            collection=request.collection,
            question=found.question,
            filters=request.filters,
            top_k=request.top_k,
            model=self._config.model,
            prompt_version=PROMPT_VERSION,
            grounding_policy=self._config.grounding_policy,
            max_answer_tokens=self._config.max_answer_tokens,
            retrieval_config=self._config.retrieval_fingerprint,
            answer_mode=self._mode(request),
            instructions=generation.instructions,
            max_tokens=generation.max_tokens,
            temperature=generation.temperature,
            stop=generation.stop,
            # today's answer may differ from yesterday's when a new version took effect at midnight
            as_of=(request.as_of or date.today()).isoformat(),
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


def answer_from_response(response: Response, standalone_question: str | None) -> Answer:
    """The engine's LlamaIndex ``Response`` as the typed answer."""
    metadata = response.metadata or {}
    return Answer(
        answer=str(response.response),
        citations=citations_from(response.source_nodes, frozenset(metadata.get("cited", ()))),
        grounding=Grounding.model_validate(metadata["grounding"]),
        not_found=bool(metadata.get("not_found")),
        answer_mode=metadata.get("answer_mode", "generative"),
        standalone_question=standalone_question,
        timings_ms=metadata.get("timings_ms", {}),
    )


@dataclass(frozen=True)
class CachedHit:
    """A cache hit as stored: the JSON route sends ``body()`` without parsing it."""

    answer: CachedAnswer
    timings_ms: dict[str, float]

    def body(self) -> bytes:
        return self.answer.response_body(self.timings_ms)

    def to_answer(self) -> Answer:
        return Answer.model_validate_json(self.body())


class AnswerStream:
    """Answer tokens as they come, then the complete answer (citations, grounding, timings)."""

    def __init__(
        self,
        first: str | None,
        rest: AsyncIterator[str] | None,
        finish: Callable[[str], Awaitable[Answer]],
    ) -> None:
        self._first = first
        self._rest = rest
        self._finish = finish

    @classmethod
    def complete(cls, answer: Answer) -> AnswerStream:
        async def done(_: str) -> Answer:
            return answer

        return cls(answer.answer, None, done)

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

    async def final(self) -> Answer:
        """Call after :meth:`tokens` is exhausted."""
        return await self._finish(self.raw_answer)

    async def aclose(self) -> None:
        if self._rest is not None and hasattr(self._rest, "aclose"):
            await self._rest.aclose()


def _fallback_reason(generated: Answer) -> str | None:
    """Why ``auto`` should not return the generated answer (None: return it)."""
    if generated.not_found:
        return "llm_found_nothing"  # the extractive answer is tried; it may also find nothing
    if generated.grounding.unsupported:
        return "unsupported_claims"
    if not generated.grounding.answers_question:
        return "does_not_answer"
    # The prompt demands [n] after every sentence: an answer citing nothing cannot be traced to
    # a source (measured: 1 of 60 of SmolLM2's en_xquad answers cited one, and those were the
    # wrong ones far more often than the quoted sentence)
    if not any(c.cited for c in generated.citations):
        return "no_citation"
    return None


def _unavailable_reason(exc: DocqaError) -> str:
    return "llm_saturated" if isinstance(exc, RateLimited) else "llm_unavailable"


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


def _faq_answer(hit: Mapping[str, Any], found: Lookup) -> Answer:
    return Answer(
        answer=str(hit["answer"]),
        citations=[],
        grounding=VERIFIED_WITHOUT_CLAIMS,
        not_found=False,
        answer_mode="faq",
        faq=FaqMatch(
            id=hit["id"], question=hit["question"], score=hit["score"], match=hit["match"]
        ),
        standalone_question=found.standalone(),
        timings_ms=found.total_ms(),
    )
