"""OpenAI's error shape on the OpenAI-compatible routes; every other route keeps docqa's envelope.

OpenAI clients read ``{"error": {"message", "type", "param", "code"}}`` (the official client
raises ``BadRequestError``, ``AuthenticationError``, … with ``error.message``), so the routes of
``openai_routes`` are built with :class:`OpenAIRoute`, which turns every error of the route
(auth, request validation, docqa's own) into that shape. ``code`` is docqa's stable error code.
A ``422`` of docqa (an invalid request) is a ``400`` here, as OpenAI sends it.

============  =========================
status        ``type``
============  =========================
400, 404, …   ``invalid_request_error``
401           ``authentication_error``
403           ``permission_error``
429           ``rate_limit_error`` (with ``Retry-After``)
5xx           ``server_error``
============  =========================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from docqa_core.errors import (
    CollectionNotFound,
    DependencyUnavailable,
    DocqaError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    retry_after_header,
)
from services.common.openapi_errors import COMPONENTS, ENVELOPE_REF, ERROR_STATUSES

log = logging.getLogger(__name__)

_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


class OpenAIParameterError(InvalidRequest):
    """A request parameter this route refuses, named in ``param``."""

    http_status = 400

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


class UnsupportedParameter(OpenAIParameterError):
    code = "unsupported_parameter"


class InvalidParameter(OpenAIParameterError):
    code = "invalid_value"


class ParameterTooLarge(PayloadTooLarge):
    """A request parameter holding more than this server takes (413), named in ``param``."""

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.param = param


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def docqa_error_body(exc: DocqaError) -> dict[str, Any]:
    """The shape of a domain error (also for an error in the middle of a stream)."""
    param = getattr(exc, "param", None)
    if param is None and isinstance(exc, CollectionNotFound):
        param = "model"
    return error_body(_status(exc), exc.message, exc.code, param)


def _status(exc: DocqaError) -> int:
    return 400 if exc.http_status == 422 else exc.http_status


def docqa_error_response(exc: DocqaError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers.update(exc.headers)
    headers.update(retry_after_header(exc))
    if isinstance(exc, DependencyUnavailable):
        log.warning("dependency unavailable", extra={"dependency": exc.dependency})
    return JSONResponse(docqa_error_body(exc), status_code=_status(exc), headers=headers or None)


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's validation errors: the first names ``param``, all of them the message."""
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        body = error_body(400, "the request body is not valid JSON", "invalid_json")
        return JSONResponse(body, status_code=400)
    described = [(_param(err.get("loc", ())), _message(err)) for err in errors]
    message = "; ".join(f"{param}: {text}" if param else text for param, text in described)
    first = described[0][0] if described else None
    return JSONResponse(error_body(400, message, "invalid_request", first or None), 400)


def _param(loc: Any) -> str:
    """``("body", "messages", 0, "role")`` → ``messages[0].role``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _message(err: Any) -> str:
    return str(err.get("msg", "")).removeprefix("Value error, ")


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """``{"error": {"message", "type", "param", "code"}}``"""

    error: OpenAIErrorDetail


class OpenAIRoute(APIRoute):
    """A route whose errors leave in OpenAI's shape (see the module docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        # declared in the OpenAPI schema in that shape (services.common.openapi_errors), but
        # for what the body limit refuses before the route: a 422 (json_too_deep) in docqa's
        # envelope, and a 413 in either (the route's own names the parameter)
        either = {"anyOf": [{"$ref": f"{COMPONENTS}/OpenAIError"}, {"$ref": ENVELOPE_REF}]}
        responses: dict[int | str, dict[str, Any]] = {
            status: {"model": OpenAIError} for status in ERROR_STATUSES if status not in (413, 422)
        }
        responses[413] = {"content": {"application/json": {"schema": either}}}
        kwargs["responses"] = {**responses, **(kwargs.get("responses") or {})}
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def openai_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except DocqaError as exc:
                return docqa_error_response(exc)
            except RequestValidationError as exc:
                return validation_error_response(exc)
            except StarletteHTTPException as exc:
                message = exc.detail if isinstance(exc.detail, str) else "request refused"
                body = error_body(exc.status_code, message, "http_error")
                return JSONResponse(body, exc.status_code, headers=dict(exc.headers or {}) or None)
            except Exception:
                log.exception("unhandled error")
                body = error_body(500, "internal server error (this is a bug)", "internal_error")
                return JSONResponse(body, status_code=500)

        return openai_errors
