"""Multipart uploads of real file formats: good files are queued, bad ones reported per file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.fixtures.files import make_docx, make_hwpx, make_pdf
from tests.integration.conftest import (
    ADMIN_AUTH,
    QUERY_AUTH,
    query_settings,
    running,
    wait_for_job,
)

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
# the start of an HWP 5 file: OLE magic, a FileHeader directory entry, the HWP signature
HWP5_START = (
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    + b"\x00" * 504
    + "FileHeader".encode("utf-16-le").ljust(128, b"\x00")
    + b"HWP Document File".ljust(512, b"\x00")
)


@pytest.fixture
async def retrieve_client(data_servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    """The query service without an LLM: /v1/retrieve needs none."""
    async with running(build_query_app(query_settings(data_servers))) as client:
        yield client


async def test_good_pdf_is_indexed_and_malformed_pdf_fails_alone_in_the_job(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    good = make_pdf(
        ["Reading room\nThe reading room opens at nine.", "Loans\nFive books at a time."],
        title="Library guide",
    )
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files=[
            ("files", ("guide.pdf", good, "application/pdf")),
            ("files", ("broken.pdf", b"%PDF-1.4\nthis is not a real pdf", "application/pdf")),
        ],
        headers=ADMIN_AUTH,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    # both start like PDFs: the job parses them, each in a child process (indexing.loaders)
    assert body["documents"] == 2 and body["rejected"] == []
    job = await wait_for_job(indexing_client, body["job_id"])
    assert job["state"] == "partial", job
    assert job["indexed"] == 1 and job["failed"] == 1
    [error] = job["errors"]
    assert error["doc_id"] == "broken.pdf" and "PDF" in error["error"], error
    document = await indexing_client.get(
        f"/v1/collections/{collection}/documents/guide.pdf", headers=ADMIN_AUTH
    )
    assert document.status_code == 200, document.text
    assert document.json()["chunks"] >= 1


async def test_jsonl_upload_of_three_records_indexes_three_documents(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    records = [
        {"doc_id": f"note-{i}", "title": f"Note {i}", "text": f"메모 {i}: 회의는 {i}시에 시작한다."}
        for i in range(3)
    ]
    data = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    docx = make_docx([("h1", "Policy"), ("p", "Returns are due in fourteen days.")])
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files=[
            ("files", ("notes.jsonl", data, "application/x-ndjson")),
            ("files", ("policy.docx", docx, DOCX_TYPE)),
        ],
        headers=ADMIN_AUTH,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["documents"] == 4 and body["rejected"] == []
    job = await wait_for_job(indexing_client, body["job_id"])
    assert job["state"] == "succeeded", job
    assert job["indexed"] == 4
    for doc_id in ("note-0", "note-1", "note-2", "policy.docx"):
        found = await indexing_client.get(
            f"/v1/collections/{collection}/documents/{doc_id}", headers=ADMIN_AUTH
        )
        assert found.status_code == 200, found.text


async def test_all_files_bad_is_422_with_per_file_errors(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files=[
            ("files", ("a.pdf", b"garbage", "application/pdf")),
            ("files", ("b.jsonl", b'{"doc_id": "x"}\n', "")),
        ],
        headers=ADMIN_AUTH,
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [r["filename"] for r in error["detail"]["rejected"]] == ["a.pdf", "b.jsonl"]
    assert "line 1" in error["detail"]["rejected"][1]["error"]


async def test_hwpx_regulation_is_indexed_per_article_and_hwp5_is_refused(
    indexing_client: httpx.AsyncClient, retrieve_client: httpx.AsyncClient, collection: str
) -> None:
    hwpx = make_hwpx(
        [
            [
                "여비 규정",
                "제1조(목적) 이 규정은 임직원의 국내 출장 여비 지급에 관한 사항을 정한다.",
                "제2조(일비) 일비는 출장 1일당 2만5천원으로 한다.",
                [[["구분"], ["숙박비 상한"]], [["서울특별시"], ["10만원"]]],
            ],
            ["제3조(승인) 출장은 소속 부서장의 사전 승인을 받아야 한다."],
        ],
        title="여비 규정",
    )
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files=[
            ("files", ("여비규정.hwpx", hwpx, "application/octet-stream")),
            ("files", ("old.hwp", HWP5_START, "application/x-hwp")),
        ],
        headers=ADMIN_AUTH,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["documents"] == 1
    [refused] = body["rejected"]
    assert refused["filename"] == "old.hwp"
    assert "save the file as HWPX (한글: 다른 이름으로 저장 → HWPX)" in refused["error"]
    job = await wait_for_job(indexing_client, body["job_id"])
    assert job["state"] == "succeeded", job

    found = await retrieve_client.post(
        "/v1/retrieve",
        json={
            "collection": collection,
            "question": "출장은 누구의 승인을 받아야 하나요?",
            "top_k": 10,
        },
        headers=QUERY_AUTH,
    )
    assert found.status_code == 200, found.text
    citations = found.json()["citations"]
    assert {c["doc_id"] for c in citations} == {"여비규정.hwpx"}
    assert {c["title"] for c in citations} == {"여비 규정"}
    by_article = {c["section"].split(" > ")[0]: c["text"] for c in citations}
    assert {"제1조(목적)", "제2조(일비)", "제3조(승인)"} <= set(by_article), by_article
    assert "소속 부서장의 사전 승인" in by_article["제3조(승인)"]
