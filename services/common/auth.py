"""API-key auth: ``Authorization: Bearer <key>``, the way OpenAI clients send it.

Two scopes: ``query`` (ask questions) and ``admin`` (ingest, delete, FAQ and everything a query key
can do). A missing or unknown key is 401; a known key without the scope is 403. Keys are compared
in constant time against every configured key, so timing tells nothing about which one matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum

from fastapi import Request
from pydantic import SecretStr

from docqa_core.errors import DocqaError


class Scope(StrEnum):
    QUERY = "query"
    ADMIN = "admin"


class Unauthorized(DocqaError):
    code = "unauthorized"
    http_status = 401


class Forbidden(DocqaError):
    code = "forbidden"
    http_status = 403


class KeyRing:
    def __init__(self, *, query_keys: Sequence[SecretStr], admin_keys: Sequence[SecretStr]) -> None:
        self._query = [k.get_secret_value().encode() for k in query_keys]
        self._admin = [k.get_secret_value().encode() for k in admin_keys]

    def scopes_of(self, presented: str) -> set[Scope]:
        key = presented.encode()
        is_admin = _matches_any(key, self._admin)
        is_query = _matches_any(key, self._query)
        if is_admin:
            return {Scope.ADMIN, Scope.QUERY}
        return {Scope.QUERY} if is_query else set()


def _matches_any(key: bytes, candidates: Sequence[bytes]) -> bool:
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(key, candidate)
    return matched


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_scope(scope: Scope) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that admits a request only with a key holding ``scope``.

    ``async`` although it never waits: FastAPI runs a sync dependency in its thread pool, a
    thread hop that cost a cached answer a fifth of its time."""

    async def check(request: Request) -> None:
        token = bearer_token(request)
        if token is None:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        keyring: KeyRing = request.app.state.keyring
        scopes = keyring.scopes_of(token)
        if not scopes:
            raise Unauthorized("invalid API key")
        if scope not in scopes:
            raise Forbidden(f"this API key may not use {scope.value} endpoints")

    return check
