"""Rank parsing: words, compound words, numeric suffixes and the release's float defect ("28.0th")."""

from __future__ import annotations

import pytest

from src.corpus.ranks import ordinal_suffix, ordinal_words, parse_rank, release_ordinal
from src.errors import PipesynthError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("first", 1),
        ("second", 2),
        ("ninth", 9),
        ("twelfth", 12),
        ("nineteenth", 19),
        ("twentieth", 20),
        ("Twenty-First", 21),
        ("thirty second", 32),
        ("ninetieth", 90),
        ("1st", 1),
        ("22nd", 22),
        ("43rd", 43),
        ("28.0th", 28),
        ("22.0nd", 22),
        ("21.0st", 21),
        ("99.0th", 99),
        ("7", 7),
        ("7.0", 7),
        (" 3rd ", 3),
        (5, 5),
    ],
)
def test_parse_rank_formats(text: str | int, expected: int) -> None:
    assert parse_rank(text) == expected


@pytest.mark.parametrize("bad", ["", "place", "0th", "zeroth", "-3", "3.5th", "twenty-zeroth"])
def test_parse_rank_rejects_garbage_with_one_message(bad: str) -> None:
    with pytest.raises(PipesynthError, match="rank") as err:
        parse_rank(bad)
    assert "fix:" in str(err.value)


def test_renderings_round_trip_through_the_parser() -> None:
    for n in range(1, 100):
        assert parse_rank(ordinal_words(n)) == n
        assert parse_rank(ordinal_suffix(n)) == n
        assert parse_rank(release_ordinal(n)) == n


def test_renderings_match_english_and_the_release() -> None:
    assert [ordinal_suffix(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "111th",
    ]  # fmt: skip
    assert (
        ordinal_words(9) == "ninth"
        and ordinal_words(20) == "twentieth"
        and ordinal_words(21) == "twenty-first"
    )
    assert release_ordinal(9) == "ninth" and release_ordinal(20) == "twentieth"
    assert (
        release_ordinal(28) == "28.0th"
        and release_ordinal(22) == "22.0nd"
        and release_ordinal(23) == "23.0rd"
    )
