"""An idle Milvus connection stays usable: our clients send no keepalive pings without a call.

The milvus-lite server keeps gRPC's default ping policy (a ping without calls at most every 5
minutes, two strikes). pymilvus' default client pings every 10 s, so an idle service was sent
away ("too_many_pings") after a minute or two, and the next call had to reconnect or failed. Here
the client pings every second with no cap on pings between data frames, so what took the server
minutes to refuse takes it seconds: the first test shows that the options our clients are built
with (``MILVUS_GRPC_OPTIONS``) never provoke it, the second that the server does refuse a client
with pymilvus' default within the same idle time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pymilvus import AsyncMilvusClient

from services.common.clients import MILVUS_GRPC_OPTIONS
from tests.conftest import Servers

FAST_PINGS = {"grpc.keepalive_time_ms": 1000, "grpc.http2.max_pings_without_data": 0}
IDLE_S = 15  # the server sent a fast-pinging idle client away after 3.5 s


def _dedicated_client(uri: str, options: dict[str, Any]) -> AsyncMilvusClient:
    # pymilvus shares one connection per address between clients, whatever their options
    return AsyncMilvusClient(uri=uri, timeout=10, grpc_options=options, dedicated=True)


async def _idle_then_call(uri: str, options: dict[str, Any]) -> list[str]:
    client = _dedicated_client(uri, options)
    try:
        await client.list_collections()
        await asyncio.sleep(IDLE_S)
        collections: list[str] = await client.list_collections()
    finally:
        await client.close()
    return collections


async def test_our_milvus_clients_are_not_sent_away_when_idle(
    data_servers: Servers, capfd: pytest.CaptureFixture[str]
) -> None:
    collections = await _idle_then_call(
        data_servers.milvus_uri, {**MILVUS_GRPC_OPTIONS, **FAST_PINGS}
    )
    assert isinstance(collections, list)
    assert "too_many_pings" not in capfd.readouterr().err


async def test_the_server_sends_away_a_client_that_pings_while_idle(
    data_servers: Servers, capfd: pytest.CaptureFixture[str]
) -> None:
    options = {**FAST_PINGS, "grpc.keepalive_permit_without_calls": True}  # pymilvus' default
    client = _dedicated_client(data_servers.milvus_uri, options)
    try:
        await client.list_collections()
        logged = ""
        started = time.monotonic()
        while "too_many_pings" not in logged and time.monotonic() - started < IDLE_S:
            await asyncio.sleep(0.5)
            logged += capfd.readouterr().err
    finally:
        await client.close()
    assert "too_many_pings" in logged
