"""prefix_affinity: prompts that share a prefix (system prompt, then the same best source) go
to one server while it has room; the key ignores the question at the end of the prompt."""

from __future__ import annotations

import random

from query_engine.llm.policy import Candidate, RouteRequest, choose, prefix_key_of
from query_engine.prompts import PromptSource, build_messages


def cand(url: str, in_flight: int = 0, cap: int = 10, **stats: float) -> Candidate:
    return Candidate(url=url, in_flight=in_flight, max_in_flight=cap, **stats)


def prompt(question: str, first_source: str, second_source: str = "other") -> list[dict[str, str]]:
    sources = [
        PromptSource(n=1, title="규정", section="", text=first_source * 40),
        PromptSource(n=2, title="manual", section="", text=second_source * 40),
    ]
    return [
        {"role": m.role.value, "content": m.content or ""}
        for m in build_messages(question, sources)
    ]


def test_prompts_with_the_same_best_source_share_a_key_whatever_the_question() -> None:
    article = "제8조(일비) 국내 출장의 일비는 1일 50,000원으로 한다. "
    one = prefix_key_of(prompt("일비는 얼마인가요?", article))
    other = prefix_key_of(prompt("임원의 일비는?", article, second_source="different"))
    elsewhere = prefix_key_of(prompt("일비는 얼마인가요?", "Article 9 covers lodging. "))
    assert one is not None and one == other
    assert elsewhere != one


def test_a_short_prompt_has_no_prefix_worth_keeping_together() -> None:
    assert prefix_key_of([{"role": "user", "content": "hi"}]) is None


def test_one_prefix_goes_to_one_server_and_many_prefixes_spread() -> None:
    servers = [cand(f"http://vllm-{i}:8000/v1") for i in range(4)]
    rng = random.Random(0)
    homes = {
        choose("prefix_affinity", servers, RouteRequest(prefix_key="abc", sequence=n), rng).url  # type: ignore[union-attr]
        for n in range(20)
    }
    assert len(homes) == 1
    spread = {
        choose("prefix_affinity", servers, RouteRequest(prefix_key=f"k{n}"), rng).url  # type: ignore[union-attr]
        for n in range(200)
    }
    assert len(spread) == 4


def test_an_overloaded_home_gives_way_to_the_least_loaded_other() -> None:
    servers = [cand(f"s{i}") for i in range(3)]
    request = RouteRequest(prefix_key="hot-source")
    home = choose("prefix_affinity", servers, request, random.Random(0)).url  # type: ignore[union-attr]
    loaded = [cand(s.url, in_flight=9) if s.url == home else s for s in servers]
    moved = choose("prefix_affinity", loaded, request, random.Random(0))
    assert moved is not None and moved.url != home


def test_a_session_decides_before_the_prefix_and_without_either_the_load() -> None:
    servers = [cand(f"s{i}") for i in range(6)]
    by_session = {
        choose(
            "prefix_affinity", servers, RouteRequest("conv", prefix_key=f"k{n}"), random.Random(n)
        )
        for n in range(10)
    }  # its history grows each turn, so its prefix key changes: the session keeps it home
    same = choose("session_affinity", servers, RouteRequest("c"), random.Random(0))
    assert by_session == {same}
    loaded = [cand("a", in_flight=5), cand("b")]
    assert choose("prefix_affinity", loaded, RouteRequest(), random.Random(0)) == loaded[1]


def test_a_question_without_sources_shares_only_the_messages_before_it() -> None:
    history = [{"role": "system", "content": "rules " * 200}]
    one = prefix_key_of([*history, {"role": "user", "content": "first question"}])
    two = prefix_key_of([*history, {"role": "user", "content": "another question"}])
    assert one is not None and one == two


def test_a_source_longer_than_the_prefix_is_keyed_by_its_beginning() -> None:
    long_article = "제9조(숙박비) 숙박비는 실비로 정산한다. " * 200  # far past PREFIX_CHARS
    one = prefix_key_of(prompt("숙박비 상한은?", long_article, second_source="a"))
    two = prefix_key_of(prompt("실비 정산은?", long_article, second_source="b"))
    assert one is not None and one == two


def test_a_hot_prefix_spills_once_its_home_carries_more_than_its_share() -> None:
    # vLLM's own queue is not reported yet (stale /metrics): our in-flight count bounds it
    servers = [cand(f"s{i}") for i in range(4)]
    request = RouteRequest(prefix_key="popular-article")
    home = choose("prefix_affinity", servers, request, random.Random(0)).url  # type: ignore[union-attr]
    busy = [cand(s.url, in_flight=3 if s.url == home else 1) for s in servers]
    # mean load 1.5: the home may hold max(1.5 x 1.5, 1.5 + 1) = 2.5, and 3 + 1 is more
    moved = choose("prefix_affinity", busy, request, random.Random(0))
    assert moved is not None and moved.url != home
    even = [cand(s.url, in_flight=2) for s in servers]
    assert choose("prefix_affinity", even, request, random.Random(0)).url == home  # type: ignore[union-attr]
