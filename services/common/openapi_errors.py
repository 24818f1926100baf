"""The error responses of both services, declared in their OpenAPI schemas.

FastAPI declares only a ``422`` in its own ``HTTPValidationError`` shape, which these services
never send (``services.common.errors`` answers every error in the one envelope). Clients, code
generators and ``tests/integration/test_openapi_fuzz.py`` (schemathesis) read the schema, so it
declares what is really sent: on every ``/v1`` operation the envelope for each status the
services use (DESIGN.md: 400/401/403/404/409/413/415/422/429/503; the body limit, auth and rate
limits sit in front of every route, so any route may answer most of them), and the bearer key
they all take. Routes that answer in another shape (the OpenAI-compatible ones) declare their
error responses themselves (``responses=``), and those stand.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

ERROR_STATUSES = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
BEARER = "bearerAuth"
COMPONENTS = "#/components/schemas"
ENVELOPE_REF = f"{COMPONENTS}/ErrorEnvelope"


class ErrorDetail(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorEnvelope(BaseModel):
    """``{"error": {"code", "message", "detail"}, "request_id"}``"""

    error: ErrorDetail
    request_id: str | None = None


_DESCRIPTIONS = {
    400: "Malformed request (e.g. a body that is not JSON)",
    401: "Missing or unknown API key",
    403: "The key lacks the scope or the collection",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body or a part of it too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Rate limited (see Retry-After)",
    503: "A dependency is unavailable (see Retry-After)",
}


def declare_error_responses(app: FastAPI) -> None:
    """Make ``app.openapi()`` declare the error responses and the bearer auth (built once)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes, tags=app.openapi_tags
            )
            _declare(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    models = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})[BEARER] = {"type": "http", "scheme": "bearer"}
    definition = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
    models.update(definition.pop("$defs", {}))
    models[ErrorEnvelope.__name__] = definition
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if path.startswith("/v1/"):
                _declare_operation(operation)
            elif path == "/readyz":  # not ready: the same body as ready, with 503
                operation["responses"].setdefault("503", operation["responses"]["200"])
    for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's, if nothing uses it now
        if f'"#/components/schemas/{name}"' not in json.dumps(schema):
            models.pop(name, None)


def _declare_operation(operation: dict[str, Any]) -> None:
    operation["security"] = [{BEARER: []}]
    responses = operation.setdefault("responses", {})
    content = {"application/json": {"schema": {"$ref": ENVELOPE_REF}}}
    for status in ERROR_STATUSES:
        declared = responses.get(str(status))
        # a route's own declaration stands; FastAPI's default 422 is a shape never sent
        if declared is None or _is_fastapi_validation_error(declared):
            responses[str(status)] = {"description": _DESCRIPTIONS[status], "content": content}


def _is_fastapi_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
