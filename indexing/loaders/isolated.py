"""Parsing PDF, DOCX, HWPX and HTML in a child process, with a wall-clock and a memory limit.

Each document gets a fresh process (forked from a ``forkserver`` that has the parsers imported,
so a fork costs milliseconds), which bounds the memory of every parse on its own: the child sets
``RLIMIT_AS`` to its size at start plus ``memory_mb`` before it parses. A parse that takes longer
than ``timeout_s`` has its process killed. Every failure (damaged file, zip bomb, too many pages,
out of memory, timeout, a crash of the parser) is an :class:`InvalidRequest` naming the file: it
fails that document only. Callers on an event loop ``await parse_upload``: the wait runs in a
thread, so the loop (and the job lease renewed on it) never stalls.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import multiprocessing
import resource
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from docqa_core.errors import InvalidRequest
from indexing.loaders.docx import _load_docx
from indexing.loaders.hwpx import _load_hwpx
from indexing.loaders.pdf import _load_pdf
from indexing.loaders.text import _load_html
from indexing.loaders.zip_guard import check_zip_bomb
from indexing.source_documents import SourceDocument

ISOLATED_FORMATS = frozenset({"pdf", "docx", "hwpx", "html"})
Parser = Callable[..., Any]  # a module-level function (it is pickled by name into the child)
_MB = 1024 * 1024
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["indexing.loaders.isolated"])
_SLOTS = threading.BoundedSemaphore(2)  # parser processes alive at once, per service process


@dataclass(frozen=True)
class ParseLimits:
    timeout_s: float = 60.0
    memory_mb: int = 1024
    max_pdf_pages: int = 2000
    # the zip-bomb guard's limits, for DOCX and HWPX alike (both are zips of XML)
    max_docx_uncompressed_bytes: int = 200 * _MB
    max_docx_compression_ratio: float = 100.0
    max_document_chars: int = 5_000_000


@dataclass(frozen=True)
class PendingUpload:
    """An uploaded file whose parsing waits for the job (it needs a child process)."""

    filename: str
    fmt: str
    data: bytes
    charset: str | None
    doc_id: str

    def to_payload(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "fmt": self.fmt,
            "charset": self.charset,
            "doc_id": self.doc_id,
            "data_b64": base64.b64encode(self.data).decode("ascii"),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> PendingUpload:
        return cls(
            filename=payload["filename"],
            fmt=payload["fmt"],
            data=base64.b64decode(payload["data_b64"]),
            charset=payload.get("charset"),
            doc_id=payload["doc_id"],
        )


async def parse_upload(upload: PendingUpload, limits: ParseLimits) -> list[SourceDocument]:
    """Parse a pending upload in a child process; its documents carry the upload's doc id."""
    return await asyncio.to_thread(parse_upload_sync, upload, limits)


def parse_upload_sync(upload: PendingUpload, limits: ParseLimits) -> list[SourceDocument]:
    """:func:`parse_upload`, blocking (for a caller already on a worker thread)."""
    documents = run_isolated(
        parse_in_child,
        (upload.fmt, upload.filename, upload.data, upload.charset, limits),
        limits,
        upload.filename,
    )
    return [_checked(d, upload, limits) for d in documents]


def parse_in_child(
    fmt: str, filename: str, data: bytes, charset: str | None, limits: ParseLimits
) -> list[SourceDocument]:
    """The parse itself (runs in the child)."""
    if fmt == "pdf":
        return _load_pdf(filename, data, charset, max_pages=limits.max_pdf_pages)
    if fmt in ("docx", "hwpx"):
        check_zip_bomb(
            data,
            max_uncompressed_bytes=limits.max_docx_uncompressed_bytes,
            max_ratio=limits.max_docx_compression_ratio,
        )
        load = _load_docx if fmt == "docx" else _load_hwpx
        return load(filename, data, charset)
    if fmt == "html":
        return _load_html(filename, data, charset)
    raise InvalidRequest(f"no isolated parser for {fmt!r}")


def run_isolated(parser: Parser, args: tuple[Any, ...], limits: ParseLimits, filename: str) -> Any:
    """Run ``parser(*args)`` in a fresh child process under the limits; return its result or
    raise ``InvalidRequest`` saying why there is none. Blocking: call it from a thread."""
    with _SLOTS:
        receive, send = _CONTEXT.Pipe(duplex=False)
        child = _CONTEXT.Process(
            target=_child_main, args=(send, parser, args, limits.memory_mb), daemon=True
        )
        child.start()
        send.close()
        try:
            status, value = _wait_for(child, receive, limits.timeout_s)
        finally:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join()
    if status == "ok":
        return value
    if status == "timeout":
        message = f"parsing took longer than {limits.timeout_s:g} s; the parser was stopped"
    elif status == "memory":
        message = f"parsing needed more than the {limits.memory_mb} MB memory limit"
    elif status == "died":
        message = f"the parser process ended without a result ({value}); the file may be hostile"
    else:
        message = value
    if filename not in message:
        message = f"{filename}: {message}"
    raise InvalidRequest(message, detail={"filename": filename, "reason": status})


def _wait_for(child: Any, receive: Connection, timeout_s: float) -> tuple[str, Any]:
    if not receive.poll(timeout_s):
        child.kill()
        return "timeout", None
    try:
        result: tuple[str, Any] = receive.recv()
    except (EOFError, OSError):
        child.join(timeout=5)
        code = child.exitcode
        return "died", f"exit code {code}" if code is None or code >= 0 else f"signal {-code}"
    return result


def _child_main(send: Connection, parser: Parser, args: tuple[Any, ...], memory_mb: int) -> None:
    """In the child: cap the address space, parse, send ``(status, value)`` back."""
    baseline = _address_space_bytes()
    cap = baseline + memory_mb * _MB
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        send.send(("ok", parser(*args)))
    except MemoryError:
        send.send(("memory", None))
    except InvalidRequest as exc:
        send.send(("invalid", exc.message))
    except Exception as exc:  # anything a parser raises fails the document only
        send.send(("invalid", f"the parser failed ({type(exc).__name__}: {exc})"))
    finally:
        send.close()


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    return pages * resource.getpagesize()


def _checked(
    document: SourceDocument, upload: PendingUpload, limits: ParseLimits
) -> SourceDocument:
    if len(document.text) > limits.max_document_chars:
        raise InvalidRequest(
            f"{upload.filename}: the document has {len(document.text)} characters; "
            f"the limit is {limits.max_document_chars}"
        )
    if document.doc_id == upload.doc_id:
        return document
    return dataclasses.replace(document, doc_id=upload.doc_id)
