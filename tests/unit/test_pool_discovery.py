"""Endpoint discovery: static URLs, DNS (a headless Service), and the diff the pool applies."""

from __future__ import annotations

import pytest

from query_engine.llm.endpoints import (
    DnsDiscovery,
    EndpointDiff,
    EndpointRefresher,
    StaticDiscovery,
    diff_endpoints,
    resolve_host,
    server_root,
    with_address,
)
from query_engine.llm.pool import Route
from tests.unit._pool_fakes import FakeCluster, FakeVllm, chat_body, started_pool, wait_for


def test_diff_names_what_to_add_and_remove() -> None:
    diff = diff_endpoints(["http://a/v1", "http://b/v1"], ["http://c/v1", "http://b/v1"])
    assert diff == EndpointDiff(added=("http://c/v1",), removed=("http://a/v1",))
    assert not diff_endpoints(["http://a/v1"], ["http://a/v1"])
    assert diff_endpoints([], ["http://b/v1", "http://a/v1"]).added == (
        "http://a/v1",
        "http://b/v1",
    )


def test_addresses_replace_the_host_and_keep_port_and_path() -> None:
    assert with_address("http://vllm:8000/v1", "10.1.2.3") == "http://10.1.2.3:8000/v1"
    assert with_address("http://vllm:8000/v1/", "fd00::7") == "http://[fd00::7]:8000/v1"
    assert with_address("https://vllm.docqa.svc/v1", "10.0.0.9") == "https://10.0.0.9/v1"


def test_server_root_is_where_health_and_metrics_live() -> None:
    assert server_root("http://10.0.0.1:8000/v1") == "http://10.0.0.1:8000"
    assert server_root("http://h:1/prefix/v1/") == "http://h:1/prefix"


async def test_static_discovery_returns_the_urls() -> None:
    assert await StaticDiscovery(["http://a:1/v1/", "http://b:2/v1"]).discover() == [
        "http://a:1/v1",
        "http://b:2/v1",
    ]


async def test_dns_discovery_turns_each_address_into_an_endpoint() -> None:
    asked: list[tuple[str, int]] = []

    async def resolver(host: str, port: int) -> set[str]:
        asked.append((host, port))
        return {"10.0.0.2", "10.0.0.1"}

    urls = await DnsDiscovery(["http://vllm:8000/v1"], resolver).discover()
    assert urls == ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    assert asked == [("vllm", 8000)]


async def test_the_real_resolver_resolves_localhost() -> None:
    assert "127.0.0.1" in await resolve_host("localhost", 80)


async def test_refresher_applies_changes_and_keeps_endpoints_when_lookup_fails() -> None:
    current = {"http://a/v1"}
    answers: list[list[str] | Exception] = [["http://a/v1", "http://b/v1"], OSError("NXDOMAIN")]

    class Scripted:
        async def discover(self) -> list[str]:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    def apply(diff: EndpointDiff) -> None:
        current.update(diff.added)
        current.difference_update(diff.removed)

    refresher = EndpointRefresher(Scripted(), current=lambda: current, apply=apply, interval_s=1)
    assert (await refresher.refresh_once()).added == ("http://b/v1",)
    with pytest.raises(OSError):
        await refresher.refresh_once()
    assert current == {"http://a/v1", "http://b/v1"}


async def test_pool_follows_dns_without_a_restart() -> None:
    servers = [FakeVllm(f"http://10.0.0.{i}:8000/v1") for i in (1, 2, 3)]
    cluster = FakeCluster(*servers)
    records = {"10.0.0.1", "10.0.0.2"}

    async def resolver(host: str, port: int) -> set[str]:
        assert (host, port) == ("vllm", 8000)
        return set(records)

    discovery = DnsDiscovery(["http://vllm:8000/v1"], resolver)
    pool = await started_pool(cluster, discovery, discovery_interval_s=0.05)
    try:
        assert {s.url for s in pool.snapshot()} == {servers[0].url, servers[1].url}
        records.clear()
        records.update({"10.0.0.2", "10.0.0.3"})  # one pod replaced by another
        await wait_for(lambda: {s.url for s in pool.snapshot()} == {servers[1].url, servers[2].url})
        await wait_for(lambda: all(s.healthy for s in pool.snapshot()))
        for _ in range(6):
            await pool.chat(chat_body(), Route(model="m"))
        assert servers[2].chat_requests and not servers[0].chat_requests
    finally:
        await pool.aclose()
