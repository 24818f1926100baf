"""Schemathesis against both services' OpenAPI schemas: every operation gets generated requests,
valid and invalid ones (bounded and derandomized, so CI runs the same cases each time), sent with
the admin key, the query key and no key to the real app served by uvicorn on a socket, with real
Redis, Milvus and vLLM behind it. No response may be a 5xx, and every response must be declared:
its status, its content type and its body's schema (errors: ``services.common.openapi_errors``).

Generated names rarely name a collection that exists, so half the query service's cases are
aimed at a small real one (its ``collection`` path parameter or body field, or ``model``): those
go through retrieval, the FAQ and generation. The apps get their own Redis key prefix, so the
ingestion jobs that generated uploads create run on the fuzzed app's own worker, unseen by other
tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import hypothesis
import pytest
import schemathesis

# imported here, at collection, although schemathesis loads it lazily on the first from_dict():
# loaded then, it was parsed (pytest rewrites its asserts) while the served app's threads ran,
# and CPython 3.11.7 raised "SystemError: AST constructor recursion depth mismatch" in a
# clean-clone CI run; parsing it before any server thread starts leaves nothing to race with
import schemathesis.specs.openapi.schemas
import uvicorn
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deploy.processes import free_port
from indexing.pipeline import SourceDocument
from services.common.clients import build_data_clients, build_pipeline
from services.indexing_api.app import build_app as build_indexing_app
from services.query_api.app import build_app as build_query_app
from tests.conftest import Servers
from tests.integration.conftest import ADMIN_KEY, QUERY_KEY, indexing_settings, query_settings

# cases per operation: about 25 operations, so a few hundred requests per service
EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
IDENTITIES = {
    "admin": {"Authorization": f"Bearer {ADMIN_KEY}"},
    "query": {"Authorization": f"Bearer {QUERY_KEY}"},
    "none": {},
}


class _Server(uvicorn.Server):
    """uvicorn in the test's event loop; the test process keeps its own signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app (its lifespan too) on a real socket; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(300):
            while not server.started:
                if task.done():
                    raise RuntimeError(f"the app did not start: {task.exception()!r}")
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def fuzz_settings(servers: Servers, key_prefix: str) -> dict[str, Any]:
    return {
        "redis": {"url": servers.redis_url, "key_prefix": key_prefix},
        # the limits would turn most requests into 429s after a minute's worth
        "rate_limit": {"queries_per_minute": 0, "ingest_bytes_per_day": 0},
    }


def build_app(service: str, servers: Servers, key_prefix: str) -> FastAPI:
    if service == "query":
        llm = {"endpoints": [servers.llm_url], "max_answer_tokens": 16}
        settings = query_settings(servers, **fuzz_settings(servers, key_prefix), llm=llm)
        return build_query_app(settings)
    return build_indexing_app(indexing_settings(servers, **fuzz_settings(servers, key_prefix)))


RULES = SourceDocument(
    "rules", "Loans\nBooks are lent for 14 days. 도서는 14일 동안 대출된다.", title="Library rules"
)


async def seed_collection(servers: Servers, key_prefix: str) -> str:
    collection = "fuzz_" + uuid.uuid4().hex[:8]
    settings = indexing_settings(servers, **fuzz_settings(servers, key_prefix))
    clients = build_data_clients(settings, can_create=True)
    try:
        await build_pipeline(clients, settings).ingest(collection, [RULES])
    finally:
        await clients.aclose()
    return collection


def aim(case: Any, collection: str) -> None:
    """Point a generated case at a collection that exists."""
    if "collection" in (case.path_parameters or {}):
        case.path_parameters["collection"] = collection
    if isinstance(case.body, dict):
        for name in ("collection", "model"):
            if name in case.body:
                case.body[name] = collection


def fuzz_operation(operation: Any, base_url: str, collection: str | None) -> None:
    """Generated cases of one operation, each sent as one identity, checked against the schema."""
    cases = st.one_of(
        operation.as_strategy(schemathesis.GenerationMode.POSITIVE),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    )

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=cases, identity=st.sampled_from(sorted(IDENTITIES)), real=st.booleans())
    def check(case: Any, identity: str, real: bool) -> None:
        if real and collection is not None:
            aim(case, collection)
        headers = {**(case.headers or {}), **IDENTITIES[identity]}
        if identity == "none":
            headers.pop("Authorization", None)
        case.headers = headers
        response = case.call(base_url=base_url)
        case.validate_response(response, checks=CHECKS)
        if identity == "none" and operation.path.startswith("/v1/"):
            # no key, no data: the key is checked before anything is read or written (only a
            # body too large or not JSON at all is refused before it)
            assert response.status_code in {400, 401, 413}, (response.status_code, response.text)

    check()


def fuzz_schema(schema: Any, base_url: str, collection: str | None) -> list[str]:
    """Every operation fuzzed, failures collected (not just the first), one text each."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            fuzz_operation(operation, base_url, collection)
        except Exception as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {describe(exc)}"[:3000])
    return failures


def describe(exc: BaseException) -> str:
    """The failure's text, with the exceptions a group holds (hypothesis reports a case that
    failed once and passed when replayed as a group whose message alone names no cause)."""
    inner = getattr(exc, "exceptions", ())
    return "; ".join([str(exc), *(f"{type(e).__name__}: {describe(e)}" for e in inner)])


@pytest.mark.parametrize("service", ["query", "indexing"])
async def test_every_operation_answers_as_its_schema_declares(
    service: str, request: pytest.FixtureRequest
) -> None:
    # the indexing service needs no LLM: it does not wait for vLLM to start
    servers: Servers = request.getfixturevalue("servers" if service == "query" else "data_servers")
    key_prefix = "fuzz-" + uuid.uuid4().hex[:8]
    collection = await seed_collection(servers, key_prefix) if service == "query" else None
    app = build_app(service, servers, key_prefix)
    async with served(app) as base_url:
        schema = schemathesis.openapi.from_dict(app.openapi())
        # the cases run in a thread (schemathesis calls are blocking); the server in this loop
        failures = await asyncio.to_thread(fuzz_schema, schema, base_url, collection)
    assert failures == [], "\n\n".join(failures)
