"""Both services as real processes (`docqa serve`) against the session's real servers, started
once for every e2e module that asks for them.

The query service serves the web page (/ui) and tells it where the indexing service is; the
indexing service admits the page's origin by CORS, as `docqa up` configures them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import processes, stack
from tests.conftest import Servers

QUERY_KEY = "e2e-query-key"
ADMIN_KEY = "e2e-admin-key"


@dataclass
class Services:
    query_url: str
    indexing_url: str


@pytest.fixture(scope="session")
def services(servers: Servers, runtime_dir: Path) -> Iterator[Services]:
    ports = {"indexing": processes.free_port(), "query": processes.free_port()}
    urls = {service: f"http://127.0.0.1:{port}" for service, port in ports.items()}
    env = {
        **stack.SERVICE_THREAD_ENV,
        "DOCQA_MILVUS_URI": servers.milvus_uri,
        "DOCQA_REDIS_URL": servers.redis_url,
        "DOCQA_REDIS_KEY_PREFIX": "e2e",
        "DOCQA_LLM_ENDPOINTS": servers.llm_url or "",
        "DOCQA_AUTH_QUERY_KEYS": QUERY_KEY,
        "DOCQA_AUTH_ADMIN_KEYS": ADMIN_KEY,
        "DOCQA_UI_INDEXING_URL": urls["indexing"],
        "DOCQA_CORS_ORIGINS": urls["query"],
    }
    specs = []
    for service, port in ports.items():
        spec = stack.service_spec(
            stack.StackPaths(runtime_dir), service, port, env, name=f"e2e-{service}"
        )
        assert Path(spec.command[0]).parent == Path(sys.executable).parent
        processes.start(spec)
        specs.append((spec, port))
    try:
        for spec, port in specs:
            processes.wait_until_ready(
                spec, stack.http_ready(f"http://127.0.0.1:{port}/readyz"), timeout_s=120
            )
        yield Services(query_url=urls["query"], indexing_url=urls["indexing"])
    finally:
        for spec, _ in specs:
            processes.stop(spec.pid_path)
