"""The one error envelope: ``{"error": {"code", "message", "detail"}, "request_id"}``.

Every error leaves the services through these handlers, including FastAPI's validation errors,
unknown routes and unexpected exceptions (a 500 is always a bug, and is logged as one).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from docqa_core.errors import (
    DependencyUnavailable,
    DocqaError,
    RateLimited,
    retry_after_header,
)
from services.common.logging import request_id_var

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def envelope(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "detail": detail},
        "request_id": request_id_var.get(),
    }


def error_response(
    status: int, code: str, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(envelope(code, message, detail), status_code=status, headers=headers)


async def _docqa_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DocqaError)
    return docqa_error_response(exc)


def docqa_error_response(exc: DocqaError) -> JSONResponse:
    """The envelope of a domain error, also for code outside the routes (ASGI middleware)."""
    headers: dict[str, str] = {}
    detail = exc.detail
    if isinstance(exc, RateLimited):
        headers.update(exc.headers)
    headers.update(retry_after_header(exc))
    if isinstance(exc, DependencyUnavailable):
        detail = {"dependency": exc.dependency, "reason": exc.detail}
        log.warning("dependency unavailable", extra={"dependency": exc.dependency})
    return error_response(exc.http_status, exc.code, exc.message, detail, headers or None)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    if any(err["type"] == "json_invalid" for err in errors):
        return error_response(400, "invalid_json", "the request body is not valid JSON", errors)
    return error_response(422, "invalid_request", "the request is not valid", errors)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, None, dict(exc.headers or {}) or None)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal server error (this is a bug)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DocqaError, _docqa_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
