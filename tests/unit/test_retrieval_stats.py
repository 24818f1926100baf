"""The retrieval evaluation's statistics: a split that never moves, intervals that mean what they
say, and a calibration that keeps the default unless another setting does better."""

from __future__ import annotations

import pytest

from bench.retrieval_stats import (
    calibrate,
    interval,
    paired_difference,
    per_question,
    split_of,
    summarize,
)

pytestmark = pytest.mark.unit


def test_the_split_is_a_fixed_function_of_set_and_question() -> None:
    sides = [split_of("en_xquad", f"q{i}") for i in range(2000)]
    assert sides == [split_of("en_xquad", f"q{i}") for i in range(2000)]
    assert 0.45 < sides.count("dev") / len(sides) < 0.55
    # another set's question of the same id may fall on the other side
    assert sides != [split_of("ko_seeds", f"q{i}") for i in range(2000)]


def test_the_interval_holds_the_mean_and_narrows_with_more_questions() -> None:
    small = [1.0] * 8 + [0.0] * 2
    large = small * 20
    low_small, high_small = interval(small)
    low_large, high_large = interval(large)
    assert low_small <= 0.8 <= high_small and low_large <= 0.8 <= high_large
    assert high_large - low_large < high_small - low_small
    assert interval([1.0] * 30) == (1.0, 1.0)


def test_a_paired_change_is_significant_only_when_it_is_consistent() -> None:
    before = [0.0] * 50 + [1.0] * 50
    better = [1.0] * 30 + [0.0] * 20 + [1.0] * 50  # 30 won, none lost
    noisy = [1.0] * 3 + [0.0] * 47 + [0.0] * 2 + [1.0] * 48  # 3 won, 2 lost
    assert paired_difference(better, before)["significant"] is True
    assert paired_difference(noisy, before)["significant"] is False
    assert paired_difference(before, before) == {
        "mean": 0.0,
        "ci95": [0.0, 0.0],
        "significant": False,
    }


def test_per_question_values_follow_the_gold_rank() -> None:
    values = per_question([1, 3, None, 12], (1, 5, 10))
    assert values["R@1"] == [1.0, 0.0, 0.0, 0.0]
    assert values["R@5"] == [1.0, 1.0, 0.0, 0.0]
    assert values["MRR@10"] == [1.0, pytest.approx(1 / 3), 0.0, 0.0]
    assert summarize(values)["R@5"]["mean"] == 0.5


def test_calibration_keeps_the_first_setting_on_a_tie() -> None:
    scores = {"default": 1.0, "other": 1.0, "worse": 0.5}
    assert calibrate(list(scores), scores.__getitem__) == ("default", 1.0)
    scores["other"] = 1.1
    assert calibrate(list(scores), scores.__getitem__) == ("other", 1.1)
