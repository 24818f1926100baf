"""The engine asks the LLM to stop where the prompt's template would start again.

Small models echo the template after their answer ("Question: …\\nAnswer:") and then answer once
more, up to the token limit: SmolLM2 did so on the sample question. The fake vLLM server honours
``stop`` the way vLLM does (the text ends before the first stop string); the LLM in between is the
real ``PooledLLM`` over the real pool.
"""

from __future__ import annotations

from typing import Any, cast

from indexing.embedding import Embedder
from indexing.store import ChunkStore
from query_engine.engine import DocqaQueryEngine, PreparedQuery
from query_engine.llm.pooled_llm import PooledLLM
from query_engine.prompts import ANSWER_STOP_SEQUENCES, PromptSource, build_messages
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from tests.unit._pool_fakes import FakeCluster, FakeVllm, started_pool

ANSWER = "Brush the burrs every 2 weeks [1]."
ECHO = ["\nQuestion: How often?", "\nAnswer: Every 2 weeks [1].", "\nSources:\n\n[2] …"]


async def _answer(server: FakeVllm) -> str:
    pool = await started_pool(FakeCluster(server))
    unused = cast(Any, object())  # stream_tokens does not retrieve
    engine = DocqaQueryEngine(
        retriever=HybridRetriever(
            store=cast(ChunkStore, unused),
            embedder=cast(Embedder, unused),
            collection="kb",
            config=RetrievalConfig(),
        ),
        llm=PooledLLM(pool=pool, model="m"),
    )
    source = PromptSource(1, "Grinder guide", "", "Brush the burrs every 2 weeks.")
    question = "How often should the burrs be brushed?"
    prepared = PreparedQuery(
        question, "en", [], build_messages(question, [source]), not_found=False
    )
    try:
        return "".join([token async for token in engine.stream_tokens(prepared)])
    finally:
        await pool.aclose()


async def test_an_echoed_template_is_cut_off() -> None:
    server = FakeVllm(
        "http://10.0.0.1:8000/v1", tokens=["Brush the burrs ", "every 2 weeks [1].", *ECHO]
    )
    assert await _answer(server) == ANSWER
    (request,) = server.chat_requests
    assert request["stop"] == list(ANSWER_STOP_SEQUENCES)


async def test_every_stop_sequence_is_a_marker_of_the_prompt() -> None:
    """A stop string that does not start a line of the prompt would cut answers for no reason."""
    prompt = build_messages("q", [PromptSource(1, "t", "", "text")])[-1].content or ""
    assert all(stop in "\n" + prompt for stop in ANSWER_STOP_SEQUENCES)


async def test_an_answer_without_an_echo_is_whole() -> None:
    server = FakeVllm("http://10.0.0.1:8000/v1", tokens=["Brush the burrs ", "every 2 weeks [1]."])
    assert await _answer(server) == ANSWER
