"""Unit tests for services.common.grants: scopes, collection patterns, coverage, parsing."""

from __future__ import annotations

import pytest

from docqa_core.errors import InvalidRequest
from services.common.grants import (
    Grant,
    Scope,
    parse_collections,
    parse_scopes,
    parse_tenant,
)


def grant(scopes: set[Scope], collections: tuple[str, ...], tenant: str = "acme") -> Grant:
    return Grant("k1", tenant, frozenset(scopes), collections)


@pytest.mark.parametrize(
    ("patterns", "collection", "seen"),
    [
        (("hr",), "hr", True),
        (("hr",), "hr2", False),  # a name is exact, not a prefix
        (("hr",), "h", False),
        (("legal_*",), "legal_kr", True),
        (("legal_*",), "legal_", True),
        (("legal_*",), "legal", False),
        (("legal_*",), "xlegal_kr", False),
        (("*",), "anything", True),
        (("hr", "legal_*"), "legal_us", True),
        (("hr", "legal_*"), "finance", False),
    ],
)
def test_sees_names_prefixes_and_all(
    patterns: tuple[str, ...], collection: str, seen: bool
) -> None:
    assert grant({Scope.QUERY}, patterns).sees(collection) is seen


@pytest.mark.parametrize(
    ("held", "asked", "allowed"),
    [
        ({Scope.QUERY}, Scope.QUERY, True),
        ({Scope.QUERY}, Scope.INGEST, False),
        ({Scope.QUERY}, Scope.ADMIN, False),
        ({Scope.INGEST}, Scope.QUERY, False),
        ({Scope.INGEST}, Scope.INGEST, True),
        ({Scope.ADMIN}, Scope.QUERY, True),  # admin implies every scope
        ({Scope.ADMIN}, Scope.INGEST, True),
        ({Scope.QUERY, Scope.INGEST}, Scope.ADMIN, False),
    ],
)
def test_allows_with_admin_implying_the_rest(held: set[Scope], asked: Scope, allowed: bool) -> None:
    assert grant(held, ("*",)).allows(asked) is allowed


def test_permits_needs_both_scope_and_collection() -> None:
    hr_reader = grant({Scope.QUERY}, ("hr",))

    assert hr_reader.permits(Scope.QUERY, "hr")
    assert not hr_reader.permits(Scope.INGEST, "hr")
    assert not hr_reader.permits(Scope.QUERY, "legal")


def test_a_tenant_admin_covers_only_its_own_tenant_and_rights() -> None:
    admin = grant({Scope.ADMIN}, ("legal_*",))

    assert admin.covers(grant({Scope.QUERY}, ("legal_kr",)))
    assert admin.covers(grant({Scope.QUERY, Scope.INGEST}, ("legal_us_*",)))
    assert admin.covers(grant({Scope.ADMIN}, ("legal_*",)))
    assert not admin.covers(grant({Scope.QUERY}, ("hr",)))
    assert not admin.covers(grant({Scope.QUERY}, ("legal*",)))  # wider than legal_*
    assert not admin.covers(grant({Scope.QUERY}, ("*",)))
    assert not admin.covers(grant({Scope.QUERY}, ("legal_kr",), tenant="other"))


def test_a_query_key_covers_no_ingest_right() -> None:
    reader = grant({Scope.QUERY}, ("*",))

    assert not reader.covers(grant({Scope.INGEST}, ("hr",)))


def test_a_global_admin_covers_every_tenant() -> None:
    root = grant({Scope.ADMIN}, ("*",), tenant="default")

    assert root.is_global_admin()
    assert root.covers(grant({Scope.ADMIN}, ("*",), tenant="acme"))
    assert not grant({Scope.ADMIN}, ("hr",)).is_global_admin()
    assert not grant({Scope.QUERY, Scope.INGEST}, ("*",)).is_global_admin()


def test_parse_scopes() -> None:
    assert parse_scopes(["query", " INGEST "]) == {Scope.QUERY, Scope.INGEST}
    with pytest.raises(InvalidRequest, match="unknown scope"):
        parse_scopes(["query", "root"])
    with pytest.raises(InvalidRequest, match="at least one scope"):
        parse_scopes([])


def test_parse_collections_keeps_order_and_drops_repeats() -> None:
    assert parse_collections(["hr", " legal_* ", "hr", ""]) == ("hr", "legal_*")
    assert parse_collections(["*"]) == ("*",)


@pytest.mark.parametrize("bad", ["legal-*", "*hr", "h*r", "1hr", "hr**", "", "a" * 300], ids=repr)
def test_parse_collections_refuses_what_is_not_a_name_or_prefix(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_collections([bad])


def test_parse_tenant() -> None:
    assert parse_tenant("acme-corp.kr_1") == "acme-corp.kr_1"
    for bad in ["", "a b", "a/b", "x" * 65]:
        with pytest.raises(InvalidRequest):
            parse_tenant(bad)
