"""Tests of segnet_lib.rle_text: the fast integer parser and formatter."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segnet_lib import rle, rle_text

SETTINGS = settings(max_examples=60, deadline=None)


def test_large_numbers_beyond_eight_digits():
    # 1 x 300,000,000 pixels would be too much memory; check the parser and
    # formatter on big values directly and a run near the end of a tall image.
    values = np.array([1, 99_999_999, 100_000_000, 123_456_789_012, 10**15 + 7], np.int64)
    text = rle_text.format_ints(values)
    assert text == " ".join(map(str, values.tolist()))
    np.testing.assert_array_equal(rle_text.parse_ints(text), values)
    starts, lengths = rle.to_runs("123456789 2", (1, 123456790))
    assert starts.tolist() == [123456788] and lengths.tolist() == [2]


@SETTINGS
@given(values=st.lists(st.integers(0, 10**16 - 1), min_size=1, max_size=50))
def test_format_and_parse_integers(values):
    array = np.array(values, np.int64)
    text = rle_text.format_ints(array)
    assert text == " ".join(map(str, values))
    np.testing.assert_array_equal(rle_text.parse_ints(text), array)


@pytest.mark.parametrize("text, expected", [
    ("12 345 6", [12, 345, 6]),
    ("  12\t345\n6 ", [12, 345, 6]),  # any whitespace: the slow path normalises it
    ("-3 0007", [-3, 7]),  # signs and leading zeros: the checked fallback
    ("", []),
])
def test_parse_ints_accepts_any_whitespace(text, expected):
    assert rle_text.parse_ints(text).tolist() == expected


@pytest.mark.parametrize("text, message", [
    ("1 2 x3", r"value 3 \('x3'\) is not an integer"),
    ("1 ٣", r"value 2 \('٣'\) is not an integer"),  # a digit of another script
    ("1 " + "9" * 19, r"value 2 \(9{19}\.\.\.\) is too large"),
])
def test_parse_ints_names_the_bad_token(text, message):
    with pytest.raises(ValueError, match=message):
        rle_text.parse_ints(text)


def test_format_ints_refuses_numbers_beyond_sixteen_digits():
    assert rle_text.format_ints(np.zeros(0, np.int64)) == ""
    with pytest.raises(ValueError, match="too large"):
        rle_text.format_ints(np.array([10**16], np.int64))
