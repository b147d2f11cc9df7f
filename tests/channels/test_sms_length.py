"""The domestic SMS segment counter, on the worked examples of CHANNELS.md §3."""

from __future__ import annotations

import pytest

from baoke.channels.sms_length import LONG_SEGMENT, SINGLE_SEGMENT, length, segments

SIGN = "【某某汽车】"  # the brackets count: 6 characters
SUFFIX = "拒收请回复R"  # an appended unsubscribe text counts too: 6


def test_the_signature_and_the_suffix_count_with_their_brackets() -> None:
    assert length(SIGN) == 6
    assert length(SUFFIX) == 6


def test_seventy_characters_are_one_segment() -> None:
    text = SIGN + "车" * 58 + SUFFIX  # 6 + 58 + 6 = 70
    assert length(text) == SINGLE_SEGMENT
    assert segments(text) == 1


def test_seventy_one_characters_are_two_segments_of_67_and_4() -> None:
    text = SIGN + "车" * 59 + SUFFIX  # 71
    assert segments(text) == 2


def test_160_characters_are_three_segments() -> None:
    assert segments("a" * 160) == 3  # 67 + 67 + 26


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4), (500, 8)],
)
def test_long_messages_split_at_67(n: int, expected: int) -> None:
    assert segments("字" * n) == expected
    assert expected == (1 if n <= 70 else -(-n // LONG_SEGMENT))


def test_letters_digits_spaces_and_punctuation_count_one_each() -> None:
    assert length("Ab1 ，,。.") == 8
    assert segments("A" * 35 + "，" * 35) == 1


def test_characters_beyond_the_bmp_count_two() -> None:
    assert length("🚗") == 2
    assert length("𠀀") == 2  # CJK Extension B
    assert segments("车" * 69 + "🚗") == 2  # 69 + 2 = 71


def test_an_empty_text_is_still_one_message() -> None:
    assert segments("") == 1
