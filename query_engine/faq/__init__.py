"""The FAQ: curated question → answer entries per collection, checked before retrieval.

Entries live in Redis, one hash per collection (``{prefix}:faq:{collection}``: entry id → JSON
with the question, the answer, the question's normalized form and its e5 *query* embedding), so
every replica sees the same list. A question matches an entry when its normalized form is the
same (NFKC, case-folded, single spaces, no trailing ``?``/``？``/``.``), or else when its embedding
is at least ``similarity_threshold`` close to the entry's question and both name the same numbers.

Matching runs on every question, so it never reads the entries from Redis per question: each
process keeps a snapshot per collection (a dict of normalized questions and one numpy matrix of
unit vectors) and compares it with a version counter (``{prefix}:faq_version:{collection}``,
incremented by every write on any replica): one ``GET``, or none while this replica holds a
trusted copy of the counter (``query_engine.versions``; every write announces its bump). Writes
go through a ``WATCH`` on that counter, so limits and duplicate checks hold across replicas too.

Redis is not needed to answer questions: when it is down :meth:`FaqStore.match` logs and returns
None, and the question goes to retrieval. The admin calls raise ``DependencyUnavailable``.

The pieces: ``model`` (config, entries, matches, results), ``validation`` (checks that need no
Redis), ``records`` (an entry's JSON form in Redis), ``snapshot`` (a collection's entries arranged
for matching), ``storage`` (Redis reads and writes), ``matcher`` (snapshots cached per version,
and matching), ``writes`` (puts with optimistic retries) and ``store`` (the ``FaqStore`` facade).
"""

from query_engine.faq.model import (
    FaqConfig,
    FaqEntry,
    FaqEntryIn,
    FaqEntryNotFound,
    FaqMatch,
    FaqPage,
    MatchKind,
    PutResult,
)
from query_engine.faq.snapshot import numbers_in
from query_engine.faq.store import FaqStore
from query_engine.faq.validation import entry_id_for

__all__ = [
    "FaqConfig",
    "FaqEntry",
    "FaqEntryIn",
    "FaqEntryNotFound",
    "FaqMatch",
    "FaqPage",
    "FaqStore",
    "MatchKind",
    "PutResult",
    "entry_id_for",
    "numbers_in",
]
