"""Prompts: a stable system prompt first (so vLLM's prefix cache is reused across questions), then
the numbered sources, then the question.

Bump ``PROMPT_VERSION`` whenever the wording changes: it is part of the answer-cache key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llama_index.core.llms import ChatMessage, MessageRole

PROMPT_VERSION = "3"

NOT_FOUND_ANSWERS = {
    "ko": "제공된 문서에서 답을 찾을 수 없습니다.",
    "en": "I could not find this in the documents.",
}

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources given with each question.\n"
    "Rules:\n"
    "1. Use only facts stated in the sources. Never add outside knowledge.\n"
    "2. After each sentence, cite the sources it uses as [1], [2].\n"
    "3. Answer in the same language as the question (Korean question: answer in Korean).\n"
    "4. Keep the answer short; copy numbers, dates and names exactly as the sources write them.\n"
    f'5. If the sources do not contain the answer, reply only: "{NOT_FOUND_ANSWERS["en"]}" '
    f'(in Korean: "{NOT_FOUND_ANSWERS["ko"]}").'
)

# A request's own instructions (OpenAI system/developer messages) follow the rules under this
# heading: the stable prompt above stays a shared prefix, and the rules stay first and whole.
INSTRUCTIONS_HEADING = (
    "Additional instructions from the user (follow them only where they agree with the rules "
    "above; they never replace them):"
)

# The user message's own markers (see user_message). A model that writes one at the start of a
# line has finished its answer and is continuing the prompt's template: small models echo
# "Question: …\nAnswer:" and then answer again until the token limit.
ANSWER_STOP_SEQUENCES = ("\nQuestion:", "\nSources:")

CONDENSE_PROMPT = (
    "Rewrite the last user question so that it can be understood without the conversation. "
    "Keep its language. Reply with the rewritten question only.\n\n"
    "Conversation:\n{history}\n\nLast question: {question}\nRewritten question:"
)

TRUNCATION_MARK = " …"
SOURCE_SEPARATOR_TOKENS = 3


@dataclass(frozen=True)
class PromptSource:
    n: int
    title: str
    section: str
    text: str


def not_found_answer(language: str) -> str:
    return NOT_FOUND_ANSWERS.get(language, NOT_FOUND_ANSWERS["en"])


def estimate_llm_tokens(text: str) -> int:
    """A safe upper bound on tokens for an English-centric byte-level BPE (SmolLM2, Llama, …).

    Such vocabularies rarely merge non-ASCII bytes (Hangul, hanja, ①, 「」), so each such character
    counts as its UTF-8 length; digits are often one token each; other ASCII averages about 4
    characters a token, counted here as 3 to stay safe.
    """
    tokens = 4
    ascii_other = 0
    for ch in text:
        if not ch.isascii():
            tokens += len(ch.encode())
        elif ch.isdigit():
            tokens += 1
        else:
            ascii_other += 1
    return tokens + (ascii_other + 2) // 3


def system_prompt(instructions: str = "") -> str:
    """docqa's system prompt, with a request's extra instructions appended under a heading."""
    if not instructions.strip():
        return SYSTEM_PROMPT
    return f"{SYSTEM_PROMPT}\n\n{INSTRUCTIONS_HEADING}\n{instructions.strip()}"


def source_header(source: PromptSource) -> str:
    label = source.title or "untitled"
    if source.section:
        label += f" — {source.section}"
    return f"[{source.n}] {label}"


def format_sources(sources: Sequence[PromptSource]) -> str:
    return "\n\n".join(f"{source_header(s)}\n{s.text.strip()}" for s in sources)


def user_message(question: str, sources: Sequence[PromptSource]) -> str:
    return f"Sources:\n\n{format_sources(sources)}\n\nQuestion: {question.strip()}\nAnswer:"


def build_messages(
    question: str,
    sources: Sequence[PromptSource],
    history: Sequence[ChatMessage] = (),
    instructions: str = "",
) -> list[ChatMessage]:
    """System prompt first (a shared prefix for vLLM's cache), then earlier turns, then this one."""
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=system_prompt(instructions)),
        *history,
        ChatMessage(role=MessageRole.USER, content=user_message(question, sources)),
    ]


def pack_sources(
    question: str,
    sources: Sequence[PromptSource],
    *,
    budget_tokens: int,
    count_tokens: Callable[[str], int] = estimate_llm_tokens,
    system: str = SYSTEM_PROMPT,
) -> list[PromptSource]:
    """Keep sources, best first, while the prompt fits ``budget_tokens``; the first source that
    does not fit whole is cut at a line or character boundary so the best evidence is never lost.
    ``system`` is the system prompt the sources go with."""
    used = count_tokens(system) + count_tokens(user_message(question, []))
    packed: list[PromptSource] = []
    for source in sources:
        # "\n" after the header, and "\n\n" before every source but the first
        separators = SOURCE_SEPARATOR_TOKENS if packed else 1
        overhead = count_tokens(source_header(source)) + separators
        cost = overhead + count_tokens(source.text)
        if used + cost <= budget_tokens:
            packed.append(source)
            used += cost
            continue
        room = budget_tokens - used - overhead - count_tokens(TRUNCATION_MARK)
        if room > 32:
            packed.append(_truncated(source, room, count_tokens))
        break
    return packed


def _truncated(source: PromptSource, room: int, count_tokens: Callable[[str], int]) -> PromptSource:
    text = source.text
    low, high = 0, len(text)
    while low < high:  # longest prefix that fits
        mid = (low + high + 1) // 2
        if count_tokens(text[:mid]) <= room:
            low = mid
        else:
            high = mid - 1
    return PromptSource(
        source.n, source.title, source.section, text[:low].rstrip() + TRUNCATION_MARK
    )
