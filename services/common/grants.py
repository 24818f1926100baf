"""What an API key may do: a tenant, scopes, and the collections they apply to.

A grant names collections exactly (``hr``), by prefix (``legal_*``: every collection whose name
starts with ``legal_``) or all of them (``*``). Scopes: ``query`` (ask, retrieve, chat),
``ingest`` (write, list and delete documents, curate FAQ entries) and ``admin`` (everything,
and manage keys). ``admin`` implies the other two, so the implication lives in
:meth:`Grant.allows` only, and a grant's ``scopes`` stay exactly what was given.

Pure functions of plain values: the key store (:mod:`services.common.key_store`) persists
grants, :mod:`services.common.auth` enforces them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from docqa_core.errors import InvalidRequest

ALL_COLLECTIONS = "*"
DEFAULT_TENANT = "default"
TENANT_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# a collection name (letters, digits, underscores, a letter first) or the start of one + "*"
COLLECTION_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}\*?")
MAX_PATTERNS = 100


class Scope(StrEnum):
    QUERY = "query"
    INGEST = "ingest"
    ADMIN = "admin"


@dataclass(frozen=True)
class Grant:
    """One key's rights. ``key_id`` is public (listed, used to revoke); the key is not kept."""

    key_id: str
    tenant: str
    scopes: frozenset[Scope]
    collections: tuple[str, ...]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def sees(self, collection: str) -> bool:
        return any(_matches(pattern, collection) for pattern in self.collections)

    def permits(self, scope: Scope, collection: str) -> bool:
        return self.allows(scope) and self.sees(collection)

    def covers(self, other: Grant) -> bool:
        """Whether every right of ``other`` is one of this grant's (an admin may hand out
        only what it holds itself, to its own tenant)."""
        if other.tenant != self.tenant and not self.is_global_admin():
            return False
        if not all(self.allows(scope) for scope in other.scopes):
            return False
        return all(
            any(_pattern_covers(mine, theirs) for mine in self.collections)
            for theirs in other.collections
        )

    def is_global_admin(self) -> bool:
        """An admin over every collection: may manage the keys of every tenant."""
        return Scope.ADMIN in self.scopes and ALL_COLLECTIONS in self.collections


def _matches(pattern: str, collection: str) -> bool:
    if pattern.endswith("*"):
        return collection.startswith(pattern[:-1])
    return collection == pattern


def _pattern_covers(mine: str, theirs: str) -> bool:
    """Every collection ``theirs`` matches is matched by ``mine``."""
    if mine.endswith("*"):
        return theirs.startswith(mine[:-1])
    return theirs == mine


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    scopes: set[Scope] = set()
    for value in values:
        try:
            scopes.add(Scope(value.strip().lower()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise InvalidRequest(
                f"unknown scope {value!r}; scopes are {known}", detail={"scope": value}
            ) from None
    if not scopes:
        raise InvalidRequest("a key needs at least one scope (query, ingest, admin)")
    return frozenset(scopes)


def parse_collections(values: Iterable[str]) -> tuple[str, ...]:
    patterns = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    if not patterns:
        raise InvalidRequest("a key needs at least one collection, prefix* or *")
    if len(patterns) > MAX_PATTERNS:
        raise InvalidRequest(f"a key names at most {MAX_PATTERNS} collections or prefixes")
    for pattern in patterns:
        if pattern != ALL_COLLECTIONS and not COLLECTION_PATTERN.fullmatch(pattern):
            raise InvalidRequest(
                f"{pattern!r} is neither a collection name, a prefix ending in '*', nor '*'",
                detail={"collection": pattern},
            )
    return patterns


def parse_tenant(value: str) -> str:
    if not TENANT_PATTERN.fullmatch(value):
        raise InvalidRequest(
            "a tenant is 1-64 letters, digits, '.', '_' or '-'", detail={"tenant": value}
        )
    return value
