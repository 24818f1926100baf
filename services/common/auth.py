"""API-key auth: ``Authorization: Bearer <key>``, the way OpenAI clients send it.

A key resolves to a :class:`~services.common.grants.Grant`: a tenant, scopes (``query``,
``ingest``, ``admin``) and the collections they apply to. A missing or unknown key is 401; a
known key without the scope is 403; a collection the key may not see is 404
``collection_not_found``, the very body of a collection that does not exist, so a key cannot
learn which collections other tenants have.

Keys come from two places:

- bootstrap keys from settings (``DOCQA_AUTH_ADMIN_KEYS``, ``DOCQA_AUTH_QUERY_KEYS``), working
  exactly as before tenants existed: an admin key holds every scope on every collection, a
  query key ``query`` on every collection, both in the ``default`` tenant;
- keys made by ``docqa keys add`` or ``POST /v1/keys``, stored hashed in Redis
  (:mod:`services.common.key_store`).

Every key is looked up by its keyed digest, so no comparison runs on the key itself. A stored
key's grant is remembered in the process for :data:`GRANT_TTL_S`: a cached answer costs no
Redis round trip for auth, and a revoked key stops working within that time.

With Redis down, bootstrap keys work as ever; a stored key checked in the last
:data:`STALE_GRANT_S` keeps its grant, any other stored key gets 503 + ``Retry-After`` (it cannot
be checked, and an unchecked key is never let in).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from fastapi import Request
from pydantic import SecretStr
from redis.exceptions import RedisError

from docqa_core.errors import CollectionNotFound, DependencyUnavailable, DocqaError
from services.common.grants import ALL_COLLECTIONS, DEFAULT_TENANT, Grant, Scope
from services.common.key_store import KeyStore, key_digest

__all__ = ["Forbidden", "KeyRing", "Scope", "Unauthorized", "bearer_token", "require_scope"]

GRANT_TTL_S = 5.0
# how long a stored key's grant, once checked, is honoured while Redis cannot be reached
STALE_GRANT_S = 300.0
MAX_CACHED_GRANTS = 4096
# where require_scope leaves the request's grant for the route (``request.state``)
GRANT_STATE = "docqa_grant"
_REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class Unauthorized(DocqaError):
    code = "unauthorized"
    http_status = 401


class Forbidden(DocqaError):
    code = "forbidden"
    http_status = 403


def bootstrap_grants(
    query_keys: Sequence[SecretStr], admin_keys: Sequence[SecretStr]
) -> dict[str, Grant]:
    """digest → grant of the settings' keys. A key listed as both is an admin key."""
    grants: dict[str, Grant] = {}
    for index, key in enumerate(query_keys):
        grants[key_digest(key.get_secret_value())] = Grant(
            f"env-query-{index}", DEFAULT_TENANT, frozenset({Scope.QUERY}), (ALL_COLLECTIONS,)
        )
    for index, key in enumerate(admin_keys):
        grants[key_digest(key.get_secret_value())] = Grant(
            f"env-admin-{index}",
            DEFAULT_TENANT,
            frozenset({Scope.ADMIN, Scope.QUERY}),
            (ALL_COLLECTIONS,),
        )
    return grants


class KeyRing:
    def __init__(
        self,
        *,
        query_keys: Sequence[SecretStr],
        admin_keys: Sequence[SecretStr],
        ttl_s: float = GRANT_TTL_S,
    ) -> None:
        self._bootstrap = bootstrap_grants(query_keys, admin_keys)
        self._ttl_s = ttl_s
        self._cached: dict[str, tuple[float, Grant | None]] = {}
        self.store: KeyStore | None = None

    def attach(self, store: KeyStore) -> None:
        """Also accept the keys in ``store`` (the lifespan attaches it once Redis exists)."""
        self.store = store

    async def grant_of(self, presented: str) -> Grant | None:
        """The presented key's grant, None for an unknown key. Raises
        :class:`DependencyUnavailable` when only Redis could tell and Redis is down."""
        return (await self.resolve(presented))[0]

    async def resolve(self, presented: str) -> tuple[Grant | None, float]:
        """(the key's grant or None, until when that answer holds, on ``time.monotonic``): a
        caller that keeps the answer keeps it no longer, so a revocation reaches it in time."""
        digest = key_digest(presented)
        bootstrap = self._bootstrap.get(digest)
        if bootstrap is not None:
            return bootstrap, math.inf
        now = time.monotonic()
        if self.store is None:  # not attached yet (or a unit test's app): settings keys only
            return None, now + self._ttl_s
        cached = self._cached.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1], cached[0]
        try:
            grant = await self.store.lookup(digest)
        except _REDIS_ERRORS as exc:
            return self._while_redis_is_down(digest, now, exc)
        if len(self._cached) >= MAX_CACHED_GRANTS:  # a flood of made-up keys only empties it
            self._cached.clear()
        self._cached[digest] = (now + self._ttl_s, grant)
        return grant, now + self._ttl_s

    def _while_redis_is_down(
        self, digest: str, now: float, exc: BaseException
    ) -> tuple[Grant | None, float]:
        """A stored key checked in the last :data:`STALE_GRANT_S` keeps its grant while Redis is
        down (revoking one is a Redis write, so none can have happened meanwhile but in the
        last few seconds before the outage): clients in the middle of a conversation keep
        working. A key not seen lately cannot be checked: 503 with ``Retry-After``."""
        cached = self._cached.get(digest)
        if cached is not None and cached[1] is not None:
            checked_at = cached[0] - self._ttl_s
            if now - checked_at <= STALE_GRANT_S:
                return cached[1], now + 1.0  # asked again (of Redis) a second from now
        raise DependencyUnavailable("redis", "API keys cannot be checked") from exc

    def scopes_of(self, presented: str) -> set[Scope]:
        """The scopes of a bootstrap key, or of a stored key resolved in the last few seconds
        (no I/O: for callers that cannot wait; :meth:`grant_of` is the authority)."""
        digest = key_digest(presented)
        grant = self._bootstrap.get(digest)
        if grant is None:
            cached = self._cached.get(digest)
            grant = cached[1] if cached is not None and cached[0] > time.monotonic() else None
        return set(grant.scopes) if grant is not None else set()


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def authenticate(request: Request, scope: Scope) -> Grant:
    """The request's grant, if it holds ``scope`` (else 401 or 403)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    keyring: KeyRing = request.app.state.keyring
    grant = await keyring.grant_of(token)
    if grant is None:
        raise Unauthorized("invalid API key")
    if not grant.allows(scope):
        raise Forbidden(f"this API key may not use {scope.value} endpoints")
    return grant


def require_scope(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that admits a request only with a key holding ``scope``, and, on a
    route with a ``{collection}`` path parameter, only if the key may see that collection. The
    grant is left in ``request.state`` for a route whose collection is in the body
    (:func:`check_collection`).

    ``async`` although it rarely waits: FastAPI runs a sync dependency in its thread pool, a
    thread hop that cost a cached answer a fifth of its time."""

    async def check(request: Request) -> None:
        grant = await authenticate(request, scope)
        setattr(request.state, GRANT_STATE, grant)
        collection = request.path_params.get("collection")
        if collection is not None and not grant.sees(collection):
            raise CollectionNotFound.named(collection)

    return check


def grant_from(request: Request) -> Grant:
    """The grant :func:`require_scope` admitted this request with."""
    grant: Grant | None = getattr(request.state, GRANT_STATE, None)
    if grant is None:  # a route outside require_scope: refuse rather than guess
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    return grant


def check_collection(request: Request, collection: str) -> None:
    """404 (as for a collection that does not exist) unless the request's key may see
    ``collection``; the scope was checked by :func:`require_scope`."""
    if not grant_from(request).sees(collection):
        raise CollectionNotFound.named(collection)
