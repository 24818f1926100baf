"""Indexing HTTP API: thin routes that validate input and hand work to ``indexing``."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from docqa_core.errors import (
    DocumentNotFound,
    InvalidRequest,
    JobNotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from indexing import schema
from indexing.chunking import ChunkKind
from indexing.loaders import PendingUpload, read_upload
from indexing.pipeline import SourceDocument
from services.common.auth import Scope, bearer_token, grant_from, require_scope
from services.common.rate_limits import charge_ingest
from services.indexing_api.deps import JobsDep, PipelineDep, SettingsDep, StoreDep

MAX_PAGE_SIZE = 1000

# every route with a {collection} is checked against the key's collections by require_scope
router = APIRouter(
    prefix="/v1", tags=["indexing"], dependencies=[Depends(require_scope(Scope.INGEST))]
)


class DocumentIn(BaseModel):
    doc_id: str = Field(min_length=1, max_length=schema.MAX_DOC_ID_CHARS)
    text: str = Field(min_length=1)
    title: str = Field("", max_length=1000)
    source: str = Field("", max_length=2000)
    metadata: dict[str, Any] = Field(default_factory=dict)
    kind: ChunkKind = "auto"


class DocumentsIn(BaseModel):
    documents: list[DocumentIn] = Field(min_length=1)


class JobAccepted(BaseModel):
    job_id: str
    collection: str
    documents: int
    status_url: str
    rejected: list[dict[str, str]] = Field(
        default_factory=list, description="uploaded files that could not be read, with why"
    )


_DOCUMENTS_BODY = {
    "requestBody": {
        "content": {
            "application/json": {"schema": DocumentsIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                }
            },
        }
    }
}


@router.post(
    "/collections/{collection}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    summary="Queue documents for indexing (JSON records or multipart files)",
    openapi_extra=_DOCUMENTS_BODY,
)
async def add_documents(
    collection: str, request: Request, response: Response, settings: SettingsDep, jobs: JobsDep
) -> JobAccepted:
    """Counts against the key's ``DOCQA_RATE_LIMIT_INGEST_BYTES_PER_DAY``: the JSON body's bytes,
    or the uploaded files' bytes, once the documents are valid (a 429 when they do not fit)."""
    schema.validate_collection_name(collection)
    # the body as a whole was bounded before anything read it (services.common.limits)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    rejected: list[dict[str, str]] = []
    pending: list[PendingUpload] = []  # PDF/DOCX/HTML: the job parses them, each in a child
    if media == "application/json":
        documents = await _json_documents(request)
        nbytes = len(await request.body())  # read once, kept by the request
    elif media == "multipart/form-data":
        documents, pending, rejected, nbytes = await _uploaded_documents(
            request, settings.limits.max_upload_bytes
        )
    else:
        raise UnsupportedMediaType(
            "send application/json {'documents': [...]} or multipart/form-data files",
            detail={"content_type": media},
        )
    _check_documents(
        documents,
        pending,
        settings.limits.max_documents_per_request,
        settings.limits.max_document_chars,
    )
    quota = await charge_ingest(request.app.state, bearer_token(request), nbytes)
    response.headers.update(quota.headers())
    job_id = await (
        jobs.create(collection, documents, pending)
        if pending
        else jobs.create(collection, documents)
    )
    return JobAccepted(
        job_id=job_id,
        collection=collection,
        documents=len(documents) + len(pending),
        status_url=f"/v1/jobs/{job_id}",
        rejected=rejected,
    )


async def _json_documents(request: Request) -> list[SourceDocument]:
    try:
        body = DocumentsIn.model_validate_json(await request.body())
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors()):
            raise InvalidRequest("the request body is not valid JSON") from exc
        raise InvalidRequest(
            "the request is not valid",
            detail=[
                {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            ],
        ) from exc
    return [SourceDocument(**doc.model_dump()) for doc in body.documents]


async def _uploaded_documents(
    request: Request, limit: int
) -> tuple[list[SourceDocument], list[PendingUpload], list[dict[str, str]], int]:
    """Check every uploaded file; a file that cannot be read is reported, not fatal.

    Returns the documents of the readable text files, the PDF/DOCX/HTML files the job will parse
    (in a child process, with time and memory limits: a failure there is that document's job
    error), ``{"filename", "error"}`` for the files refused here (a type or content mismatch is
    one), and the bytes of all the files.
    Only when no file at all can be read does the request fail: 415 if every file was of an
    unsupported type, else 422, with the per-file errors in the detail.
    """
    form = await request.form()
    uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not uploads:
        raise InvalidRequest("the multipart body holds no files (field name: files)")
    documents: list[SourceDocument] = []
    pending: list[PendingUpload] = []
    rejected: list[dict[str, str]] = []
    unsupported = 0
    nbytes = 0
    for upload in uploads:
        data = await upload.read()
        nbytes += len(data)
        filename = upload.filename or "upload.txt"
        if len(data) > limit:
            raise PayloadTooLarge(f"file {filename!r} is larger than {limit} bytes")
        try:
            read = read_upload(filename, upload.content_type or "", data)
        except (InvalidRequest, UnsupportedMediaType) as exc:
            unsupported += isinstance(exc, UnsupportedMediaType)
            rejected.append({"filename": filename, "error": exc.message})
            continue
        if isinstance(read, PendingUpload):
            pending.append(read)
        else:
            documents.extend(read)
    if not documents and not pending:
        if rejected and unsupported == len(rejected):
            raise UnsupportedMediaType(rejected[0]["error"], detail={"rejected": rejected})
        raise InvalidRequest(
            "none of the uploaded files could be read"
            + (f": {rejected[0]['error']}" if len(rejected) == 1 else ""),
            detail={"rejected": rejected},
        )
    return documents, pending, rejected, nbytes


def _check_documents(
    documents: list[SourceDocument],
    pending: list[PendingUpload],
    max_documents: int,
    max_chars: int,
) -> None:
    count = len(documents) + len(pending)
    if count > max_documents:
        raise PayloadTooLarge(
            f"{count} documents in one request; the limit is {max_documents}",
            detail={"limit": max_documents},
        )
    ids = [d.doc_id for d in documents] + [p.doc_id for p in pending]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("doc_id values must be unique within a request")
    for document in documents:
        if len(document.text) > max_chars:
            raise PayloadTooLarge(
                f"document {document.doc_id!r} has {len(document.text)} characters; "
                f"the limit is {max_chars}"
            )


@router.get("/jobs/{job_id}", summary="State, progress and errors of an ingestion job")
async def get_job(job_id: str, request: Request, jobs: JobsDep) -> dict[str, Any]:
    """Another tenant's job is as unknown as a job that never was."""
    job = await jobs.get(job_id)
    if not grant_from(request).sees(str(job.get("collection", ""))):
        raise JobNotFound.named(job_id)
    return job


class DocumentListed(BaseModel):
    doc_id: str
    title: str
    source: str
    content_hash: str
    chunk_count: int


class DocumentPage(BaseModel):
    collection: str
    documents: list[DocumentListed]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null on the last page"
    )


@router.get(
    "/collections/{collection}/documents",
    summary="List a collection's documents, a page at a time",
    response_model=DocumentPage,
)
async def list_documents(
    collection: str,
    pipeline: PipelineDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> DocumentPage:
    """Documents in a stable order (not alphabetical). Follow ``next_cursor`` until it is null;
    a page may hold fewer than ``limit`` documents before the end."""
    schema.validate_collection_name(collection)
    documents, next_cursor = await pipeline.list_documents(collection, limit=limit, cursor=cursor)
    return DocumentPage(
        collection=collection,
        documents=[DocumentListed(**dataclasses.asdict(d)) for d in documents],
        next_cursor=next_cursor,
    )


@router.get(
    "/collections/{collection}/documents/{doc_id:path}",
    summary="What is indexed for a document",
)
async def get_document(collection: str, doc_id: str, store: StoreDep) -> dict[str, Any]:
    chunks = await store.document_chunks(collection, doc_id)
    if not chunks:
        raise DocumentNotFound(f"document {doc_id!r} is not in collection {collection!r}")
    return {
        "collection": collection,
        "doc_id": doc_id,
        "chunks": len(chunks),
        "content_hash": chunks[0].content_hash,
    }


@router.delete("/collections/{collection}/documents/{doc_id:path}", summary="Remove a document")
async def delete_document(collection: str, doc_id: str, pipeline: PipelineDep) -> dict[str, Any]:
    removed = await pipeline.delete_document(collection, doc_id)
    if not removed:
        raise DocumentNotFound(f"document {doc_id!r} is not in collection {collection!r}")
    return {"collection": collection, "doc_id": doc_id, "deleted_chunks": removed}


@router.delete("/collections/{collection}", summary="Remove a collection and everything in it")
async def delete_collection(collection: str, pipeline: PipelineDep) -> dict[str, Any]:
    faq_entries = await pipeline.delete_collection(collection)
    return {"collection": collection, "deleted": True, "deleted_faq_entries": faq_entries}
