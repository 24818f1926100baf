"""Uploads are sniffed by content; PDF/DOCX/HTML parse in a child process with limits."""

from __future__ import annotations

import asyncio
import functools
import io
import time
import zipfile

import pytest

from docqa_core.errors import InvalidRequest, UnsupportedMediaType
from indexing.loaders import ParseLimits, PendingUpload, parse_upload, read_upload, sniff
from indexing.loaders.isolated import run_isolated
from indexing.loaders.zip_guard import check_zip_bomb
from tests.fixtures.files import make_docx, make_pdf
from tests.unit import _parse_fakes

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@functools.cache
def docx_bomb() -> bytes:
    """A DOCX-shaped zip whose document.xml is 300 MB of one byte (about 300 KB compressed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", b"<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            chunk = b"A" * (1024 * 1024)
            for _ in range(300):
                member.write(chunk)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (make_pdf(["hello"]), "pdf"),
        (make_docx([("p", "hello")]), "docx"),
        (zip_of({"a.txt": b"not word"}), "zip"),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" * 8, "binary"),
        (b"\x7fELF\x02\x01\x01\x00", "binary"),
        ("제1조 목적\nplain text".encode(), "text"),
        ("utf-16 text".encode("utf-16"), "text"),
        (b"<!DOCTYPE html><html><body><p>hi</p></body></html>", "html"),
    ],
    ids=["pdf", "docx", "zip-not-docx", "exe", "elf", "utf8", "utf16", "html"],
)
def test_sniffing_by_content(data: bytes, expected: str) -> None:
    assert sniff(data) == expected


@pytest.mark.parametrize(
    ("filename", "data", "detected"),
    [
        ("report.pdf", zip_of({"a.txt": b"x"}), "zip"),
        ("notes.txt", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" * 8, "binary"),
        ("memo.docx", make_pdf(["hello"]), "pdf"),
        ("memo.docx", zip_of({"a.txt": b"x"}), "zip"),
        ("page.html", make_pdf(["hello"]), "pdf"),
    ],
)
def test_content_that_is_not_what_the_name_says_is_415(
    filename: str, data: bytes, detected: str
) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        read_upload(filename, "application/octet-stream", data)
    assert caught.value.http_status == 415
    assert caught.value.message.startswith(f"{filename}: the content is")
    assert caught.value.detail["detected"] == detected


def test_pdf_docx_html_wait_for_the_job_and_text_is_read_now() -> None:
    pending = read_upload("a.pdf", "application/pdf", make_pdf(["hello"]))
    assert isinstance(pending, PendingUpload) and pending.doc_id == "a.pdf"
    assert PendingUpload.from_payload(pending.to_payload()) == pending
    [document] = read_upload("a.txt", "text/plain", b"hello")  # type: ignore[misc]
    assert document.text == "hello"


def test_zip_bomb_is_refused_from_the_central_directory() -> None:
    bomb = docx_bomb()
    assert len(bomb) < 2 * 1024 * 1024
    with pytest.raises(InvalidRequest, match="zip bomb"):
        check_zip_bomb(bomb, max_uncompressed_bytes=200 * 1024 * 1024, max_ratio=100)
    with pytest.raises(InvalidRequest, match=r"compressed \d+:1"):
        check_zip_bomb(bomb, max_uncompressed_bytes=10**12, max_ratio=100)
    check_zip_bomb(make_docx([("p", "fine")]), max_uncompressed_bytes=10**6, max_ratio=100)


async def test_zip_bomb_docx_fails_in_the_child_with_a_clear_error() -> None:
    pending = read_upload("bomb.docx", DOCX_TYPE, docx_bomb())
    assert isinstance(pending, PendingUpload)
    with pytest.raises(InvalidRequest, match=r"^bomb\.docx: .*zip bomb"):
        await parse_upload(pending, ParseLimits())


async def test_docx_and_pdf_parse_in_the_child() -> None:
    docx = read_upload("m.docx", DOCX_TYPE, make_docx([("p", "Returns are due.")]))
    pdf = read_upload("g.pdf", "application/pdf", make_pdf(["Page one", "Page two"]))
    assert isinstance(docx, PendingUpload) and isinstance(pdf, PendingUpload)
    [memo] = await parse_upload(docx, ParseLimits())
    assert (memo.doc_id, memo.text) == ("m.docx", "Returns are due.")
    with pytest.raises(InvalidRequest, match=r"^g\.pdf: the PDF has 2 pages; at most 1"):
        await parse_upload(pdf, ParseLimits(max_pdf_pages=1))


def test_a_parse_over_the_time_limit_is_killed() -> None:
    started = time.monotonic()
    with pytest.raises(InvalidRequest, match=r"^slow\.pdf: parsing took longer than 1 s") as caught:
        run_isolated(_parse_fakes.sleeps, (60,), ParseLimits(timeout_s=1), "slow.pdf")
    assert time.monotonic() - started < 15
    assert caught.value.detail["reason"] == "timeout"


def test_a_parse_over_the_memory_limit_fails_clearly() -> None:
    limits = ParseLimits(memory_mb=100)
    assert run_isolated(_parse_fakes.allocates, (20,), limits, "ok.docx") == 20 * 1024 * 1024
    with pytest.raises(InvalidRequest, match=r"^big\.docx: .*100 MB memory limit"):
        run_isolated(_parse_fakes.allocates, (400,), limits, "big.docx")


async def test_the_event_loop_runs_while_a_parse_waits() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    result = await asyncio.to_thread(
        run_isolated, _parse_fakes.sleeps, (1.0,), ParseLimits(), "x.pdf"
    )
    ticker.cancel()
    assert result == "woke up" and ticks >= 10
