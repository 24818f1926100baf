"""What answers *say*, on real Milvus, Redis and the real local vLLM model: the right amount,
date, count or article for the project's own Korean and English documents, ``[n]`` markers
that are the returned citations, and grounding that catches "wrong but copied" answers (a
number of the source said of another fact; fluent text that answers another question).

``extractive`` and ``auto`` are the modes a user of the local stack gets (``make up`` serves
``extractive``); ``auto`` asks the real model first and must end with a right answer either way.
"""

from __future__ import annotations

import httpx
import pytest

from docqa_core.citations import cited_numbers
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.integration.conftest import ingest, query_settings, running
from tests.integration.test_answering import GUIDE, RULES, ScriptedLLM, ask

# (question, what the answer must say, the section its citation must be in)
KOREAN = [
    ("도서 대출 기간은 며칠인가요?", "14일", "제3조"),
    ("임직원은 한 번에 몇 권까지 빌릴 수 있나요?", "5권", "제3조"),
    ("자료를 잃어버리면 정가의 몇 배를 내야 하나요?", "1.5배", "제4조"),
    ("이 규칙은 언제부터 시행하나요?", "2025년 4월 1일", "부칙"),
]
ENGLISH = [
    ("Which grind setting suits espresso?", "Setting 4", "Grind settings"),
    ("How often should the burrs be brushed?", "2 weeks", "Cleaning"),
    ("After how many seconds does the motor stop?", "90 seconds", "Grind settings"),
]


async def _check_says(
    client: httpx.AsyncClient, collection: str, question: str, fact: str, section: str, mode: str
) -> None:
    body = await ask(client, collection, question, answer_mode=mode)
    where = f"{mode}: {question!r} → {body['answer']!r}"
    assert body["not_found"] is False, where
    assert fact.lower() in body["answer"].lower(), where
    markers = cited_numbers(body["answer"]) or set()
    returned = {c["n"] for c in body["citations"]}
    assert markers and markers <= returned, where  # every [n] is a returned source
    assert {c["n"] for c in body["citations"] if c["cited"]} == markers, where
    cited = [c for c in body["citations"] if c["n"] in markers]
    assert any(section in c["section"] or section in c["text"] for c in cited), where
    assert any(fact.lower() in c["text"].lower() for c in cited), where
    assert body["grounding"]["verified"] is True, where


@pytest.mark.parametrize("mode", ["extractive", "auto"])
async def test_answers_say_the_right_fact_in_korean_and_english(
    indexing_client: httpx.AsyncClient,
    query_client: httpx.AsyncClient,
    collection: str,
    mode: str,
) -> None:
    await ingest(indexing_client, collection, [RULES, GUIDE])
    for question, fact, section in [*KOREAN, *ENGLISH]:
        await _check_says(query_client, collection, question, fact, section, mode)


@pytest.mark.parametrize(
    ("question", "written", "fact"),
    [
        # a number of the cited source, said of another fact: 7 is the extension, 14 the period
        ("도서 대출 기간은 며칠인가요?", "대출 기간은 7일입니다 [1].", "14일"),
        # the same with English: setting 12 is pour-over
        ("Which grind setting suits espresso?", "Setting 12 suits espresso [1].", "Setting 4"),
        # fluent and true, but it answers another question (who may use it, not when)
        ("이 규칙은 언제부터 시행하나요?", "임직원이 도서관을 이용할 수 있습니다 [1].", "2025년"),
    ],
)
async def test_wrong_but_copied_answers_are_caught_and_replaced(
    indexing_client: httpx.AsyncClient,
    data_servers: Servers,
    collection: str,
    question: str,
    written: str,
    fact: str,
) -> None:
    await ingest(indexing_client, collection, [RULES, GUIDE])
    app = build_query_app(query_settings(data_servers))
    async with running(app) as client:
        app.state.runtime.use_llm(ScriptedLLM(answer=written))
        generative = await ask(client, collection, question, answer_mode="generative")
        auto = await ask(client, collection, question, answer_mode="auto")
    assert generative["answer"] == written
    assert generative["grounding"]["verified"] is False, generative["grounding"]
    assert auto["answer_mode"] == "extractive" and auto["fallback_reason"] is not None
    assert fact in auto["answer"] and auto["grounding"]["verified"] is True
