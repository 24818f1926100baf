"""Where the vLLM servers are: a static list of base URLs, or DNS names resolved periodically.

In Kubernetes a headless Service (``clusterIP: None``) answers DNS with one address per *ready*
pod, so ``http://vllm:8000/v1`` names every vLLM pod at once: :class:`DnsDiscovery` resolves the
host and turns each address into its own endpoint URL. :func:`diff_endpoints` is the pure part
(what to add, what to remove) and :class:`EndpointRefresher` the small loop that applies it, so
pods come and go without a restart of the query service.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[set[str]]]


@dataclass(frozen=True)
class EndpointDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def diff_endpoints(current: Iterable[str], discovered: Iterable[str]) -> EndpointDiff:
    """What changes when ``discovered`` replaces ``current`` (both sets of base URLs)."""
    now, seen = set(current), set(discovered)
    return EndpointDiff(added=tuple(sorted(seen - now)), removed=tuple(sorted(now - seen)))


def normalize(url: str) -> str:
    return url.rstrip("/")


def with_address(template_url: str, address: str) -> str:
    """``http://vllm:8000/v1`` with host ``10.1.2.3`` → ``http://10.1.2.3:8000/v1`` (IPv6 in
    brackets); the scheme's default port is kept implicit."""
    parts = urlsplit(template_url)
    host = f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return normalize(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def server_root(base_url: str) -> str:
    """The server's root URL (where vLLM serves ``/health`` and ``/metrics``) from its ``/v1``."""
    parts = urlsplit(normalize(base_url))
    path = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


async def resolve_host(host: str, port: int) -> set[str]:
    """Every address ``host`` resolves to (A and AAAA records)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return {str(info[4][0]) for info in infos}


class Discovery(Protocol):
    async def discover(self) -> list[str]:
        """The endpoint base URLs there are now; raises when it cannot tell."""
        ...


class StaticDiscovery:
    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = [normalize(u) for u in urls]

    async def discover(self) -> list[str]:
        return list(self._urls)


class DnsDiscovery:
    """Each template URL's host resolved to its addresses, one endpoint per address."""

    def __init__(self, template_urls: Sequence[str], resolver: Resolver = resolve_host) -> None:
        self._templates = [normalize(u) for u in template_urls]
        self._resolve = resolver

    async def discover(self) -> list[str]:
        urls: list[str] = []
        for template in self._templates:
            parts = urlsplit(template)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            addresses = await self._resolve(parts.hostname or "", port)
            urls.extend(with_address(template, address) for address in sorted(addresses))
        return urls


class EndpointRefresher:
    """Re-runs discovery every ``interval_s`` and hands each non-empty diff to ``apply``.

    A failed lookup keeps the endpoints there are: a DNS hiccup must not empty the pool (dead
    endpoints are ejected by their health probes instead).
    """

    def __init__(
        self,
        discovery: Discovery,
        *,
        current: Callable[[], Iterable[str]],
        apply: Callable[[EndpointDiff], None],
        interval_s: float,
    ) -> None:
        self._discovery = discovery
        self._current = current
        self._apply = apply
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def refresh_once(self) -> EndpointDiff:
        discovered = await self._discovery.discover()
        diff = diff_endpoints(self._current(), discovered)
        if diff:
            log.info("LLM endpoints changed: +%s -%s", list(diff.added), list(diff.removed))
            self._apply(diff)
        return diff

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="llm-endpoint-refresher")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.refresh_once()
            except Exception as exc:  # keep the current endpoints and try again next period
                log.warning("LLM endpoint discovery failed: %s: %s", type(exc).__name__, exc)
