"""Dated versions of regulations: reading 시행일 statements, the validity keys chunks store, and
which version of a group is in force at a date (boundary days included)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, cast

import pytest
from llama_index.core.llms import LLM

from docqa_core.errors import InvalidRequest
from indexing import schema
from indexing.chunking import Chunk
from indexing.source_documents import SourceDocument, chunk_metadata, validate_document
from indexing.store import Hit
from indexing.validity import document_validity, effective_from_text, parse_date
from query_engine import dated_versions
from query_engine.answering import (
    Answerer,
    AnswererConfig,
    AnswerRequest,
    EngineFactory,
    Lookup,
)
from query_engine.cache import AnswerKeyParts
from query_engine.dated_versions import superseded, validity_expression
from query_engine.memory import SessionStore


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("부칙\n이 규정은 2025년 3월 1일부터 시행한다.", date(2025, 3, 1)),
        ("부 칙\n① 이 규정은 2025. 3. 1.부터 시행한다.", date(2025, 3, 1)),
        ("본 지침은 2024.12.1부터 시행한다", date(2024, 12, 1)),
        ("이 여비규정은 2023-07-15부터 이를 시행한다.", date(2023, 7, 15)),
        ("출장 규정\n[시행 2025. 3. 1.] [규정 제12호, 2025. 2. 10., 일부개정]", date(2025, 3, 1)),
        ("시행일: 2026. 1. 2.", date(2026, 1, 2)),
        ("This regulation shall take effect on March 1, 2025.", date(2025, 3, 1)),
        ("This policy is effective from 1 July 2024.", date(2024, 7, 1)),
        ("This amended travel policy takes effect as of 2025-03-01.", date(2025, 3, 1)),
        ("Effective date: Sept. 9, 2024", date(2024, 9, 9)),
        # amended over the years: every amendment keeps its 부칙, the latest is this version's
        (
            "부칙 <2020. 1. 1.>\n이 규정은 2020년 1월 1일부터 시행한다.\n"
            "부칙 <2024. 6. 1.>\n이 규정은 2024년 7월 1일부터 시행한다.",
            date(2024, 7, 1),
        ),
    ],
)
def test_effective_dates_are_read_from_the_forms_regulations_use(text: str, expected: date) -> None:
    assert effective_from_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "이 사업은 2025년 3월 1일부터 시행한 시범 사업이다.",  # not the document about itself
        "공고에 따라 2025년 3월 1일부터 접수한다.",
        "이 규정은 공포한 날부터 시행한다.",  # no date
        "이 규정은 2025년 2월 30일부터 시행한다.",  # not a date
        "The new fee takes effect on March 1, 2027.",  # not "this regulation"
        "Vaccines were effective from day 14 onwards.",
    ],
)
def test_text_without_a_dated_statement_about_itself_gets_no_date(text: str) -> None:
    assert effective_from_text(text) is None


def test_metadata_dates_win_over_the_text_and_null_turns_reading_off() -> None:
    text = "이 규정은 2025년 3월 1일부터 시행한다."
    assert document_validity({}, text) == {"effective_from": "2025-03-01"}
    assert document_validity({"effective_from": "2024-01-01"}, text) == {
        "effective_from": "2024-01-01"
    }
    assert document_validity({"effective_from": None}, text) == {}
    assert document_validity(
        {"effective_to": "2025-12-31", "version_of": "travel"}, "no statement"
    ) == {"effective_to": "2025-12-31", "version_of": "travel"}


@pytest.mark.parametrize(
    "metadata",
    [
        {"effective_from": "2025/03/01"},
        {"effective_from": "2025-02-30"},
        {"effective_to": 20250301},
        {"effective_from": "2025-03-01", "effective_to": "2025-02-28"},
        {"version_of": ""},
        {"version_of": ["travel"]},
    ],
)
def test_bad_validity_metadata_is_refused_before_anything_is_written(
    metadata: dict[str, Any],
) -> None:
    with pytest.raises(InvalidRequest):
        validate_document(SourceDocument("d", "text", metadata=metadata))


def test_chunks_store_normalized_dates_and_no_null_dates() -> None:
    document = SourceDocument(
        "d",
        "이 규정은 2025년 3월 1일부터 시행한다.",
        metadata={"effective_from": None, "effective_to": "2026-01-31", "owner": "hr"},
    )
    chunk = Chunk(
        text=document.text, char_start=0, char_end=len(document.text), section="부칙", page=None
    )
    stored = chunk_metadata(document, chunk)
    assert "effective_from" not in stored
    assert stored["effective_to"] == "2026-01-31" and stored["owner"] == "hr"


def test_parse_date_accepts_iso_only() -> None:
    assert parse_date("2025-03-01") == date(2025, 3, 1)
    with pytest.raises(InvalidRequest):
        parse_date("March 1, 2025")


def _row(doc_id: str, **metadata: str) -> dict[str, Any]:
    return {schema.DOC_ID: doc_id, schema.METADATA: {"version_of": "travel", **metadata}}


VERSIONS = [
    _row("travel-2019"),  # undated: the oldest
    _row("travel-2024", effective_from="2024-01-01"),
    _row("travel-2025", effective_from="2025-03-01"),
    _row("travel-withdrawn", effective_from="2023-01-01", effective_to="2023-06-30"),
]


def in_force(day: date) -> set[str]:
    return {str(r[schema.DOC_ID]) for r in VERSIONS} - superseded(VERSIONS, day)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2022, 12, 31), {"travel-2019"}),
        (date(2023, 1, 1), {"travel-withdrawn"}),  # day of its effective_from
        (date(2023, 6, 30), {"travel-withdrawn"}),  # day of its effective_to (inclusive)
        (date(2023, 7, 1), {"travel-2019"}),  # the day after: back to the older version
        (date(2023, 12, 31), {"travel-2019"}),
        (date(2024, 1, 1), {"travel-2024"}),
        (date(2025, 2, 28), {"travel-2024"}),  # the day before the new version
        (date(2025, 3, 1), {"travel-2025"}),  # the day of
        (date(2025, 3, 2), {"travel-2025"}),  # the day after
    ],
)
def test_one_version_of_a_group_is_in_force_at_each_boundary(day: date, expected: set[str]) -> None:
    assert in_force(day) == expected


def test_groups_are_resolved_apart() -> None:
    rows = [*VERSIONS, {schema.DOC_ID: "leave", schema.METADATA: {"version_of": "leave"}}]
    assert "leave" not in superseded(rows, date(2025, 3, 1))


def test_validity_expression_compares_iso_strings_with_open_bounds() -> None:
    expr = validity_expression(date(2025, 3, 1))
    assert expr == (
        '(not exists metadata["effective_from"] or metadata["effective_from"] <= "2025-03-01") '
        'and (not exists metadata["effective_to"] or metadata["effective_to"] >= "2025-03-01")'
    )


@pytest.mark.parametrize(
    ("metadata", "held"),
    [
        ({}, True),
        ({"effective_from": "2025-03-01"}, True),  # from its first day
        ({"effective_from": "2025-03-02"}, False),
        ({"effective_to": "2025-03-01"}, True),  # to its last day
        ({"effective_to": "2025-02-28"}, False),
        ({"effective_from": "2024-01-01", "effective_to": "2025-12-31"}, True),
    ],
)
def test_in_force_reads_the_validity_expression_on_a_hit(
    metadata: dict[str, str], held: bool
) -> None:
    """The retriever checks windows in Python before it ever sends the (slow) JSON filter."""
    hit = Hit("c", 1.0, {schema.DOC_ID: "d", schema.METADATA: metadata})
    assert dated_versions.in_force(hit, date(2025, 3, 1)) is held
    assert dated_versions.out_of_force([hit], as_of=date(2025, 3, 1)) is not held


def _key(as_of: str) -> str:
    return AnswerKeyParts(
        collection="kb",
        question="일비는?",
        filters={},
        top_k=4,
        model="m",
        prompt_version="p",
        grounding_policy="flag",
        max_answer_tokens=256,
        as_of=as_of,
    ).digest()


def test_the_answer_cache_key_holds_the_date() -> None:
    assert _key("2025-02-28") != _key("2025-03-01")
    assert _key("2025-03-01") == _key("2025-03-01")


def test_an_answer_request_without_as_of_is_keyed_by_today() -> None:
    answerer = Answerer(
        config=AnswererConfig("m", "flag", 256, "", 1.0),
        llm=cast(LLM, None),
        engine_for=cast(EngineFactory, None),
        answer_cache=None,
        sessions=cast(SessionStore, None),
    )  # only the cache key is built: no engine, no cache, no sessions

    def key_date(request: AnswerRequest) -> str:
        return answerer._key_parts(Lookup(request, request.question, [])).as_of

    assert key_date(AnswerRequest("kb", "q", 4)) == date.today().isoformat()
    tomorrow = date.today() + timedelta(days=1)
    assert key_date(AnswerRequest("kb", "q", 4, as_of=tomorrow)) == tomorrow.isoformat()


def test_every_query_route_takes_as_of() -> None:
    from services.query_api.openai_schemas import ChatCompletionIn
    from services.query_api.schemas import QueryIn

    message = {"role": "user", "content": "일비는?"}
    chat = ChatCompletionIn.model_validate(
        {"model": "kb", "messages": [message], "as_of": "2025-03-01"}
    )
    query = QueryIn.model_validate({"collection": "kb", "question": "q", "as_of": "2025-03-01"})
    assert chat.as_of == query.as_of == date(2025, 3, 1)
    assert QueryIn.model_validate({"collection": "kb", "question": "q"}).as_of is None
