"""An idle Milvus connection stays usable: our clients send no keepalive pings without a call.

The milvus-lite server keeps gRPC's default ping policy (a ping without calls at most every 5
minutes, two strikes). pymilvus' default client pings every 10 s, so an idle service was sent
away ("too_many_pings") after a minute or two, and the next call had to reconnect or failed. Here
the client pings every second with no cap on pings between data frames, so what took the server
minutes to refuse takes it seconds: the first test shows that the options our clients are built
with (``MILVUS_GRPC_OPTIONS``) never provoke it, the second that the server does refuse a client
with pymilvus' default within the same idle time. The third shows that each set of our clients
has its own connection, which closing the clients closes (pymilvus would otherwise keep one
shared connection per address for the life of the process, see ``build_milvus``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from pymilvus import AsyncMilvusClient

from services.common.clients import MILVUS_GRPC_OPTIONS, build_data_clients
from tests.conftest import Servers
from tests.integration.conftest import indexing_settings

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


def _established_to(port: int) -> set[str]:
    """This process's established TCP connections to ``port``, by socket inode (from /proc: no
    psutil here). By inode, so connections other clients close meanwhile do not count."""
    fds = (os.path.join("/proc/self/fd", fd) for fd in os.listdir("/proc/self/fd"))
    sockets = set()
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in sockets:
                    found.add(fields[9])  # 01: established
    return found


async def _settled(port: int, done: Callable[[set[str]], bool]) -> set[str]:
    """The connections once ``done`` holds for them (a closed channel lets go within moments)."""
    current = _established_to(port)
    for _ in range(100):  # 5 s
        if done(current):
            break
        await asyncio.sleep(0.05)
        current = _established_to(port)
    return current


async def test_each_set_of_clients_has_its_own_connection_and_closes_it(
    data_servers: Servers,
) -> None:
    port = urlsplit(data_servers.milvus_uri).port
    assert port is not None
    for _ in range(3):
        before = _established_to(port)
        clients = build_data_clients(indexing_settings(data_servers))
        try:
            await clients.store.ping()
            opened = await _settled(port, lambda now, b=before: len(now - b) == 1) - before
            assert len(opened) == 1
        finally:
            await clients.aclose()
        assert not await _settled(port, lambda now, o=opened: not now & o) & opened
