"""FAQ admin API: curated question → answer entries per collection (keys with ``ingest`` on the
collection; another tenant's collection is a 404, by ``require_scope``).

The routes only translate HTTP to :class:`query_engine.faq.FaqStore`, which validates and raises
the errors of ``docqa_core.errors`` (so every refusal arrives in the one error envelope).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from query_engine.faq import FaqEntry, FaqEntryIn, FaqStore
from services.common.auth import Scope, require_scope
from services.query_api.deps import runtime_of

router = APIRouter(
    prefix="/v1/collections/{collection}/faq",
    tags=["faq"],
    dependencies=[Depends(require_scope(Scope.INGEST))],
)


async def _faq(request: Request) -> FaqStore:
    return runtime_of(request).faq


FaqDep = Annotated[FaqStore, Depends(_faq)]


class FaqEntryBody(BaseModel):
    id: str | None = Field(
        None,
        description="defaults to a hash of the normalized question",
        examples=["trip-per-diem"],
    )
    question: str = Field(examples=["출장 일비는 얼마인가요?"])
    answer: str = Field(examples=["국내 출장 일비는 하루 25,000원입니다."])
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="returned with the entry (at most 4 KB as JSON)"
    )


class FaqPutIn(BaseModel):
    entries: list[FaqEntryBody]


class FaqPutOut(BaseModel):
    collection: str
    ids: list[str] = Field(description="the id of each entry, in the order sent")
    created: int
    updated: int
    unchanged: int = Field(description="entries identical to the stored ones (nothing written)")


class FaqEntryOut(BaseModel):
    id: str
    question: str
    answer: str
    created_at: str
    updated_at: str
    metadata: dict[str, Any]


class FaqListOut(BaseModel):
    collection: str
    total: int
    limit: int
    offset: int
    entries: list[FaqEntryOut]


class FaqDeleteAllOut(BaseModel):
    collection: str
    deleted: int


def _entry_out(entry: FaqEntry) -> FaqEntryOut:
    return FaqEntryOut(**entry.public())


@router.put("", response_model=FaqPutOut, summary="Add or replace FAQ entries (by id)")
async def put_faq(collection: str, body: FaqPutIn, faq: FaqDep) -> FaqPutOut:
    """Each question is embedded on write. Putting the same entries again changes nothing; an
    entry whose question another entry already has is refused (409)."""
    entries = [
        FaqEntryIn(question=e.question, answer=e.answer, id=e.id, metadata=e.metadata)
        for e in body.entries
    ]
    result = await faq.put(collection, entries)
    return FaqPutOut(
        collection=collection,
        ids=result.ids,
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
    )


@router.get("", response_model=FaqListOut, summary="List FAQ entries, oldest first")
async def list_faq(
    collection: str,
    faq: FaqDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> FaqListOut:
    page = await faq.list_entries(collection, limit=limit, offset=offset)
    return FaqListOut(
        collection=collection,
        total=page.total,
        limit=limit,
        offset=offset,
        entries=[_entry_out(e) for e in page.entries],
    )


@router.get("/{entry_id}", response_model=FaqEntryOut, summary="One FAQ entry")
async def get_faq_entry(collection: str, entry_id: str, faq: FaqDep) -> FaqEntryOut:
    return _entry_out(await faq.get(collection, entry_id))


@router.delete("/{entry_id}", status_code=204, summary="Delete one FAQ entry")
async def delete_faq_entry(collection: str, entry_id: str, faq: FaqDep) -> Response:
    await faq.delete(collection, entry_id)
    return Response(status_code=204)


@router.delete("", response_model=FaqDeleteAllOut, summary="Delete every FAQ entry of a collection")
async def delete_faq(collection: str, faq: FaqDep) -> FaqDeleteAllOut:
    return FaqDeleteAllOut(collection=collection, deleted=await faq.delete_all(collection))
