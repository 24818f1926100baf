"""What the query service is made of, built in one place and in one order.

:class:`QueryRuntime` is created by the app's lifespan (:meth:`QueryRuntime.start`), kept on
``app.state.runtime`` and closed on shutdown (:meth:`QueryRuntime.aclose`). Routes and the front
door read it through ``deps.RuntimeDep``; nothing else of the query side lives on ``app.state``.

Start order: data clients (Redis, Milvus, embedder) → the vLLM pool and the models warm up
together → version watcher → caches, sessions, FAQ → the answerer that ties them together.
Stop order is the reverse.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from typing import Any

from llama_index.core.llms import LLM

from indexing.generations import CurrentGenerationFilter
from query_engine.admission import AdmissionConfig, WorkAdmission
from query_engine.answering import Answerer, AnswererConfig, AnswerRequest
from query_engine.cache import AnswerCache, CachedQueryEmbedder
from query_engine.engine import DocqaQueryEngine, EngineConfig
from query_engine.faq import FaqConfig, FaqStore
from query_engine.llm.pooled_llm import PooledLLM
from query_engine.memory import SessionStore
from query_engine.rerank import HttpReranker, RerankConfig
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from query_engine.versions import VersionWatcher
from services.common.clients import DataClients, build_data_clients, warm_up_models
from services.common.health import DependencyCheck
from services.common.llm_pool import build_pooled_llm
from services.common.metrics import record_rerank
from services.common.settings import QuerySettings, RerankSettings


@dataclass
class QueryRuntime:
    settings: QuerySettings
    clients: DataClients
    llm: LLM  # the pooled LLM; a test may put a scripted one here through use_llm
    versions: VersionWatcher
    embedder: CachedQueryEmbedder  # query embeddings cached in process and in Redis
    generations: CurrentGenerationFilter
    answer_cache: AnswerCache | None
    sessions: SessionStore
    faq: FaqStore
    reranker: HttpReranker | None = None  # the optional cross-encoder stage (DOCQA_RERANK_URL)
    answerer: Answerer = field(init=False)
    admission: WorkAdmission = field(init=False)

    def __post_init__(self) -> None:
        self.admission = WorkAdmission(admission_config(self.settings))
        self.answerer = self._build_answerer()

    @classmethod
    async def start(cls, settings: QuerySettings) -> QueryRuntime:
        clients = build_data_clients(settings)
        llm = build_pooled_llm(settings.llm)
        try:
            # the pool discovers and probes the servers while the models load
            await asyncio.gather(llm.pool.start(), warm_up_models(clients.embedder))
        except BaseException:
            await llm.pool.aclose()  # its watcher tasks must not outlive a failed start
            await clients.aclose()
            raise
        # local copies of index and FAQ versions: a cache hit needs no Redis round trip
        versions = VersionWatcher(
            clients.redis,
            prefix=settings.redis.key_prefix,
            max_age_s=settings.cache.version_max_age_s,
        )
        versions.start()
        return cls.assemble(settings, clients, llm, versions)

    @classmethod
    def assemble(
        cls, settings: QuerySettings, clients: DataClients, llm: LLM, versions: VersionWatcher
    ) -> QueryRuntime:
        """The domain objects over started clients (no I/O)."""
        prefix = settings.redis.key_prefix
        embedder = CachedQueryEmbedder(
            clients.embedder,
            clients.redis,
            prefix=prefix,
            model=settings.embedder.model,
            ttl_s=settings.cache.embedding_ttl_s,
        )
        return cls(
            settings=settings,
            clients=clients,
            llm=llm,
            versions=versions,
            embedder=embedder,
            # a document being replaced shows readers exactly one generation of its chunks
            generations=CurrentGenerationFilter(clients.redis, prefix),
            answer_cache=_answer_cache(settings, clients, versions),
            sessions=SessionStore(
                clients.redis,
                prefix=prefix,
                ttl_s=settings.sessions.ttl_s,
                max_history_tokens=settings.sessions.max_history_tokens,
                max_turns=settings.sessions.max_turns,
            ),
            # the FAQ embeds through the same cached embedder as retrieval
            faq=FaqStore(
                clients.redis,
                prefix=prefix,
                config=faq_config(settings),
                embedder=embedder,
                versions=versions,
            ),
            reranker=build_reranker(settings.rerank),
        )

    async def aclose(self) -> None:
        await self.versions.aclose()
        if self.reranker is not None:
            await self.reranker.aclose()
        pool = getattr(self.llm, "pool", None)
        if pool is not None:
            await pool.aclose()
        await self.clients.aclose()

    def use_llm(self, llm: LLM) -> None:
        """Answer with another LLM from now on (tests script the model this way)."""
        self.llm = llm
        self.answerer = self._build_answerer()

    def readiness_checks(self) -> tuple[DependencyCheck, ...]:
        """Ready means Milvus answers. Without Redis questions are answered uncached, and
        without an LLM in ``auto``/``extractive`` mode (FAQ, cache and ``/v1/retrieve`` need
        none): both only degrade the service, reported on the admin port and in metrics."""
        checks = [
            DependencyCheck("milvus", self.clients.store.ping),
            DependencyCheck("redis", self.clients.redis.ping, required=False),
        ]
        if isinstance(self.llm, PooledLLM):  # a vLLM server serves the model
            checks.append(DependencyCheck("llm", self.llm.pool.check_ready, required=False))
        return tuple(checks)

    def retriever(
        self,
        collection: str,
        top_k: int,
        filters: Mapping[str, Any],
        *,
        as_of: date | None = None,
        parents: bool = True,
    ) -> HybridRetriever:
        """``parents``: sources grown to their parent context (answers); off, the chunks as
        ranked (``/v1/retrieve``, whose clients build their own context)."""
        config = retrieval_config(self.settings, top_k)
        return HybridRetriever(
            store=self.clients.store,
            embedder=self.embedder,
            collection=collection,
            config=config if parents else replace(config, parent_tokens=0),
            filters=filters,
            generations=self.generations,
            as_of=as_of,
            admission=self.admission,
            reranker=self.reranker,
        )

    def _engine_for(self, request: AnswerRequest, llm: LLM) -> DocqaQueryEngine:
        settings = self.settings
        return DocqaQueryEngine(
            retriever=self.retriever(
                request.collection, request.top_k, request.filters, as_of=request.as_of
            ),
            llm=llm,
            embedder=self.embedder,
            admission=self.admission,
            config=EngineConfig(
                context_window=settings.llm.context_window,
                max_answer_tokens=settings.llm.max_answer_tokens,
                grounding_policy=settings.grounding_policy,
            ),
        )

    def _build_answerer(self) -> Answerer:
        settings = self.settings
        return Answerer(
            config=AnswererConfig(
                model=settings.llm.model,
                grounding_policy=settings.grounding_policy,
                max_answer_tokens=settings.llm.max_answer_tokens,
                retrieval_fingerprint=retrieval_fingerprint(settings),
                condense_timeout_s=settings.sessions.condense_timeout_s,
                default_mode=settings.answer_mode,
            ),
            llm=self.llm,
            engine_for=self._engine_for,
            answer_cache=self.answer_cache,
            sessions=self.sessions,
            faq=self.faq.lookup,
        )


def retrieval_fingerprint(settings: QuerySettings) -> str:
    """What decides which sources an answer is built from and which of their sentences an
    extractive answer quotes, for the answer cache's key: a cached answer of another ranking
    (other weights, another reranker) or of other extractive gates is not served."""
    rerank = settings.rerank.model_dump(include={"url", "model", "api", "candidates", "max_chars"})
    extractive = asdict(EngineConfig().extractive)
    fingerprint = {**settings.retrieval.model_dump(), "rerank": rerank, "extractive": extractive}
    return json.dumps(fingerprint, sort_keys=True)


def build_reranker(settings: RerankSettings) -> HttpReranker | None:
    if not settings.url:
        return None
    fields = settings.model_dump(exclude={"api_key"})
    config = RerankConfig(**fields, api_key=settings.api_key.get_secret_value())
    return HttpReranker(config, observe=record_rerank)


def _answer_cache(
    settings: QuerySettings, clients: DataClients, versions: VersionWatcher
) -> AnswerCache | None:
    if not settings.cache.enabled:
        return None
    return AnswerCache(
        clients.redis,
        prefix=settings.redis.key_prefix,
        ttl_s=settings.cache.answer_ttl_s,
        lock_ttl_s=settings.cache.coalesce_wait_s,
        versions=versions,
        hot_entries=settings.cache.hot_entries,
    )


def admission_config(settings: QuerySettings) -> AdmissionConfig:
    bounds = settings.admission
    return AdmissionConfig(
        max_active=bounds.max_active, max_queued=bounds.max_queued, max_wait_s=bounds.max_wait_s
    )


def retrieval_config(settings: QuerySettings, top_k: int) -> RetrievalConfig:
    r = settings.retrieval
    return RetrievalConfig(
        top_k=top_k,
        candidates=max(r.candidates, top_k),
        fusion=r.fusion,
        rrf_k=r.rrf_k,
        dense_weight=r.dense_weight,
        sparse_weight=r.sparse_weight,
        min_dense_score=r.min_dense_score,
        section_refs=r.section_refs,
        parent_tokens=r.parent_tokens,
    )


def faq_config(settings: QuerySettings) -> FaqConfig:
    return FaqConfig(
        enabled=settings.faq.enabled,
        similarity_threshold=settings.faq.similarity_threshold,
        max_entries_per_collection=settings.faq.max_entries_per_collection,
        max_entries_per_request=settings.faq.max_entries_per_request,
        max_question_chars=settings.limits.max_question_chars,
        max_answer_chars=settings.faq.max_answer_chars,
        model=settings.embedder.model,
    )
