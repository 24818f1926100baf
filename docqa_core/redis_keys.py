"""The Redis key layout both services agree on, all under one configurable prefix.

Writers (indexing) and readers (query) must name the same keys; keeping every shared name here
means a rename cannot leave one side reading a key the other no longer writes. Keys that embed
an index version are never deleted by hand: a new version simply makes them unused.
Ingestion jobs keep their own names in ``indexing.job_keys`` (one hash-tagged family, used by the
indexing side only).
"""

from __future__ import annotations


def version_key(prefix: str, collection: str) -> str:
    """The collection's index version: bumped on every committed change."""
    return f"{prefix}:index_version:{collection}"


def versions_channel(prefix: str) -> str:
    """Pub/sub channel announcing every version bump (its message is the bumped key)."""
    return f"{prefix}:version_bumps"


def faq_entries_key(prefix: str, collection: str) -> str:
    """Hash of the collection's curated FAQ entries (entry id → JSON)."""
    return f"{prefix}:faq:{collection}"


def faq_version_key(prefix: str, collection: str) -> str:
    return f"{prefix}:faq_version:{collection}"


def generations_key(prefix: str, collection: str) -> str:
    """Hash of each document's current generation (content hash), for readers mid-replace."""
    return f"{prefix}:generation:{collection}"


def session_key(prefix: str, owner: str, session_id: str) -> str:
    """A conversation's turns; ``owner`` is the fingerprint of the key that created it."""
    return f"{prefix}:session:{owner}:{session_id}"


def answer_key_stem(prefix: str, collection: str) -> str:
    """Answer-cache keys are ``{stem}{index version}:{digest}``."""
    return f"{prefix}:answer:{collection}:v"


def query_embedding_prefix(prefix: str, model: str, dim: int) -> str:
    """Query-embedding cache keys are this prefix followed by the question's digest."""
    return f"{prefix}:qemb:{model}:{dim}:"


def rate_limit_key(prefix: str, fingerprint: str, kind: str) -> str:
    """A key's rate-limit state (``kind``: ``queries``, ``streams``, ``ingest_bytes``), keyed
    by the API key's fingerprint. The hash tag keeps one key's states in one cluster slot, so
    one Lua script may touch several of them."""
    return f"{prefix}:ratelimit:{{{fingerprint}}}:{kind}"


def api_keys_key(prefix: str) -> str:
    """Hash of the stored API keys: keyed digest of the key → its grant (JSON). The key itself
    is never stored."""
    return f"{prefix}:api_keys"


def api_key_ids_key(prefix: str) -> str:
    """Hash of each stored API key's public id → its digest (to revoke a key by id)."""
    return f"{prefix}:api_key_ids"
