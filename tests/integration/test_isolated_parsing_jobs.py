"""Hostile uploads fail only themselves: a DOCX zip bomb next to a text file in one job."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator

import httpx
import pytest

from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.integration.conftest import ADMIN_AUTH, QUERY_AUTH, query_settings, running, wait_for_job

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
NOTES = (
    "Kestrel grinder maintenance notes.\n\n"
    "The hopper gasket of the Kestrel grinder must be replaced every 18 months."
)


def docx_bomb() -> bytes:
    """Shaped like a DOCX; its document.xml is 300 MB of one byte, about 300 KB compressed."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = b"A" * (1024 * 1024)
            for _ in range(300):
                member.write(chunk)
    return buffer.getvalue()


@pytest.fixture
async def retrieve_client(data_servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    """The query service without an LLM: /v1/retrieve needs none."""
    async with running(build_query_app(query_settings(data_servers))) as client:
        yield client


async def test_a_docx_zip_bomb_fails_alone_and_the_text_next_to_it_is_indexed(
    indexing_client: httpx.AsyncClient, retrieve_client: httpx.AsyncClient, collection: str
) -> None:
    zip_as_pdf = io.BytesIO()
    with zipfile.ZipFile(zip_as_pdf, "w") as archive:
        archive.writestr("payload.bin", b"not a pdf")
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files=[
            ("files", ("bomb.docx", docx_bomb(), DOCX_TYPE)),
            ("files", ("notes.txt", NOTES.encode(), "text/plain")),
            ("files", ("report.pdf", zip_as_pdf.getvalue(), "application/pdf")),
        ],
        headers=ADMIN_AUTH,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["documents"] == 2  # the bomb is parsed by the job; the zip named .pdf is refused
    [refused] = body["rejected"]
    assert refused["filename"] == "report.pdf"
    assert "the content is a zip archive" in refused["error"]

    job = await wait_for_job(indexing_client, body["job_id"])
    assert job["state"] == "partial", job
    assert (job["indexed"], job["failed"]) == (1, 1), job
    [error] = job["errors"]
    assert error["doc_id"] == "bomb.docx"
    assert error["error"].startswith("bomb.docx: ") and "zip bomb" in error["error"], error

    found = await retrieve_client.post(
        "/v1/retrieve",
        json={"collection": collection, "question": "How often is the hopper gasket replaced?"},
        headers=QUERY_AUTH,
    )
    assert found.status_code == 200, found.text
    top = found.json()["citations"][0]
    assert top["doc_id"] == "notes.txt"
    assert "18 months" in top["text"]


async def test_only_mismatched_files_is_415(
    indexing_client: httpx.AsyncClient, collection: str
) -> None:
    program = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" * 64
    response = await indexing_client.post(
        f"/v1/collections/{collection}/documents",
        files=[("files", ("setup.txt", program, "text/plain"))],
        headers=ADMIN_AUTH,
    )
    assert response.status_code == 415, response.text
    assert "setup.txt: the content is binary data, not text" in response.json()["error"]["message"]
