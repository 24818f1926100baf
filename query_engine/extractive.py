"""The extractive answer: the sentence of the retrieved sources that answers the question.

No LLM, deterministic, and quoted verbatim, so every fact in it is in the cited source. It is
the floor every answer mode must beat, the ``extractive`` answer mode, and what ``auto`` falls
back to when generation fails its checks or the LLM pool is down or saturated.

A sentence is scored by the question's content terms it holds (Kiwi morphemes for Korean,
lowercased words for English: the BM25 analyzer of :mod:`indexing.analysis`), each weighted by
how rare it is among the candidate sentences; by the terms its chunk holds around it (an article
title such as 제8조(일비) names the topic its paragraphs do not repeat); by whether it holds the
kind of thing the question asks for (an amount for 얼마, a date for 언제:
:mod:`query_engine.answer_types`); and a little by the retriever's rank of its source.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

from docqa_core.citations import CITATION_MARKER_RE
from docqa_core.scripts import has_hangul
from query_engine.answer_types import AnswerType, expected_type, has_type
from query_engine.grounding.sentences import sentence_spans

# Question words carry no topic: a sentence does not answer 얼마 by containing 얼마.
QUESTION_TERMS = frozenset(
    "얼마 무엇 무슨 언제 어디 누구 누가 몇 며칠 어떻 어떤 어느 왜 "
    "what which who whom whose when where why how much many".split()
)
SENTENCE_WEIGHT = 0.7  # the rest is the chunk's context
TYPE_MATCH_BONUS = 0.25
TYPE_MISMATCH_FACTOR = 0.75
RANK_PENALTY = 0.03
MAX_SENTENCE_CHARS = 600


@dataclass(frozen=True)
class ExtractiveConfig:
    # below this share of the question's weighted terms, no sentence answers it: "not found"
    min_score: float = 0.35
    # the best lexical sentences are re-ranked by their embedding similarity to the question
    # (e5; measured on en_xquad dev questions with gold + 2 other paragraphs: the right sentence
    # first for .74 of questions lexically, .79 re-ranked; on the Korean answer set .67 → .78)
    rerank_top: int = 8
    # 1.0 until bench.extractive_tuning chose 3.0 (with the runner-up margin below) on the dev
    # half of answer_eval rows: on the report half, containment .472→.500 (covid-qa), .808→.849
    # (en_xquad), .353→.373 (Korean seeds), .933 (ko_answers) unchanged, refusals and answers to
    # unanswerable questions unchanged. The lexical score finds the topic, the embedding tells
    # which of its sentences says the thing asked
    dense_weight: float = 3.0
    # below this embedding similarity to the question, the chosen sentence does not answer it
    # either (applies when an embedder re-ranked). Chosen by bench.gate_calibration on its dev
    # half as the floor answering the fewest unanswerable questions while refusing ≤ 10% of the
    # answerable ones (e5-small: dev refusal .063 → .076, hallucination .50 → .40)
    min_similarity: float = 0.82
    # below this share of the question's topic terms in the chosen sentence's chunk, the chunk
    # is about something else ("재택근무자의 점심 식대" answered from the article on their
    # 통신비): "not found". Per question language, chosen by bench.gate_calibration on the dev
    # half of every set's rows like the similarity floor (:func:`topic_coverage`); the Korean
    # floor may also refuse at most 10% of paraphrased questions' gold passages
    # (bench.paraphrase_coverage). Other languages 0.3 (dev hallucination .357 → .286, refusal
    # .069 → .086). Korean 0: no floor the paraphrases allow (≤ 0.5) answers fewer of the dev
    # half's unanswerable questions; 0.65 would, and refuse a third of the paraphrased ones
    min_coverage_korean: float = 0.0
    min_coverage_other: float = 0.3
    # the runner-up sentence (by lexical score + similarity) is quoted too when it scores within
    # this margin of the best: the answer is often split over two sentences, or the second is
    # the right one. Chosen on the dev half of the answer_eval rows (en_xquad, covid-qa,
    # ko_answers, Korean seeds); end to end containment .78→.82, .40→.48, .83→.86, .30→.36 at
    # F1 −.01 (BENCHMARKS.md, answer_eval_before_runner_up.json); 0.5 with the dense weight of
    # 3.0 (bench.extractive_tuning: the margin is in lexical + weighted-similarity units, which
    # the larger weight spreads). None: one sentence
    runner_up_margin: float | None = 0.5

    # above this share of the question's topic terms that no chunk of the whole collection
    # holds, the collection does not know what the question is about: "not found" whatever
    # sentence scores best (asked about 연차휴가 of a collection that never says 연차휴가).
    # Per question language. bench.gate_calibration (bench.vocabulary_gate) chose 0.45 (Korean)
    # and 0.3 (other) on the dev half of answer_eval rows (--limit 150, the four sets). What
    # those refuse and 0.5 does not, on those rows, are answerable questions whose "unknown"
    # terms are the analysis' doing, not the collection's: compounds split in the question but
    # whole in the document (교통수단; 월요일 against 요일). So, for Korean: "not found" only when
    # more than half of the topic is unknown. On the same rows that refuses no answerable
    # question more, and our Korean set's unanswerable questions answered go .54 → .23 (report
    # half .57 → 0). Not for other languages: BM25 does not stem English, so "How often should
    # the burrs be brushed?" of a guide that says "Brush the burrs" has 2 of 3 topic terms
    # unknown (often, brushed); 0.3 bought en_xquad .17 → .13 for refusals .07 → .09, and 0.5
    # changed no row. 1.0: no gate, no search
    max_unknown_korean: float = 0.5
    max_unknown_other: float = 1.0

    def coverage_floor(self, question: str) -> float:
        return self.min_coverage_korean if has_hangul(question) else self.min_coverage_other

    def unknown_ceiling(self, question: str) -> float:
        return self.max_unknown_korean if has_hangul(question) else self.max_unknown_other


@dataclass(frozen=True)
class SourceText:
    n: int  # the source's number ([n]) among the retrieved ones, in rank order
    text: str
    context: str = ""  # title and section path: topic words the text may not repeat
    doc_id: str = ""  # its document: an answer quotes one document


@dataclass(frozen=True)
class Extracted:
    n: int
    sentence: str
    char_start: int  # the sentence's span in its source's text
    char_end: int
    score: float
    coverage: float = 1.0  # share of the question's topic terms its chunk holds


@dataclass(frozen=True)
class _Candidate:
    source: SourceText
    rank: int
    start: int
    end: int

    @property
    def sentence(self) -> str:
        return self.source.text[self.start : self.end]


Analyzer = Callable[[Sequence[str]], list[str]]


def rank_sentences(
    question: str, sources: Sequence[SourceText], analyze_many: Analyzer
) -> list[Extracted]:
    """Every candidate sentence with its lexical score, best first."""
    candidates = _candidates(sources)
    if not candidates:
        return []
    texts = [question, *(s.text + "\n" + s.context for s in sources)]
    texts += [c.sentence for c in candidates]
    analyzed = [set(terms.split()) for terms in analyze_many([fold_accents(t) for t in texts])]
    question_terms = analyzed[0] - QUESTION_TERMS
    if not question_terms:
        return []
    chunk_terms = dict(zip((s.n for s in sources), analyzed[1 : 1 + len(sources)], strict=True))
    sentence_terms = analyzed[1 + len(sources) :]
    weights = _rarity_weights(question_terms, sentence_terms)
    wanted = expected_type(question)
    coverage = {n: topic_coverage(question_terms, terms) for n, terms in chunk_terms.items()}
    ranked = []
    for candidate, terms in zip(candidates, sentence_terms, strict=True):
        n = candidate.source.n
        score = SENTENCE_WEIGHT * _share(weights, terms)
        score += (1 - SENTENCE_WEIGHT) * _share(weights, chunk_terms[n])
        score = _typed(score, candidate.sentence, wanted) - RANK_PENALTY * candidate.rank
        ranked.append(
            Extracted(n, candidate.sentence, candidate.start, candidate.end, score, coverage[n])
        )
    return sorted(ranked, key=lambda e: -e.score)


def topic_coverage(question_terms: set[str], chunk_terms: set[str]) -> float:
    """The share of the question's topic terms that ``chunk_terms`` holds, unweighted: every
    topic word of the question counts, however common it is among the candidates (the rarity
    weights of the score let a chunk that matches two common words and the asked-for type pass
    for one that is about the thing asked)."""
    topic = _topic(question_terms)
    if not topic:
        return 1.0
    return sum(1 for t in topic if _holds(chunk_terms, t)) / len(topic)


def _topic(question_terms: set[str]) -> set[str]:
    """One-syllable Korean morphemes (시, 때, 달, 쓰: bound nouns, units, auxiliaries) say
    nothing of the topic and are left out."""
    return {t for t in question_terms if not (has_hangul(t) and len(t) < 2)}


def question_topic(question: str, analyze_many: Analyzer) -> set[str]:
    """The question's topic terms, analyzed as BM25 analyzes them (what the collection's
    vocabulary is checked for: :func:`unknown_share`)."""
    return _topic(set(analyze_many([fold_accents(question)])[0].split()) - QUESTION_TERMS)


def unknown_share(topic: set[str], known: set[str]) -> float:
    """The share of the question's ``topic`` terms that no chunk of the collection holds."""
    if not topic:
        return 0.0
    return sum(1 for t in topic if t not in known) / len(topic)


def choose(
    ranked: Sequence[Extracted],
    similarities: Sequence[float] = (),
    config: ExtractiveConfig = ExtractiveConfig(),
    question: str = "",
) -> Extracted | None:
    """The answer among ``ranked`` (best lexical first): None when even the best lexical score
    is under the gate, else the best of the first ``len(similarities)`` by lexical score plus
    ``dense_weight`` × the sentence's embedding similarity to the question — None again when
    that sentence's similarity is under ``min_similarity``, or its chunk holds less than the
    coverage floor of ``question``'s language of the question's topic terms."""
    if not ranked or ranked[0].score < config.min_score:
        return None
    if not similarities:
        best = ranked[0]
    else:
        top = _reranked(ranked, similarities, config)[0]
        best = top.extracted
        if top.similarity < config.min_similarity:
            return None
    if best.coverage < config.coverage_floor(question):
        return None
    return replace(best, score=round(best.score, 4))


def runner_up(
    ranked: Sequence[Extracted],
    similarities: Sequence[float],
    best: Extracted,
    config: ExtractiveConfig = ExtractiveConfig(),
) -> Extracted | None:
    """The second sentence worth quoting with ``best`` (chosen by :func:`choose` from the same
    ``ranked`` and ``similarities``): the next by lexical score + similarity, when within
    ``runner_up_margin`` of the best and above the similarity floor; None otherwise."""
    if config.runner_up_margin is None or len(similarities) < 2:
        return None
    top, second = _reranked(ranked, similarities, config)[:2]
    if (top.extracted.n, top.extracted.char_start) != (best.n, best.char_start):
        return None  # not the ranking choose() used
    if top.combined - second.combined > config.runner_up_margin:
        return None
    if second.similarity < config.min_similarity:
        return None
    return replace(second.extracted, score=round(second.extracted.score, 4))


class _Reranked(NamedTuple):
    combined: float  # lexical score + dense_weight × similarity
    similarity: float
    extracted: Extracted


def _reranked(
    ranked: Sequence[Extracted], similarities: Sequence[float], config: ExtractiveConfig
) -> list[_Reranked]:
    """The first ``len(similarities)`` of ``ranked``, best first by lexical score plus
    ``dense_weight`` × similarity (ties keep the lexical order): the one ordering both
    :func:`choose` and :func:`runner_up` read."""
    scored = [
        _Reranked(e.score + config.dense_weight * similarity, similarity, e)
        for e, similarity in zip(ranked, similarities, strict=False)
    ]
    return sorted(scored, key=lambda r: -r.combined)


def quoted_together(first: Extracted, second: Extracted | None) -> list[Extracted]:
    """The sentences to quote: ``second`` unless it overlaps ``first`` (a list item already
    quoted), in reading order when they come from the same source. When ``second`` holds all
    of ``first`` (a list's introduction quoted with the item that was the best), it alone."""
    if second is None:
        return [first]
    if (
        second.n == first.n
        and second.char_start < first.char_end
        and second.char_end > first.char_start
    ):
        holds = second.char_start <= first.char_start and second.char_end >= first.char_end
        return [second] if holds else [first]
    if second.n == first.n and second.char_start < first.char_start:
        return [second, first]
    return [first, second]


def answer_text(
    question: str,
    ranked: Sequence[Extracted],
    similarities: Sequence[float],
    sources: Sequence[SourceText],
    config: ExtractiveConfig = ExtractiveConfig(),
) -> str:
    """The extractive answer as the user reads it, "" when no sentence passes the gates:
    :func:`choose` among ``ranked`` (the first ``len(similarities)`` re-ranked by their
    similarity to ``question``), quoted with its :func:`runner_up` and the list items either
    introduces. The one path from ranked sentences to an answer, for the engine and for the
    offline tuning in ``bench.extractive_tuning``."""
    found = choose(ranked, similarities, config, question)
    if found is None:
        return ""
    second = runner_up(ranked[: len(similarities)], similarities, found, config)
    if second is not None and _document(sources, second.n) != _document(sources, found.n):
        # one answer quotes one document: a close sentence of another one (a notice that only
        # names the topic, a document written to be retrieved) does not ride along
        second = None
    return extractive_text(
        quoted_together(
            with_list_items(found, sources),
            with_list_items(second, sources) if second is not None else None,
        )
    )


def _document(sources: Sequence[SourceText], n: int) -> str:
    return next((s.doc_id for s in sources if s.n == n), "")


def extract_answer(
    question: str,
    sources: Sequence[SourceText],
    analyze_many: Analyzer,
    config: ExtractiveConfig = ExtractiveConfig(),
) -> Extracted | None:
    """The best answering sentence by lexical score alone, or None when none answers well
    enough (the engine adds the embedding similarity: :func:`choose`)."""
    found = choose(rank_sentences(question, sources, analyze_many), (), config, question)
    return with_list_items(found, sources) if found is not None else None


def _candidates(sources: Sequence[SourceText]) -> list[_Candidate]:
    found = []
    for rank, source in enumerate(sources):
        for start, end in sentence_spans(source.text):
            if 4 <= end - start <= MAX_SENTENCE_CHARS:
                found.append(_Candidate(source, rank, start, end))
    return found


def _rarity_weights(question_terms: set[str], sentences: Sequence[set[str]]) -> dict[str, float]:
    """An IDF over the candidate sentences: a term in every sentence tells none apart."""
    counts = Counter(t for terms in sentences for t in question_terms if _holds(terms, t))
    total = len(sentences)
    return {t: math.log(1 + (total + 1) / (counts.get(t, 0) + 0.5)) for t in question_terms}


def _share(weights: dict[str, float], terms: set[str]) -> float:
    return sum(w for t, w in weights.items() if _holds(terms, t)) / sum(weights.values())


def _holds(terms: set[str], term: str) -> bool:
    """A Korean compound holds its first part: 신청 is in 신청서 (Kiwi keeps 출장신청서 as
    출장 + 신청서). An English word holds the other forms of its stem, whichever is longer
    (employ: employs, employed; physicians: physician; dispense: dispensing), but a short word
    holds nothing else: "art" is not in "article"."""
    if term in terms:
        return True
    if has_hangul(term):
        return len(term) >= 2 and any(t.startswith(term) for t in terms)
    return len(term) >= 4 and any(_same_stem(term, t) for t in terms)


def _same_stem(a: str, b: str) -> bool:
    """Two words that share all but their last three letters (at least four of them)."""
    stem = max(4, max(len(a), len(b)) - 3)
    return len(a) >= stem and len(b) >= stem and a[:stem] == b[:stem]


def fold_accents(text: str) -> str:
    """Latin letters without their accents (Maizière → Maiziere): a question typed without
    them still matches the document's words. Hangul is decomposed and recomposed unchanged."""
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", kept)


def _typed(score: float, sentence: str, wanted: AnswerType | None) -> float:
    if wanted is None:
        return score
    # a paper's reference markers ("… on a cruise ship [1] .") are no count or amount
    if has_type(CITATION_MARKER_RE.sub(" ", sentence), wanted):
        return score + TYPE_MATCH_BONUS
    return score * TYPE_MISMATCH_FACTOR


# A sentence that introduces a list (a regulation's 각 호, "as follows:"): the answer is in its
# items, so they are quoted with it.
_LIST_INTRO_RE = re.compile(
    r"다음\s*각\s*호|다음과\s*같|as follows|following\s*:|:$", re.IGNORECASE
)
_LIST_ITEM_RE = re.compile(r"[ \t]*(?:[0-9]{1,2}[.)]|[가-하][.)]|\([0-9]{1,2}\)|[-•·*])[ \t]+")
MAX_LIST_CHARS = 500


def with_list_items(found: Extracted, sources: Sequence[SourceText]) -> Extracted:
    """``found``, followed by the list items right after it when it introduces a list (at most
    :data:`MAX_LIST_CHARS` of them, whole lines), quoted from its source as one span."""
    if not _LIST_INTRO_RE.search(found.sentence.strip()):
        return found
    text = next((s.text for s in sources if s.n == found.n), "")
    line_end = text.find("\n", found.char_end)
    end = found.char_end
    while line_end != -1:
        next_end = text.find("\n", line_end + 1)
        line = text[line_end + 1 : next_end if next_end != -1 else len(text)]
        if (
            not _LIST_ITEM_RE.match(line)
            or len(line) + line_end - found.char_start > MAX_LIST_CHARS
        ):
            break
        end = line_end + 1 + len(line.rstrip())
        line_end = next_end
    return replace(found, sentence=text[found.char_start : end], char_end=end)


def extractive_text(extracted: Extracted | Sequence[Extracted]) -> str:
    """The answer as the user reads it: each sentence verbatim, citing its source, on a line of
    its own (a quoted line may lack a final period; the grounding check must still see two
    sentences, each checked against the source it cites)."""
    quoted = [extracted] if isinstance(extracted, Extracted) else extracted
    return "\n".join(f"{e.sentence.strip()} [{e.n}]" for e in quoted)
