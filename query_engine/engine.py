"""The docqa query engine: retrieve → pack a prompt → stream the LLM → check grounding.

A LlamaIndex ``CustomQueryEngine``, so ``await engine.aquery(question)`` returns a LlamaIndex
``Response`` whose ``source_nodes`` are the numbered sources the LLM saw (source ``[n]`` is
``source_nodes[n - 1]``) and whose ``metadata`` carries the grounding result and timings. The
streaming path shares the same steps through :meth:`DocqaQueryEngine.prepare` and
:meth:`DocqaQueryEngine.stream_tokens`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from llama_index.core.base.response.schema import Response
from llama_index.core.bridge.pydantic import Field
from llama_index.core.llms import LLM, ChatMessage
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeWithScore, QueryBundle

from docqa_core.citations import all_cited
from docqa_core.scripts import detect_language
from indexing.analysis import analyze_many
from indexing.embedding import Embedder
from query_engine.admission import WorkAdmission, unlimited
from query_engine.answer_types import answers_question
from query_engine.extractive import (
    ExtractiveConfig,
    SourceText,
    answer_text,
    question_topic,
    rank_sentences,
    unknown_share,
)
from query_engine.generation import SERVER_DEFAULTS, GenerationOptions
from query_engine.grounding import GroundingPolicy, GroundingResult, apply_policy, check_grounding
from query_engine.prompts import (
    NOT_FOUND_ANSWERS,
    PromptSource,
    build_messages,
    estimate_llm_tokens,
    not_found_answer,
    pack_sources,
    system_prompt,
)
from query_engine.retrieval import HybridRetriever


@dataclass(frozen=True)
class EngineConfig:
    context_window: int = 2048
    max_answer_tokens: int = 256
    grounding_policy: GroundingPolicy = "flag"
    extractive: ExtractiveConfig = field(default_factory=ExtractiveConfig)


@dataclass
class PreparedQuery:
    question: str
    language: str
    nodes: list[NodeWithScore]
    messages: list[ChatMessage]
    not_found: bool
    timings_ms: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    options: GenerationOptions = SERVER_DEFAULTS  # the request's own (instructions are in messages)


class DocqaQueryEngine(CustomQueryEngine):
    retriever: HybridRetriever = Field(description="hybrid retriever bound to one collection")
    llm: LLM = Field(description="the LLM (the vLLM pool) that writes the answer")
    config: EngineConfig = Field(default_factory=EngineConfig)
    # typed Any: pydantic cannot check a Protocol (Embedder) with isinstance
    embedder: Any = Field(
        None, description="an Embedder that re-ranks extractive candidates by similarity"
    )
    # retrieval takes its turn in the retriever; the extraction after it takes one here
    admission: WorkAdmission = Field(
        default_factory=unlimited, description="bounds the extractions running at once"
    )

    def custom_query(self, query_str: str) -> Response:
        return asyncio.run(self.acustom_query(query_str))

    async def acustom_query(self, query_str: str) -> Response:
        prepared = await self.prepare(query_str)
        parts = [token async for token in self.stream_tokens(prepared)]
        return self.finish(prepared, "".join(parts))

    async def prepare(
        self,
        question: str,
        history: Sequence[ChatMessage] = (),
        options: GenerationOptions = SERVER_DEFAULTS,
    ) -> PreparedQuery:
        """Retrieve and pack; ``question`` is standalone (a follow-up already condensed),
        ``history`` holds the earlier turns the LLM sees before it, and ``options`` are the
        request's own (its instructions join the system prompt, the rest the LLM call)."""
        started = time.perf_counter()
        nodes = await self.retriever.aretrieve(QueryBundle(question))
        trace = self.retriever.trace
        language = detect_language(question)
        timings = {
            "embed": trace.embed_ms,
            "retrieve": (time.perf_counter() - started) * 1000,
            **({"rerank": trace.rerank.ms} if trace.rerank.ms else {}),
        }
        if not trace.relevant or not nodes:
            return PreparedQuery(question, language, [], [], True, timings, started, options)
        sources = [_prompt_source(n, node) for n, node in enumerate(nodes, start=1)]
        history_tokens = sum(estimate_llm_tokens(m.content or "") for m in history)
        budget = self.config.context_window - self.config.max_answer_tokens - history_tokens
        system = system_prompt(options.instructions)
        packed = pack_sources(
            question, sources, budget_tokens=budget, count_tokens=estimate_llm_tokens, system=system
        )
        kept = [_with_text(nodes[s.n - 1], s.text) for s in packed]
        messages = build_messages(question, packed, history, options.instructions)
        return PreparedQuery(question, language, kept, messages, False, timings, started, options)

    async def stream_tokens(self, prepared: PreparedQuery) -> AsyncIterator[str]:
        """Answer tokens as the LLM writes them; the canned answer when nothing was relevant."""
        if prepared.not_found:
            yield not_found_answer(prepared.language)
            return
        llm_started = time.perf_counter()
        first = True
        options = prepared.options.llm_kwargs(self.config.max_answer_tokens)
        stream = await self.llm.astream_chat(prepared.messages, **options)
        try:
            async for chunk in stream:
                if first:
                    prepared.timings_ms["llm_first_token"] = (
                        time.perf_counter() - llm_started
                    ) * 1000
                    first = False
                if chunk.delta:
                    yield chunk.delta
        finally:
            # a client that went away cancels us here: closing the stream closes the HTTP
            # request, and vLLM aborts the generation instead of finishing it for no one
            await stream.aclose()
        prepared.timings_ms["llm_total"] = (time.perf_counter() - llm_started) * 1000

    async def extract(self, prepared: PreparedQuery) -> Response:
        """The extractive answer (no LLM): the source sentence that answers, quoted."""
        if prepared.not_found:
            return self.finish(prepared, "", mode="extractive")
        started = time.perf_counter()
        sources = [
            SourceText(
                n,
                node.node.get_content(),
                context=_context_of(node),
                doc_id=str(node.node.metadata.get("doc_id") or ""),
            )
            for n, node in enumerate(prepared.nodes, start=1)
        ]
        config = self.config.extractive
        # admitted already (retrieval): waits its turn but is not refused, work is not wasted
        async with self.admission.slot(shed=False):
            # Kiwi analysis of every candidate sentence: CPU work, kept off the event loop
            ranked, unknown = await asyncio.gather(
                asyncio.to_thread(rank_sentences, prepared.question, sources, analyze_many),
                self._unknown_share(prepared.question),
            )
            if unknown > config.unknown_ceiling(prepared.question):
                ranked = []  # the collection does not know what the question is about
            answerable = ranked and ranked[0].score >= config.min_score
            top = ranked[: config.rerank_top] if answerable else []
            similarities = await self._similarities(prepared.question, [e.sentence for e in top])
        answer = answer_text(prepared.question, ranked, similarities, sources, config)
        prepared.timings_ms["extract"] = (time.perf_counter() - started) * 1000
        return self.finish(prepared, answer, mode="extractive")

    async def _unknown_share(self, question: str) -> float:
        """The share of the question's topic terms no chunk of the collection holds."""
        if self.config.extractive.unknown_ceiling(question) >= 1.0:
            return 0.0  # no gate for this language: no search
        topic = await asyncio.to_thread(question_topic, question, analyze_many)
        return unknown_share(topic, await self.retriever.known_terms(sorted(topic)))

    async def _similarities(self, question: str, sentences: list[str]) -> list[float]:
        """:func:`question_similarities`; none without an embedder or a dense weight."""
        if self.embedder is None or not sentences or not self.config.extractive.dense_weight:
            return []
        return await question_similarities(self.embedder, question, sentences)

    def finish(
        self, prepared: PreparedQuery, raw_answer: str, *, mode: str = "generative"
    ) -> Response:
        answer = raw_answer.strip() or not_found_answer(prepared.language)
        sources = {n: grounding_text(node) for n, node in enumerate(prepared.nodes, start=1)}
        grounding = check_grounding(answer, sources)
        refusal = not_found_answer(prepared.language)
        final = apply_policy(answer, grounding, self.config.grounding_policy, refusal=refusal)
        not_found = prepared.not_found or is_refusal(final)
        prepared.timings_ms["total"] = (time.perf_counter() - prepared.started) * 1000
        metadata: dict[str, Any] = {
            "language": prepared.language,
            "not_found": not_found,
            "answer_mode": mode,
            "grounding": _responsive_grounding(grounding, prepared.question, final, not_found),
            "cited": sorted(all_cited(final) & set(sources)),
            "timings_ms": {k: round(v, 2) for k, v in prepared.timings_ms.items()},
        }
        return Response(response=final, source_nodes=prepared.nodes, metadata=metadata)


async def question_similarities(
    embedder: Embedder, question: str, sentences: Sequence[str]
) -> list[float]:
    """Cosine of each sentence to the question (e5 vectors are unit length): what re-ranks the
    extractive candidates, here and in the offline calibrations of ``bench``."""
    query = np.asarray(await embedder.embed_query(question), dtype=np.float32)
    passages = np.asarray(await embedder.embed_passages(list(sentences)), dtype=np.float32)
    return [float(x) for x in passages @ query.reshape(-1)]


def _responsive_grounding(
    grounding: GroundingResult, question: str, answer: str, not_found: bool
) -> dict[str, Any]:
    """Grounding as reported: ``verified`` means supported *and* responsive. An answer whose
    facts are all in the sources but that gives no amount for 얼마 (or no date for 언제) does not
    answer the question; "not found" answers nothing but claims nothing either."""
    responsive = not not_found and answers_question(question, answer)
    report = grounding.to_dict()
    report["answers_question"] = responsive
    report["verified"] = grounding.verified and (responsive or not_found)
    return report


def is_refusal(answer: str) -> bool:
    return answer.strip() in NOT_FOUND_ANSWERS.values()


def _context_of(node: NodeWithScore) -> str:
    metadata = node.node.metadata
    return f"{metadata.get('title') or ''}\n{metadata.get('section') or ''}"


def grounding_text(node: NodeWithScore) -> str:
    """What the LLM saw for a source: its header (title, section path) and its text."""
    metadata = node.node.metadata
    header = f"{metadata.get('title') or ''}\n{metadata.get('section') or ''}"
    return f"{header}\n{node.node.get_content()}"


def _prompt_source(n: int, node: NodeWithScore) -> PromptSource:
    metadata = node.node.metadata
    return PromptSource(
        n=n,
        title=str(metadata.get("title") or ""),
        section=str(metadata.get("section") or ""),
        text=node.node.get_content(),
    )


def _with_text(node: NodeWithScore, text: str) -> NodeWithScore:
    """The node as the LLM saw it (packing may have cut its text)."""
    if text == node.node.get_content():
        return node
    copy = node.node.model_copy()
    copy.set_content(text)
    return NodeWithScore(node=copy, score=node.score)
