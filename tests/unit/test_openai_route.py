"""The OpenAI-compatible routes: what they take, what they refuse, and the shapes they answer in.

The app is the real factory with the real routers; the runtime is a fake of our own seams
(``Answerer.lookup`` / ``answer`` / ``stream``, ``ChunkStore.list_collections``), as in
``test_query_front_door``. The generation options are followed further on their own: into the
answer-cache key (``AnswerKeyParts``, and the parts the real ``Answerer`` builds) and into the LLM
call (the real engine and ``PooledLLM`` over a fake vLLM server).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from docqa_core.errors import CollectionNotFound
from indexing.embedding import Embedder
from indexing.store import ChunkStore, CollectionInfo
from query_engine.answer import Answer, Citation, Grounding
from query_engine.answering import Answerer, AnswererConfig, AnswerRequest, AnswerStream, Lookup
from query_engine.cache import AnswerCache, AnswerKeyParts
from query_engine.engine import DocqaQueryEngine, PreparedQuery
from query_engine.generation import GenerationOptions
from query_engine.llm.pooled_llm import PooledLLM
from query_engine.memory import SessionStore
from query_engine.prompts import (
    ANSWER_STOP_SEQUENCES,
    INSTRUCTIONS_HEADING,
    SYSTEM_PROMPT,
    PromptSource,
    build_messages,
)
from query_engine.retrieval import HybridRetriever, RetrievalConfig
from query_engine.usage import estimate_usage
from services.common.settings import AuthSettings, QuerySettings
from services.query_api.openai_routes import router as openai_router
from services.query_api.routes import router as query_router
from tests.unit._apps import create_test_app
from tests.unit._pool_fakes import FakeCluster, FakeVllm, started_pool

pytestmark = pytest.mark.unit

QUERY_KEY = "q" * 30
AUTH = {"Authorization": f"Bearer {QUERY_KEY}"}
QUESTION = "How often should the burrs be brushed?"
CITATION = Citation(
    n=1,
    doc_id="grinder-guide",
    title="Grinder guide",
    section="Care",
    page=None,
    char_start=0,
    char_end=30,
    score=0.9,
    cited=True,
    text="Brush the burrs every 2 weeks.",
)
ANSWER = Answer(
    answer="Every 2 weeks [1].",
    citations=[CITATION],
    grounding=Grounding(verified=True, unsupported=[], checked_claims=1),
    not_found=False,
    timings_ms={"total": 5.0},
)


class FakeAnswerer:
    """Answers every question with ``ANSWER``; records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[AnswerRequest] = []
        self.fail: Exception | None = None

    async def lookup(self, request: AnswerRequest) -> Lookup:
        if self.fail is not None:
            raise self.fail
        self.asked.append(request)
        return Lookup(request, request.question, list(request.history))

    async def answer(self, request: AnswerRequest, looked_up: Lookup | None = None) -> Answer:
        assert looked_up is not None and looked_up.request == request
        return ANSWER

    async def stream(self, request: AnswerRequest, looked_up: Lookup | None = None) -> AnswerStream:
        assert looked_up is not None and looked_up.request == request
        return AnswerStream.complete(ANSWER)


class FakeStore:
    async def list_collections(self) -> list[CollectionInfo]:
        return [CollectionInfo("grinders", 1_700_000_000), CollectionInfo("rules", 0)]


@dataclass
class FakeRuntime:
    settings: QuerySettings
    answerer: FakeAnswerer
    clients: Any = field(default_factory=lambda: SimpleNamespace(store=FakeStore()))


def build(answerer: FakeAnswerer) -> FastAPI:
    settings = QuerySettings(
        log_json=False,
        auth=AuthSettings(query_keys=[SecretStr(QUERY_KEY)], admin_keys=[SecretStr("a" * 30)]),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = FakeRuntime(settings, answerer)
        yield

    return create_test_app(
        title="openai-test",
        service="openai",
        settings=settings,
        lifespan=lifespan,
        routers=[query_router, openai_router],
    )


@asynccontextmanager
async def client_for(answerer: FakeAnswerer) -> AsyncIterator[httpx.AsyncClient]:
    app = build(answerer)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": "grinders", "messages": [{"role": "user", "content": QUESTION}], **extra}


async def post(body: dict[str, Any], answerer: FakeAnswerer | None = None) -> httpx.Response:
    async with client_for(answerer or FakeAnswerer()) as client:
        return await client.post("/v1/chat/completions", json=body, headers=AUTH)


def openai_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


def sse_chunks(text: str) -> list[Any]:
    data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(item) for item in data[:-1]]


# ------------------------------------------------------------------ refusals, in OpenAI's shape


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ],
)
async def test_unsupported_parameters_are_a_400_naming_them(
    extra: dict[str, Any], param: str
) -> None:
    answerer = FakeAnswerer()
    response = await post(completion(**extra), answerer)
    assert response.status_code == 400
    error = openai_error(response)
    assert error["type"] == "invalid_request_error"
    assert (error["param"], error["code"]) == (param, "unsupported_parameter")
    assert answerer.asked == []


@pytest.mark.parametrize(
    "extra",
    [{"n": 1}, {"tools": [], "tool_choice": "none"}, {"response_format": {"type": "text"}}],
)
async def test_parameters_asking_for_nothing_missing_are_accepted(extra: dict[str, Any]) -> None:
    assert (await post(completion(**extra))).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {"model": "grinders", "messages": [{"role": "robot", "content": "hi"}]},
            "messages[0].role",
        ),
        ({"model": "grinders"}, "messages"),
        (completion(temperature=3), "temperature"),
        (completion(stop=["a", "b", "c", "d", "e"]), "stop"),
        (completion(max_tokens=100_000), "max_tokens"),
        ({"model": "grinders", "messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ],
)
async def test_invalid_requests_are_a_400_in_openais_shape(
    body: dict[str, Any], param: str
) -> None:
    response = await post(body)
    assert response.status_code == 400, response.text
    error = openai_error(response)
    assert error["type"] == "invalid_request_error" and error["param"] == param


async def test_instructions_over_the_limit_are_refused() -> None:
    messages = [
        {"role": "system", "content": "x" * 1500},
        {"role": "developer", "content": "y" * 600},
        {"role": "user", "content": QUESTION},
    ]
    response = await post({"model": "grinders", "messages": messages})
    assert response.status_code == 400
    assert openai_error(response)["param"] == "messages"


async def test_malformed_json_is_a_400_in_openais_shape() -> None:
    async with client_for(FakeAnswerer()) as client:
        response = await client.post(
            "/v1/chat/completions",
            content=b'{"model": ',
            headers={**AUTH, "Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert openai_error(response)["code"] == "invalid_json"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-wrong-key-wrong"}])
async def test_auth_failures_are_in_openais_shape_here_and_docqas_elsewhere(
    headers: dict[str, str],
) -> None:
    async with client_for(FakeAnswerer()) as client:
        chat = await client.post("/v1/chat/completions", json=completion(), headers=headers)
        models = await client.get("/v1/models", headers=headers)
        query = await client.post(
            "/v1/query", json={"collection": "grinders", "question": QUESTION}, headers=headers
        )
    for response in (chat, models):
        assert response.status_code == 401
        assert openai_error(response)["type"] == "authentication_error"
    assert query.status_code == 401
    assert query.json()["error"]["code"] == "unauthorized" and "request_id" in query.json()


async def test_an_unknown_collection_is_a_404_naming_the_model() -> None:
    answerer = FakeAnswerer()
    answerer.fail = CollectionNotFound("collection 'nope' does not exist")
    response = await post(completion(model="nope"), answerer)
    assert response.status_code == 404
    error = openai_error(response)
    assert (error["param"], error["code"]) == ("model", "collection_not_found")


# ------------------------------------------------------------------ what reaches the answerer


async def test_system_messages_and_generation_options_reach_the_answer_request() -> None:
    answerer = FakeAnswerer()
    messages = [
        {"role": "system", "content": "Answer in one short sentence."},
        {"role": "developer", "content": [{"type": "text", "text": "Mention the page."}]},
        {"role": "user", "content": QUESTION},
    ]
    body = {"model": "grinders", "messages": messages, "max_tokens": 20, "temperature": 0.5}
    response = await post({**body, "stop": "END"}, answerer)
    assert response.status_code == 200, response.text
    (asked,) = answerer.asked
    assert asked.question == QUESTION and asked.history == ()
    assert asked.generation == GenerationOptions(
        instructions="Answer in one short sentence.\n\nMention the page.",
        max_tokens=20,
        temperature=0.5,
        stop=("END",),
    )


async def test_max_completion_tokens_and_a_stop_list_are_taken() -> None:
    answerer = FakeAnswerer()
    await post(completion(max_completion_tokens=30, stop=["\n\n", "END"]), answerer)
    (asked,) = answerer.asked
    assert (asked.generation.max_tokens, asked.generation.stop) == (30, ("\n\n", "END"))


async def test_a_plain_request_keeps_the_server_defaults() -> None:
    answerer = FakeAnswerer()
    await post(completion(), answerer)
    assert answerer.asked[0].generation == GenerationOptions()


# ------------------------------------------------------------------ responses


async def test_a_completion_carries_usage_and_docqas_fields() -> None:
    response = await post(completion())
    assert response.status_code == 200
    body = response.json()
    expected = estimate_usage(ANSWER, question=QUESTION)
    assert body["usage"] == expected.to_dict()
    assert body["usage"]["prompt_tokens"] > body["usage"]["completion_tokens"] > 0
    assert body["choices"][0]["message"]["content"] == ANSWER.answer
    assert body["docqa"]["citations"][0]["doc_id"] == "grinder-guide"


async def test_a_stream_with_include_usage_ends_with_a_usage_chunk() -> None:
    response = await post(completion(stream=True, stream_options={"include_usage": True}))
    chunks = sse_chunks(response.text)
    *answer_chunks, last = chunks
    assert last["choices"] == [] and last["usage"] == response_usage()
    assert all(chunk["usage"] is None for chunk in answer_chunks)
    assert answer_chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "docqa" in answer_chunks[-1]


async def test_a_stream_without_include_usage_has_no_usage() -> None:
    chunks = sse_chunks((await post(completion(stream=True))).text)
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def response_usage() -> dict[str, int]:
    return estimate_usage(ANSWER, question=QUESTION).to_dict()


async def test_usage_counts_the_instructions_and_the_conversation() -> None:
    plain = estimate_usage(ANSWER, question=QUESTION)
    instructed = estimate_usage(ANSWER, question=QUESTION, instructions="Be brief.")
    assert instructed.prompt_tokens > plain.prompt_tokens
    faq_like = ANSWER.model_copy(update={"citations": []})
    assert estimate_usage(faq_like, question=QUESTION).prompt_tokens == 0


async def test_models_lists_the_collections() -> None:
    async with client_for(FakeAnswerer()) as client:
        response = await client.get("/v1/models", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {
        "object": "list",
        "data": [
            {"id": "grinders", "object": "model", "created": 1_700_000_000, "owned_by": "docqa"},
            {"id": "rules", "object": "model", "created": 0, "owned_by": "docqa"},
        ],
    }


# ------------------------------------------------------------------ the cache key


def key_parts(**changes: Any) -> AnswerKeyParts:
    base: dict[str, Any] = {
        "collection": "kb",
        "question": QUESTION,
        "filters": {},
        "top_k": 4,
        "model": "smollm2",
        "prompt_version": "3",
        "grounding_policy": "flag",
        "max_answer_tokens": 256,
    }
    return AnswerKeyParts(**{**base, **changes})


@pytest.mark.parametrize(
    "change",
    [
        {"instructions": "Answer in French."},
        {"max_tokens": 20},
        {"temperature": 0.7},
        {"stop": ("END",)},
    ],
)
def test_every_generation_option_changes_the_cache_key(change: dict[str, Any]) -> None:
    assert key_parts(**change).digest() != key_parts().digest()


def test_unset_options_leave_the_key_as_it_was() -> None:
    """Answers cached before the options existed stay reachable."""
    unset = key_parts(instructions="", max_tokens=None, temperature=None, stop=())
    assert unset.digest() == key_parts().digest()


class RecordingCache:
    def __init__(self) -> None:
        self.parts: list[AnswerKeyParts] = []

    async def lookup(self, parts: AnswerKeyParts) -> tuple[str | None, None]:
        self.parts.append(parts)
        return None, None


async def test_the_answerer_keys_answers_by_the_requests_options() -> None:
    cache = RecordingCache()
    answerer = Answerer(
        config=AnswererConfig(
            model="m",
            grounding_policy="flag",
            max_answer_tokens=256,
            retrieval_fingerprint="r",
            condense_timeout_s=1.0,
        ),
        llm=cast(Any, object()),
        engine_for=cast(Any, None),
        answer_cache=cast(AnswerCache, cache),
        sessions=cast(SessionStore, object()),
    )
    options = GenerationOptions(
        instructions="Be brief.", max_tokens=20, temperature=0.2, stop=("X",)
    )
    await answerer.lookup(AnswerRequest("kb", QUESTION, 4))
    await answerer.lookup(AnswerRequest("kb", QUESTION, 4, generation=options))
    plain, optioned = cache.parts
    assert (optioned.instructions, optioned.max_tokens) == ("Be brief.", 20)
    assert (optioned.temperature, optioned.stop) == (0.2, ("X",))
    assert plain.digest() != optioned.digest()


# ------------------------------------------------------------------ the prompt and the LLM call


def test_instructions_follow_docqas_rules_under_a_heading() -> None:
    source = PromptSource(1, "Grinder guide", "", "Brush the burrs every 2 weeks.")
    system = build_messages(QUESTION, [source], instructions="Be brief.")[0].content or ""
    assert system.startswith(SYSTEM_PROMPT)  # the rules first and whole: a shared prefix
    assert system.endswith(f"{INSTRUCTIONS_HEADING}\nBe brief.")
    assert build_messages(QUESTION, [source])[0].content == SYSTEM_PROMPT


async def test_generation_options_reach_the_llm_call() -> None:
    server = FakeVllm("http://10.0.0.1:8000/v1", tokens=["Every 2 weeks [1]."])
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
    options = GenerationOptions(max_tokens=20, temperature=0.3, stop=("END",))
    source = PromptSource(1, "Grinder guide", "", "Brush the burrs every 2 weeks.")
    messages = build_messages(QUESTION, [source])
    prepared = PreparedQuery(QUESTION, "en", [], messages, not_found=False, options=options)
    try:
        assert "".join([t async for t in engine.stream_tokens(prepared)]) == "Every 2 weeks [1]."
    finally:
        await pool.aclose()
    (request,) = server.chat_requests
    assert request["stop"] == ["END", *ANSWER_STOP_SEQUENCES]
    assert (request["max_tokens"], request["temperature"]) == (20, 0.3)
