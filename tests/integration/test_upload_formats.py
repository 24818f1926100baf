"""Multipart uploads of real file formats: good files are queued, bad ones reported per file."""

from __future__ import annotations

import json

import httpx

from tests.fixtures.files import make_docx, make_pdf
from tests.integration.conftest import ADMIN_AUTH, wait_for_job

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


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
