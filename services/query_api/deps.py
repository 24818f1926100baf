"""Typed dependencies for the query routes: the objects the lifespan put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from llama_index.core.llms import LLM

from indexing.embedding import Embedder
from indexing.store import ChunkStore
from query_engine.answering import Answerer
from query_engine.memory import SessionStore
from services.common.settings import QuerySettings


async def _settings(request: Request) -> QuerySettings:
    settings: QuerySettings = request.app.state.settings
    return settings


async def _store(request: Request) -> ChunkStore:
    store: ChunkStore = request.app.state.store
    return store


async def _embedder(request: Request) -> Embedder:
    embedder: Embedder = request.app.state.embedder
    return embedder


async def _llm(request: Request) -> LLM:
    """The pooled LLM (``query_engine.llm.pooled_llm.PooledLLM``); per request, use
    ``llm.for_request(session_id=..., collection=...)`` for affinity and LoRA routing."""
    llm: LLM = request.app.state.llm
    return llm


SettingsDep = Annotated[QuerySettings, Depends(_settings)]
StoreDep = Annotated[ChunkStore, Depends(_store)]
EmbedderDep = Annotated[Embedder, Depends(_embedder)]
LLMDep = Annotated[LLM, Depends(_llm)]


async def _answerer(request: Request) -> Answerer:
    answerer: Answerer = request.app.state.answerer
    return answerer


async def _sessions(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.sessions
    return sessions


AnswererDep = Annotated[Answerer, Depends(_answerer)]
SessionsDep = Annotated[SessionStore, Depends(_sessions)]
