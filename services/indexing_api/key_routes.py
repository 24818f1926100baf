"""API-key administration (keys with ``admin``): make, list and revoke stored keys.

An admin over every collection (``*``) manages the keys of every tenant; any other admin only
its own tenant's, and hands out only rights it holds itself (so an admin of ``hr_*`` cannot
mint a key for ``legal``). A key is in the response of ``POST`` once and nowhere else.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, Field

from docqa_core.errors import DependencyUnavailable, NotFound
from services.common.auth import Forbidden, KeyRing, Scope, grant_from, require_scope
from services.common.grants import Grant, parse_collections, parse_scopes, parse_tenant
from services.common.key_store import KeyStore

router = APIRouter(
    prefix="/v1/keys", tags=["keys"], dependencies=[Depends(require_scope(Scope.ADMIN))]
)


class KeyNotFound(NotFound):
    code = "key_not_found"


class KeyIn(BaseModel):
    tenant: str | None = Field(None, description="default: the tenant of the key asking")
    scopes: list[str] = Field(min_length=1, examples=[["query"]])
    collections: list[str] = Field(min_length=1, examples=[["hr", "legal_*"]])


class KeyInfo(BaseModel):
    id: str
    tenant: str
    scopes: list[str]
    collections: list[str]
    created: str


class KeyMade(KeyInfo):
    key: str = Field(description="shown once: only its hash is kept")


class KeyList(BaseModel):
    keys: list[KeyInfo]


def _store(request: Request) -> KeyStore:
    keyring: KeyRing = request.app.state.keyring
    if keyring.store is None:
        raise DependencyUnavailable("redis", "the key store is not available")
    return keyring.store


def _tenant_filter(grant: Grant) -> str | None:
    return None if grant.is_global_admin() else grant.tenant


@router.post("", status_code=status.HTTP_201_CREATED, response_model=KeyMade, summary="Make a key")
async def add_key(body: KeyIn, request: Request) -> KeyMade:
    asking = grant_from(request)
    wanted = Grant(
        key_id="",
        tenant=parse_tenant(body.tenant or asking.tenant),
        scopes=parse_scopes(body.scopes),
        collections=parse_collections(body.collections),
    )
    if not asking.covers(wanted):
        raise Forbidden("an admin key may only grant its own tenant rights it holds itself")
    key, record = await _store(request).add(
        tenant=wanted.tenant, scopes=wanted.scopes, collections=wanted.collections
    )
    return KeyMade(key=key, **record.public())


@router.get("", response_model=KeyList, summary="List keys (never the keys themselves)")
async def list_keys(request: Request) -> dict[str, Any]:
    records = await _store(request).records(tenant=_tenant_filter(grant_from(request)))
    return {"keys": [record.public() for record in records]}


@router.delete("/{key_id}", status_code=204, summary="Revoke a key (within a few seconds)")
async def revoke_key(key_id: str, request: Request) -> Response:
    revoked = await _store(request).revoke(key_id, tenant=_tenant_filter(grant_from(request)))
    if not revoked:
        raise KeyNotFound(f"no key {key_id!r}")
    return Response(status_code=204)
