"""Generic cutting: levels of boundaries, greedy grouping, running text with overlap.

Every unit is counted once; a group of units is verified with one real count of its text (a
binary search only runs when the summed estimate was wrong), so growing a chunk never counts the
same text repeatedly, which would be quadratic.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from indexing.chunking.budget import _TokenBudget
from indexing.chunking.spans import Span, _is_blank, _strip_span

# Each finder returns positions strictly inside (start, end), ascending.
BoundaryFinder = Callable[[str, int, int], list[int]]


@dataclass(frozen=True, slots=True)
class _Level:
    """One way to cut a span. `overlap` marks cuts that land inside running text, where the
    next piece needs some preceding context; cuts between 항/호/blocks do not."""

    boundaries: BoundaryFinder
    overlap: bool


def _fit(budget: _TokenBudget, start: int, end: int, levels: Sequence[_Level]) -> list[Span]:
    """Spans covering text[start:end], each within max_tokens, cut as coarsely as possible."""
    return _split_to_fit(budget, start, end, levels, budget.max_tokens)


def _split_to_fit(
    budget: _TokenBudget, start: int, end: int, levels: Sequence[_Level], limit: int
) -> list[Span]:
    if budget.fits(start, end, limit):
        return [(start, end)]
    depth, bounds = _first_cut(budget.text, start, end, levels)
    if depth == len(levels) or levels[depth].overlap:
        return _split_running_text(budget, start, end, levels[depth:], limit)
    finer = levels[depth + 1 :]
    pieces: list[Span] = []
    for i, j in _group_units(budget, bounds, limit):
        pieces.extend(_split_to_fit(budget, bounds[i], bounds[j], finer, limit))
    return pieces


def _first_cut(text: str, start: int, end: int, levels: Sequence[_Level]) -> tuple[int, list[int]]:
    """The first level that has a boundary inside the span, with the span's unit bounds."""
    for depth, level in enumerate(levels):
        inner = level.boundaries(text, start, end)
        if inner:
            return depth, [start, *inner, end]
    return len(levels), [start, end]


def _group_units(budget: _TokenBudget, bounds: list[int], limit: int) -> list[tuple[int, int]]:
    """Greedily group consecutive units (bounds[k]..bounds[k+1]) into runs within `limit`.

    Returns index pairs (i, j) meaning bounds[i]..bounds[j]. A unit over the limit is returned
    alone for the caller to cut finer.
    """
    groups = []
    units = len(bounds) - 1
    i = 0
    while i < units:
        if not budget.fits(bounds[i], bounds[i + 1], limit):
            groups.append((i, i + 1))
            i += 1
            continue
        estimated = _extend_by_estimate(
            budget, bounds, i, budget.count(bounds[i], bounds[i + 1]), limit
        )
        verified = _shrink_until_fits(budget, bounds, bounds[i], i, estimated, limit)
        j = i + 1 if verified is None else verified  # None only if the counter is erratic
        groups.append((i, j))
        i = j
    return groups


def _extend_by_estimate(
    budget: _TokenBudget, bounds: list[int], i: int, total: int, limit: int
) -> int:
    """Past unit i, add units while the summed estimate stays within the limit."""
    j = i + 1
    while j < len(bounds) - 1 and budget.fits(bounds[j], bounds[j + 1], limit):
        unit = budget.content(bounds[j], bounds[j + 1])
        if total + unit > limit:
            break
        total += unit
        j += 1
    return j


def _shrink_until_fits(
    budget: _TokenBudget, bounds: list[int], start: int, i: int, j: int, limit: int
) -> int | None:
    """Largest end index in (i, j] such that start..bounds[end] fits, or None.

    Token counts are not exactly additive (a unit edge can change how text is split), so an
    estimate is verified with one real count; only a wrong estimate costs a binary search.
    """
    if budget.fits(start, bounds[j], limit):
        return j
    good, bad = i, j
    while bad - good > 1:
        middle = (good + bad) // 2
        if budget.fits(start, bounds[middle], limit):
            good = middle
        else:
            bad = middle
    return good if good > i else None


def _split_running_text(
    budget: _TokenBudget, start: int, end: int, levels: Sequence[_Level], limit: int
) -> list[Span]:
    """Cut running text (sentences, lines, words) into pieces that overlap a little.

    The text is broken into atoms small enough to leave room for the overlap, each counted
    once; atoms are then packed greedily and every piece is verified with one real count.
    """
    text = budget.text
    bounds = _atoms(budget, start, end, levels, limit - budget.overlap_tokens)
    pieces: list[Span] = []
    previous: tuple[Span, Span] | None = None  # (piece, its text without the overlap)
    i = 0
    while i < len(bounds) - 1:
        lead = _overlap_start(budget, *previous) if previous and budget.overlap_tokens else None
        j = _pack_atoms(budget, bounds, i, lead, limit) if lead is not None else None
        if j is None:
            lead = None
            j = _pack_atoms(budget, bounds, i, None, limit)
        if j is None:  # only with a non-monotonic counter: atom i alone is known to fit
            j = i + 1
        if not _is_blank(text, bounds[i], bounds[j]):
            piece = (bounds[i] if lead is None else lead, bounds[j])
            pieces.append(piece)
            previous = (piece, (bounds[i], bounds[j]))
        i = j
    return pieces


def _pack_atoms(
    budget: _TokenBudget, bounds: list[int], i: int, lead: int | None, limit: int
) -> int | None:
    """End index of the piece that starts at atom i (preceded by the overlap `lead`)."""
    total = budget.count(bounds[i], bounds[i + 1])
    if lead is not None:
        total += budget.content(lead, bounds[i])
    j = _extend_by_estimate(budget, bounds, i, total, limit)
    start = bounds[i] if lead is None else lead
    return _shrink_until_fits(budget, bounds, start, i, j, limit)


def _atoms(
    budget: _TokenBudget, start: int, end: int, levels: Sequence[_Level], limit: int
) -> list[int]:
    """Bounds cutting text[start:end] into atoms within `limit`, at the coarsest level possible."""
    depth, bounds = _first_cut(budget.text, start, end, levels)
    if depth == len(levels):
        return _character_atoms(budget, start, end, limit)
    finer = levels[depth + 1 :]
    atoms = [start]
    for unit_start, unit_end in pairwise(bounds):
        if budget.fits(unit_start, unit_end, limit):
            atoms.append(unit_end)
        else:
            atoms.extend(_atoms(budget, unit_start, unit_end, finer, limit)[1:])
    return atoms


def _character_atoms(budget: _TokenBudget, start: int, end: int, limit: int) -> list[int]:
    """Last resort for text without any usable boundary (a long URL, a space-less run).

    Fixed-size blocks keep it to one count per character plus the pieces' verification; a
    block that is still too long (tiny limits) is bisected.
    """
    size = max(1, (limit - budget.overhead) // 4)
    atoms = [start]
    for block_start in range(start, end, size):
        block_end = min(end, block_start + size)
        if budget.fits(block_start, block_end, limit):
            atoms.append(block_end)
        else:
            atoms.extend(_character_cuts(budget, block_start, block_end, limit))
    return atoms


def _character_cuts(budget: _TokenBudget, start: int, end: int, limit: int) -> list[int]:
    cuts = []
    while start < end:
        start = _longest_fitting_prefix(budget, start, end, limit)
        cuts.append(start)
    return cuts


def _longest_fitting_prefix(budget: _TokenBudget, start: int, end: int, limit: int) -> int:
    """Largest cut in (start, end] whose prefix fits the limit, by bisection."""
    if budget.fits(start, end, limit):
        return end
    good, bad = start, end
    while bad - good > 1:
        middle = (good + bad) // 2
        if budget.fits(start, middle, limit):
            good = middle
        else:
            bad = middle
    if good == start:
        raise ValueError(f"max_tokens={budget.max_tokens} cannot hold a single character")
    return good


_WHITESPACE = re.compile(r"\s+")


def _overlap_start(budget: _TokenBudget, piece: Span, own: Span) -> int | None:
    """Where the next piece should start so that it repeats about overlap_tokens of `own`.

    The tail length is predicted from the piece's characters per token and corrected at
    most twice, so finding the overlap costs one or two small counts.
    """
    text = budget.text
    start, end = _strip_span(text, *own)
    want = budget.overlap_tokens
    chars_per_token = (piece[1] - piece[0]) / max(1, budget.content(*piece))
    reach = chars_per_token * want
    for _ in range(3):
        pos = _word_start_from(text, max(start + 1, end - int(reach)), end)
        if pos is None:
            return None
        tail = budget.content(pos, end)
        if tail <= want:
            return pos
        reach = (end - pos) * want / tail * 0.9
    return None


def _word_start_from(text: str, pos: int, end: int) -> int | None:
    """The first word start at or after pos; pos itself in text without spaces."""
    if pos >= end:
        return None
    if text[pos - 1].isspace() and not text[pos].isspace():
        return pos
    match = _WHITESPACE.search(text, pos, end)
    if match is None:
        return pos
    return match.end() if match.end() < end else None
