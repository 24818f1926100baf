"""HTTP bodies → the engine's :class:`AnswerRequest`, with the service's limits applied.

Shared by the front door, the query routes and the OpenAI route, so a question is checked the
same way whichever door it came through.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from starlette.requests import Request

from docqa_core.errors import InvalidRequest
from indexing import schema
from query_engine.answer import AnswerMode
from query_engine.answering import AnswerRequest
from query_engine.generation import SERVER_DEFAULTS, GenerationOptions
from query_engine.memory import Turn, key_fingerprint
from query_engine.retrieval import filter_expression
from services.common.auth import bearer_token
from services.common.settings import QuerySettings
from services.query_api.schemas import QueryIn

# metadata keys one request may filter on (each list value holds at most MAX_FILTER_VALUES)
MAX_FILTER_KEYS = 16


def validated_top_k(
    collection: str, question: str, top_k: int | None, settings: QuerySettings
) -> int:
    schema.validate_collection_name(collection)
    if len(question) > settings.limits.max_question_chars:
        raise InvalidRequest(
            f"the question has {len(question)} characters; the limit is "
            f"{settings.limits.max_question_chars}"
        )
    top_k = top_k or settings.retrieval.top_k
    if top_k > settings.limits.max_top_k:
        raise InvalidRequest(f"top_k may be at most {settings.limits.max_top_k}")
    return top_k


def validated_filters(filters: Mapping[str, Any]) -> Mapping[str, Any]:
    """Filters checked where the request comes in, before any lookup or cache key uses them:
    at most :data:`MAX_FILTER_KEYS` keys, and what retrieval would refuse (key names, scalar or
    list values, at most ``MAX_FILTER_VALUES`` a list) refused here."""
    if len(filters) > MAX_FILTER_KEYS:
        raise InvalidRequest(
            f"filters has {len(filters)} keys; at most {MAX_FILTER_KEYS} are allowed",
            detail={"max_filter_keys": MAX_FILTER_KEYS},
        )
    filter_expression(filters)
    return filters


def owner_of(request: Request) -> str:
    """Sessions belong to the API key that asked (auth already admitted the key)."""
    return key_fingerprint(bearer_token(request) or "")


def answer_request(body: QueryIn, request: Request, settings: QuerySettings) -> AnswerRequest:
    return build_answer_request(
        request,
        settings,
        collection=body.collection,
        question=body.question,
        top_k=body.top_k,
        filters=body.filters,
        session_id=body.session_id,
        answer_mode=body.answer_mode,
        as_of=body.as_of,
    )


def build_answer_request(
    request: Request,
    settings: QuerySettings,
    *,
    collection: str,
    question: str,
    top_k: int | None,
    filters: Mapping[str, Any],
    session_id: str | None,
    history: Sequence[Turn] = (),
    answer_mode: AnswerMode | None = None,
    generation: GenerationOptions = SERVER_DEFAULTS,
    as_of: date | None = None,
) -> AnswerRequest:
    return AnswerRequest(
        collection=collection,
        question=question,
        top_k=validated_top_k(collection, question, top_k, settings),
        filters=validated_filters(filters),
        session_id=session_id,
        owner=owner_of(request),
        history=tuple(history),
        answer_mode=answer_mode,
        generation=generation,
        as_of=as_of,
    )
