"""Answering on real Milvus, Redis and vLLM: citations, "not found", caches, coalescing,
streaming, sessions, the OpenAI-compatible endpoint, and life without Redis.

LLM calls are counted from vLLM's own ``/metrics`` (``vllm:request_success_total``), so "no LLM
call" and "one LLM call" are what the server saw, not what our code believes it did.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from llama_index.core.llms import (
    CompletionResponse,
    CompletionResponseGen,
    CustomLLM,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback

from deploy import processes, stack
from services.common.admin import build_admin_app
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.fixtures.documents import ENGLISH_GUIDE, KOREAN_RULES
from tests.integration.conftest import (
    QUERY_AUTH,
    QUERY_KEY,
    ingest,
    query_settings,
    running,
)

RULES = {"doc_id": "library-rules", "title": "한빛 도서관 이용 규칙", "text": KOREAN_RULES}
GUIDE = {"doc_id": "grinder-guide", "title": "Kestrel Coffee Grinder Guide", "text": ENGLISH_GUIDE}
_SUCCESS = re.compile(r'^vllm:request_success_total\{[^}]*finished_reason="(\w+)"[^}]*\}\s+(\S+)')


async def vllm_requests(llm_url: str | None) -> dict[str, float]:
    """Finished requests by reason, as the vLLM server counts them."""
    assert llm_url
    async with httpx.AsyncClient() as client:
        text = (await client.get(llm_url.removesuffix("/v1") + "/metrics")).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = _SUCCESS.match(line)
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0.0) + float(match.group(2))
    return counts


async def vllm_generation_tokens(llm_url: str | None) -> float:
    """Tokens generated so far, as the vLLM server counts them."""
    assert llm_url
    async with httpx.AsyncClient() as client:
        text = (await client.get(llm_url.removesuffix("/v1") + "/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:generation_tokens_total")
    )


async def llm_calls_during(llm_url: str | None, before: dict[str, float]) -> float:
    after = await vllm_requests(llm_url)
    return sum(after.values()) - sum(before.values())


async def ask(client: httpx.AsyncClient, collection: str, question: str, **extra: Any) -> Any:
    response = await client.post(
        "/v1/query",
        json={"collection": collection, "question": question, **extra},
        headers=QUERY_AUTH,
    )
    assert response.status_code == 200, response.text
    return response.json()


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_korean_question_is_answered_citing_the_right_article(
    indexing_client: httpx.AsyncClient, query_client: httpx.AsyncClient, collection: str
) -> None:
    await ingest(indexing_client, collection, [RULES, GUIDE])
    body = await ask(query_client, collection, "도서 대출 기간은 며칠인가요?")
    assert body["not_found"] is False
    assert body["answer"].strip()
    top = body["citations"][0]
    assert top["doc_id"] == "library-rules"
    assert "제3조" in top["section"]
    assert KOREAN_RULES[top["char_start"] : top["char_end"]] == top["text"]


async def test_unanswerable_question_gets_not_found_without_an_llm_call(
    indexing_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    collection: str,
    servers: Servers,
) -> None:
    await ingest(indexing_client, collection, [RULES, GUIDE])
    before = await vllm_requests(servers.llm_url)
    korean = await ask(query_client, collection, "화성 탐사 로켓의 연료 효율은 어떻게 계산하나요?")
    english = await ask(query_client, collection, "Who won the 1998 football world cup final?")
    assert korean["not_found"] and korean["answer"] == "제공된 문서에서 답을 찾을 수 없습니다."
    assert english["not_found"] and english["answer"] == "I could not find this in the documents."
    assert korean["citations"] == [] and "llm_total" not in korean["timings_ms"]
    assert await llm_calls_during(servers.llm_url, before) == 0


async def test_repeated_question_is_cached_until_the_collection_changes(
    indexing_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    collection: str,
    servers: Servers,
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    question = "How often should the burrs be brushed?"
    first = await ask(query_client, collection, question)
    before = await vllm_requests(servers.llm_url)
    second = await ask(query_client, collection, "  how often should the burrs be brushed  ")
    assert await llm_calls_during(servers.llm_url, before) == 0
    assert first["cached"] is False and second["cached"] is True
    assert second["answer"] == first["answer"]
    assert second["citations"] == first["citations"]

    changed = {**GUIDE, "text": ENGLISH_GUIDE.replace("every 2 weeks", "every 3 weeks")}
    await ingest(indexing_client, collection, [changed])
    third = await ask(query_client, collection, question)
    assert third["cached"] is False
    assert "every 3 weeks" in third["citations"][0]["text"]


async def test_identical_concurrent_questions_make_one_llm_call(
    indexing_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    collection: str,
    servers: Servers,
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    before = await vllm_requests(servers.llm_url)
    question = "Which grind setting of the Kestrel grinder suits a French press?"
    answers = await asyncio.gather(*(ask(query_client, collection, question) for _ in range(20)))
    assert await llm_calls_during(servers.llm_url, before) == 1
    assert len({a["answer"] for a in answers}) == 1
    computed = [a for a in answers if not a["coalesced"] and not a["cached"]]
    assert len(computed) == 1


async def test_streaming_sends_tokens_then_a_final_event(
    indexing_client: httpx.AsyncClient, query_client: httpx.AsyncClient, collection: str
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    response = await query_client.post(
        "/v1/query",
        json={
            "collection": collection,
            "question": "What does grind setting 4 of the Kestrel grinder suit?",
            "stream": True,
        },
        headers=QUERY_AUTH,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"token"} and len(names) >= 2
    final = events[-1][1]
    streamed = "".join(data["text"] for name, data in events if name == "token")
    # the final answer is the streamed text unless a check changed it, and then it says why
    assert (
        streamed.strip() == final["answer"]
        or final["grounding"]["verified"] is False
        or final["fallback_reason"] is not None
    )
    assert final["citations"][0]["doc_id"] == "grinder-guide"
    assert {"llm_first_token", "llm_total", "total"} <= set(final["timings_ms"])


async def test_streaming_a_cached_answer_sends_it_whole(
    indexing_client: httpx.AsyncClient, query_client: httpx.AsyncClient, collection: str
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    plain = await ask(
        query_client, collection, "What does grind setting 12 of the Kestrel grinder suit?"
    )
    response = await query_client.post(
        "/v1/query",
        json={
            "collection": collection,
            "question": "What does grind setting 12 of the Kestrel grinder suit?",
            "stream": True,
        },
        headers=QUERY_AUTH,
    )
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["token", "done"]
    assert events[0][1]["text"] == plain["answer"]
    assert events[1][1]["cached"] is True


async def test_streaming_errors_before_the_first_token_are_http_errors(
    query_client: httpx.AsyncClient,
) -> None:
    response = await query_client.post(
        "/v1/query",
        json={"collection": "no_such_collection_x", "question": "anything?", "stream": True},
        headers=QUERY_AUTH,
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "collection_not_found"


async def test_session_follow_up_is_condensed_and_the_session_can_be_deleted(
    indexing_client: httpx.AsyncClient, query_client: httpx.AsyncClient, collection: str
) -> None:
    await ingest(indexing_client, collection, [RULES, GUIDE])
    session = {"session_id": f"s-{collection}"}
    first = await ask(query_client, collection, "도서 대출 기간은 며칠인가요?", **session)
    assert first["standalone_question"] is None
    follow_up = await ask(query_client, collection, "연장은 몇 번 가능한가요?", **session)
    assert follow_up["standalone_question"]
    assert follow_up["cached"] is False

    path = f"/v1/sessions/{session['session_id']}"
    other_key = {"Authorization": "Bearer test-admin-key"}
    assert (await query_client.delete(path, headers=other_key)).status_code == 404
    assert (await query_client.delete(path, headers=QUERY_AUTH)).status_code == 204
    gone = await query_client.delete(path, headers=QUERY_AUTH)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "session_not_found"
    fresh = await ask(query_client, collection, "연장은 몇 번 가능한가요?", **session)
    assert fresh["standalone_question"] is None


class ScriptedLLM(CustomLLM):
    """Always writes the same answer: the way to plant a wrong number on purpose."""

    answer: str

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_chat_model=False)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.answer)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            text = ""
            for word in self.answer.split(" "):
                delta = word if not text else " " + word
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return gen()


@pytest.mark.parametrize(
    ("answer", "verified"),
    [
        ("Brush the burrs every 2 weeks [1].", True),
        ("Brush the burrs every 5 weeks [1].", False),
    ],
)
async def test_grounding_flags_a_planted_wrong_number(
    indexing_client: httpx.AsyncClient,
    data_servers: Servers,
    collection: str,
    answer: str,
    verified: bool,
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    app = build_query_app(query_settings(data_servers))
    async with running(app) as client:
        app.state.runtime.use_llm(ScriptedLLM(answer=answer))
        body = await ask(
            client, collection, "How often should the burrs be brushed?", answer_mode="generative"
        )
    assert body["answer"] == answer  # the default policy flags, it does not rewrite
    assert body["grounding"]["verified"] is verified
    unsupported = [claim["claim"] for claim in body["grounding"]["unsupported"]]
    planted_flagged = any(claim.startswith("5") for claim in unsupported)
    assert planted_flagged is not verified and (verified or len(unsupported) == 1)


async def test_official_openai_client_works(
    indexing_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    servers: Servers,
    collection: str,
) -> None:
    await ingest(indexing_client, collection, [RULES, GUIDE])
    client = openai.AsyncOpenAI(
        api_key=QUERY_KEY, base_url="http://testserver/v1", http_client=query_client
    )
    assert collection in [model.id async for model in client.models.list()]
    messages: Sequence[Any] = [
        {"role": "user", "content": "Which grind setting of the Kestrel grinder suits espresso?"}
    ]
    completion = await client.chat.completions.create(model=collection, messages=messages)
    assert completion.choices[0].message.content
    extra = completion.model_extra or {}
    assert extra["docqa"]["citations"][0]["doc_id"] == "grinder-guide"
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    stream = await client.chat.completions.create(model=collection, messages=messages, stream=True)
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert (chunks[-1].model_extra or {})["docqa"]["grounding"] is not None

    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="no_such_collection_y", messages=messages)

    await _openai_usage_options_and_errors(client, query_client, servers, collection, messages)


async def _openai_usage_options_and_errors(
    client: openai.AsyncOpenAI,
    http_client: httpx.AsyncClient,
    servers: Servers,
    collection: str,
    messages: Sequence[Any],
) -> None:
    stream = await client.chat.completions.create(
        model=collection, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert chunks[-2].choices[0].finish_reason == "stop"

    # the plain question is cached by now: a system message and max_tokens make another answer
    generated_before = await vllm_generation_tokens(servers.llm_url)
    short = await client.chat.completions.create(
        model=collection,
        messages=[{"role": "system", "content": "Answer in at most five words."}, *messages],
        max_tokens=20,
    )
    extra = (short.model_extra or {})["docqa"]
    assert extra["cached"] is False
    # the only ways to no generated token: the pool turned the model away, or nothing was found
    assert extra.get("fallback_reason") not in ("llm_unavailable", "llm_saturated"), extra
    assert not extra.get("not_found"), extra
    assert 0 < await vllm_generation_tokens(servers.llm_url) - generated_before <= 20

    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model=collection, messages=messages, n=2)
    assert refused.value.param == "n" and refused.value.type == "invalid_request_error"
    wrong_key = openai.AsyncOpenAI(
        api_key="not-a-key", base_url="http://testserver/v1", http_client=http_client
    )
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        await wrong_key.chat.completions.create(model=collection, messages=messages)
    assert unauthorized.value.body == {
        "message": "invalid API key",
        "type": "authentication_error",
        "param": None,
        "code": "unauthorized",
    }


async def test_questions_are_answered_with_redis_stopped(
    indexing_client: httpx.AsyncClient, servers: Servers, collection: str, runtime_dir: Path
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    port = processes.free_port()
    spec = stack.redis_spec(stack.StackPaths(runtime_dir), port, name="doomed-redis")
    processes.start(spec)
    processes.wait_until_ready(spec, stack.redis_ready(port), timeout_s=30)
    try:
        settings = query_settings(servers, redis={"url": f"redis://127.0.0.1:{port}/0"})
        app = build_query_app(settings)
        async with running(app) as client:
            question = "Which grind setting of the Kestrel grinder suits pour-over?"
            await ask(client, collection, question)
            processes.stop(spec.pid_path)
            body = await ask(client, collection, question)
            ready = await client.get("/readyz")
            transport = httpx.ASGITransport(app=build_admin_app(app))
            async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
                detail = (await admin.get("/readyz")).json()
    finally:
        processes.stop(spec.pid_path)
    assert body["cached"] is False and body["answer"].strip()
    assert body["citations"][0]["doc_id"] == "grinder-guide"
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert detail["status"] == "degraded" and detail["failed"] == ["redis"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("Brush the burrs every 5 weeks [1].", "unsupported_claims"),  # a number not in [1]
        ("The grinder is called Kestrel [1].", "does_not_answer"),  # true, but not a frequency
        ("Brush the burrs every 2 weeks.", "no_citation"),  # right, but traceable to nothing
    ],
)
async def test_auto_mode_replaces_a_wrong_generated_answer_with_the_source_sentence(
    indexing_client: httpx.AsyncClient,
    data_servers: Servers,
    collection: str,
    answer: str,
    reason: str,
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    app = build_query_app(query_settings(data_servers))
    async with running(app) as client:
        app.state.runtime.use_llm(ScriptedLLM(answer=answer))
        body = await ask(
            client, collection, "How often should the burrs be brushed?", answer_mode="auto"
        )
    assert body["answer_mode"] == "extractive" and body["fallback_reason"] == reason
    assert "2 weeks" in body["answer"] and body["grounding"]["verified"] is True
    cited = [c for c in body["citations"] if c["cited"]]
    assert len(cited) == 1 and f"[{cited[0]['n']}]" in body["answer"]
    assert body["answer"].split(" [")[0] in cited[0]["text"]  # quoted verbatim


async def test_auto_mode_keeps_a_supported_cited_generated_answer(
    indexing_client: httpx.AsyncClient, data_servers: Servers, collection: str
) -> None:
    await ingest(indexing_client, collection, [GUIDE])
    app = build_query_app(query_settings(data_servers))
    written = "You should brush the burrs every 2 weeks [1]."
    async with running(app) as client:
        app.state.runtime.use_llm(ScriptedLLM(answer=written))
        body = await ask(
            client, collection, "How often should the burrs be brushed?", answer_mode="auto"
        )
    assert (body["answer"], body["answer_mode"], body["fallback_reason"]) == (
        written,
        "generative",
        None,
    )
    assert body["grounding"]["verified"] is True
