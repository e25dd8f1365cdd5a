"""Tests of segnet_lib.rle, the codec: known values, round trips, every error."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segnet_lib import rle

SETTINGS = settings(max_examples=60, deadline=None)

# A 3x4 mask written out by hand:
#   row-major  (C): 0 1 1 0 | 0 0 1 1 | 1 0 0 0       -> pixels 2-3 and 7-9
#   column-major (F): 0 0 1 | 1 0 0 | 1 1 0 | 0 1 0   -> pixels 3-4, 7-8 and 11
MASK = np.array([[0, 1, 1, 0],
                 [0, 0, 1, 1],
                 [1, 0, 0, 0]], np.uint8)
MASK_C = "2 2 7 3"
MASK_F = "3 2 7 2 11 1"


def reference_encode(mask, order):
    """The Kaggle encoder, the independent reference for the tests."""
    pixels = np.concatenate([[0], np.asarray(mask).flatten(order=order), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


# ----------------------------------------------------------------------------
# Known values
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("order, text", [("C", MASK_C), ("F", MASK_F)])
def test_known_mask_both_orders(order, text):
    assert rle.encode(MASK, order) == text
    decoded = rle.decode(text, MASK.shape, order)
    assert decoded.dtype == np.uint8 and decoded.shape == MASK.shape
    np.testing.assert_array_equal(decoded, MASK)


def test_starts_are_one_based():
    mask = rle.decode("1 1", (2, 3), "C")
    assert mask[0, 0] == 1 and mask.sum() == 1
    mask = rle.decode("6 1", (2, 3), "C")
    assert mask[1, 2] == 1 and mask.sum() == 1


def test_kaggle_example_string():
    # '1 3 10 5' = pixels 1, 2, 3 and 10..14 (Kaggle's own example).
    flat = rle.decode("1 3 10 5", (4, 4), "C").ravel()
    np.testing.assert_array_equal(np.flatnonzero(flat) + 1, [1, 2, 3, 10, 11, 12, 13, 14])


def test_orders_differ_by_a_transpose():
    text = "2 3 9 4"
    by_columns = rle.decode(text, (3, 5), "F")
    np.testing.assert_array_equal(by_columns, rle.decode(text, (5, 3), "C").T)
    assert not np.array_equal(by_columns, rle.decode(text, (3, 5), "C"))


@pytest.mark.parametrize("empty", ["", "   ", None, float("nan"), np.nan, pd.NA])
@pytest.mark.parametrize("order", rle.ORDERS)
def test_empty_rle_is_empty_mask(empty, order):
    mask = rle.decode(empty, (3, 4), order)
    assert mask.shape == (3, 4) and mask.dtype == np.uint8 and not mask.any()


@pytest.mark.parametrize("order", rle.ORDERS)
def test_all_zero_and_all_one_masks(order):
    assert rle.encode(np.zeros((3, 5), np.uint8), order) == ""
    assert rle.encode(np.ones((3, 5), bool), order) == "1 15"
    assert rle.encode(np.zeros((0, 5), np.uint8), order) == ""


def test_whitespace_variants_parse_the_same():
    expected = rle.decode("2 2 7 3", (3, 4), "C")
    for text in (" 2 2 7 3 ", "2  2\t7\n3", "2 2 7 3\n", "002 2 7 03"):
        np.testing.assert_array_equal(rle.decode(text, (3, 4), "C"), expected)


def test_adjacent_runs_decode_and_encode_canonically():
    # Touching runs are valid (disjoint) but not canonical: encode merges them.
    mask = rle.decode("1 2 3 2", (2, 3), "C")
    np.testing.assert_array_equal(mask.ravel(), [1, 1, 1, 1, 0, 0])
    assert rle.encode(mask, "C") == "1 4"


def test_f_order_result_is_a_free_view():
    mask = rle.decode(MASK_F, MASK.shape, "F")
    assert mask.flags.f_contiguous


@pytest.mark.parametrize("order", rle.ORDERS)
def test_encode_accepts_any_layout_and_dtype(order):
    rng = np.random.default_rng(3)
    mask = (rng.random((17, 23)) < 0.4).astype(np.uint8)
    expected = reference_encode(mask, order)
    for variant in (mask, np.asfortranarray(mask), mask.astype(bool), mask.astype(np.int64),
                    mask.astype(np.float32), np.ascontiguousarray(mask.T).T):
        assert rle.encode(variant, order) == expected
    wide = (rng.random((17, 46)) < 0.4).astype(np.uint8)
    assert rle.encode(wide[:, ::2], order) == reference_encode(wide[:, ::2], order)


# ----------------------------------------------------------------------------
# Round trips (hypothesis)
# ----------------------------------------------------------------------------

shapes = st.tuples(st.integers(1, 40), st.integers(1, 40))
binary_masks = shapes.flatmap(
    lambda shape: hnp.arrays(np.uint8, shape, elements=st.integers(0, 1)))


@SETTINGS
@given(mask=binary_masks, order=st.sampled_from(rle.ORDERS))
def test_decode_encode_round_trip(mask, order):
    text = rle.encode(mask, order)
    assert text == reference_encode(mask, order)
    np.testing.assert_array_equal(rle.decode(text, mask.shape, order), mask)
    # The other memory layout takes another code path; same answer.
    assert rle.encode(np.asfortranarray(mask), order) == text


@st.composite
def canonical_rles(draw):
    """A shape and a canonical RLE: sorted runs with a gap between them."""
    h, w = draw(shapes)
    n = h * w
    cuts = sorted(draw(st.sets(st.integers(0, n), max_size=min(n + 1, 60))))
    if len(cuts) % 2:
        cuts = cuts[:-1]
    starts, ends = cuts[0::2], cuts[1::2]
    # Merge runs that touch, so the string is canonical.
    runs = []
    for s, e in zip(starts, ends):
        if runs and runs[-1][1] == s:
            runs[-1][1] = e
        else:
            runs.append([s, e])
    text = " ".join(f"{s + 1} {e - s}" for s, e in runs)
    return (h, w), text


@SETTINGS
@given(case=canonical_rles(), order=st.sampled_from(rle.ORDERS))
def test_encode_decode_round_trip(case, order):
    shape, text = case
    assert rle.encode(rle.decode(text, shape, order), order) == text


label_maps = shapes.flatmap(
    lambda shape: hnp.arrays(np.uint8, shape, elements=st.sampled_from([0, 1, 2, 7, 20, 255])))


@SETTINGS
@given(label_map=label_maps, order=st.sampled_from(rle.ORDERS))
def test_label_map_round_trip(label_map, order):
    encoded = rle.encode_label_map(label_map, order)
    assert set(encoded) == set(np.unique(label_map).tolist()) - {0, 255}
    for value, text in encoded.items():
        np.testing.assert_array_equal(rle.decode(text, label_map.shape, order), label_map == value)
    decoded = rle.decode_label_map(list(encoded.values()), list(encoded), label_map.shape, order)
    np.testing.assert_array_equal(decoded, np.where(label_map == 255, 0, label_map))


# ----------------------------------------------------------------------------
# Errors: every malformed input is named, nothing is clipped
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("1 2 3", r"odd number of values \(3\)"),
    ("1 x", r"value 2 \('x'\) is not an integer"),
    ("1.5 2", r"value 1 \('1.5'\) is not an integer"),
    ("1 2e1", r"value 2 \('2e1'\) is not an integer"),
    ("1 ٣", r"value 2 .* is not an integer"),  # an Arabic-Indic digit
    ("0 2", r"run 1 has start 0 < 1 \(starts are 1-based\)"),
    ("3 1 -1 2", r"run 2 has start -1 < 1"),
    ("1 0", r"run 1 \(start 1\) has length 0 < 1"),
    ("1 2 5 -3", r"run 2 \(start 5\) has length -3 < 1"),
    ("10 5", r"run 1 \(start 10, length 5\) ends at pixel 14, past the last pixel 12 of a 3x4 image"),
    ("1 1 13 1", r"run 2 .* past the last pixel 12"),
    ("5 2 1 1", r"run 2 \(start 1, length 1\) is out of order"),
    ("1 5 3 2", r"run 2 \(start 3, length 2\) overlaps run 1 \(start 1, length 5\)"),
    ("1 " + "9" * 25, r"too large"),
])
@pytest.mark.parametrize("order", rle.ORDERS)
def test_malformed_rle_raises(text, message, order):
    with pytest.raises(ValueError, match=message):
        rle.decode(text, (3, 4), order)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="order must be 'C'"):
        rle.decode("1 1", (2, 2), "A")
    with pytest.raises(ValueError, match="order must be 'C'"):
        rle.encode(MASK, "c")
    with pytest.raises(TypeError):
        rle.decode("1 1", (2, 2))  # no default order
    with pytest.raises(ValueError, match="shape must be"):
        rle.decode("1 1", (2, 2, 3), "C")
    with pytest.raises(ValueError, match="shape must be"):
        rle.decode("1 1", (2.5, 2), "C")
    with pytest.raises(TypeError, match="must be a string"):
        rle.decode(b"1 1", (2, 2), "C")
    with pytest.raises(ValueError, match="2-D"):
        rle.encode(np.zeros((2, 2, 1)), "C")
    with pytest.raises(ValueError, match=r"only 0 and 1, found 2"):
        rle.encode(np.array([[0, 2]]), "C")
    with pytest.raises(ValueError, match=r"only 0 and 1, found -1"):
        rle.encode(np.array([[0, -1]]), "F")
    with pytest.raises(ValueError, match=r"only 0 and 1, found 0.5"):
        rle.encode(np.array([[0, 0.5]]), "C")


# ----------------------------------------------------------------------------
# Label maps
# ----------------------------------------------------------------------------

def test_decode_label_map_semantic():
    # Class 3 on the top row, class 15 on pixel (2, 0), background elsewhere.
    label_map = rle.decode_label_map(["1 4", "9 1", ""], [3, 15, float("nan")], (3, 4), "C")
    expected = np.zeros((3, 4), np.uint8)
    expected[0] = 3
    expected[2, 0] = 15
    np.testing.assert_array_equal(label_map, expected)
    assert label_map.dtype == np.uint8


def test_overlap_policies():
    rles, values = ["1 3", "2 3"], [1, 2]  # pixels 2 and 3 are in both rows
    with pytest.raises(ValueError, match=r"a.csv line 2 and a.csv line 3 overlap \(at pixel 2\)"):
        rle.decode_label_map(rles, values, (2, 3), "C", row_labels=["a.csv line 2", "a.csv line 3"])
    last = rle.decode_label_map(rles, values, (2, 3), "C", overlap="last")
    first = rle.decode_label_map(rles, values, (2, 3), "C", overlap="first")
    np.testing.assert_array_equal(last.ravel(), [1, 2, 2, 2, 0, 0])
    np.testing.assert_array_equal(first.ravel(), [1, 1, 1, 2, 0, 0])
    with pytest.raises(ValueError, match="overlap must be one of"):
        rle.decode_label_map(rles, values, (2, 3), "C", overlap="max")


def test_overlap_error_finds_a_run_hidden_inside_another():
    # Row 0 covers 1..10; row 2's run sits inside it, row 1 is disjoint from both.
    with pytest.raises(ValueError, match="row 0 and row 2 overlap"):
        rle.decode_label_map(["1 10", "12 2", "4 2"], [1, 2, 3], (4, 4), "F")


def test_label_map_value_errors():
    with pytest.raises(ValueError, match=r"row 1: value 0 is outside 1..255 for uint8; 0 is the background"):
        rle.decode_label_map(["1 1", "2 1"], [1, 0], (2, 2), "C")
    with pytest.raises(ValueError, match=r"value 300 is outside 1..255 for uint8; pass a wider dtype"):
        rle.decode_label_map(["1 1"], [300], (2, 2), "C")
    wide = rle.decode_label_map(["1 1"], [300], (2, 2), "C", dtype=np.uint16)
    assert wide.dtype == np.uint16 and wide[0, 0] == 300
    with pytest.raises(ValueError, match=r"row 0: value 'cat' is not an integer"):
        rle.decode_label_map(["1 1"], ["cat"], (2, 2), "C")
    with pytest.raises(ValueError, match=r"2 RLE rows but 1 values"):
        rle.decode_label_map(["1 1", "2 1"], [1], (2, 2), "C")
    with pytest.raises(ValueError, match=r"img_7, line 4: run 1 has start 0"):
        rle.decode_label_map(["0 1"], [1], (2, 2), "C", row_labels=["img_7, line 4"])


def _painted_row_by_row(rles, values, shape, order):
    """The plain definition of overlap='last': decode each row, paint it over the others."""
    out = np.zeros(shape, np.uint8)
    for text, value in zip(rles, values):
        out[rle.decode(text, shape, order).astype(bool)] = value
    return out


@pytest.mark.parametrize("order", rle.ORDERS)
def test_label_map_of_many_rows_equals_painting_them_one_by_one(order):
    """Rows are parsed together (one parse per image); the result must not notice."""
    rng = np.random.default_rng(3)
    shape = (37, 53)
    masks = [rng.random(shape) < p for p in rng.uniform(0.02, 0.3, 40)]
    rles = [rle.encode(m, order) for m in masks] + ["", None, float("nan")]
    values = list(rng.integers(1, 5, 40)) + [1, 1, 1]
    rles[7], rles[8] = rles[8], rles[7]  # rows' runs in any order across rows
    values[7], values[8] = values[8], values[7]
    expected = _painted_row_by_row([r if isinstance(r, str) else "" for r in rles], values, shape,
                                   order)
    np.testing.assert_array_equal(rle.decode_label_map(rles, values, shape, order, overlap="last"),
                                  expected)
    # Irregular spacing takes the row-by-row path and means the same.
    spaced = [f" {r}\t".replace(" ", "  ") if isinstance(r, str) and r else r for r in rles]
    np.testing.assert_array_equal(rle.decode_label_map(spaced, values, shape, order, overlap="last"),
                                  expected)


@pytest.mark.parametrize("bad, message", [
    ("5 2 1 1", r"row 2: run 2 \(start 1, length 1\) is out of order"),
    ("5 2 6 1", r"row 2: run 2 \(start 6, length 1\) overlaps run 1"),
    ("5 2 6", r"row 2: odd number of values \(3\)"),
    ("0 2", r"row 2: run 1 has start 0 < 1"),
    ("5 0", r"row 2: run 1 \(start 5\) has length 0 < 1"),
    ("11 3", r"row 2: run 1 \(start 11, length 3\) ends at pixel 13, past the last pixel 12"),
    ("-3 2", r"row 2: run 1 has start -3 < 1"),
    ("5 x", r"row 2: value 2 \('x'\) is not an integer"),
])
def test_a_bad_row_among_good_ones_is_the_one_named(bad, message):
    rles = ["1 2", "3 1 9 2", bad, "2 1"]  # good rows may overlap and come in any order
    with pytest.raises(ValueError, match=message):
        rle.decode_label_map(rles, [1, 2, 3, 4], (3, 4), "C", overlap="last")


def test_encode_label_map_ignores_background_and_void():
    label_map = np.array([[0, 5, 5], [255, 5, 9]], np.uint8)
    assert rle.encode_label_map(label_map, "C") == {5: "2 2 5 1", 9: "6 1"}
    assert rle.encode_label_map(label_map, "F") == {5: "3 3", 9: "6 1"}  # 0 255 | 5 5 | 5 9
    assert rle.encode_label_map(label_map, "C", ignore=(0,)) == {5: "2 2 5 1", 9: "6 1", 255: "4 1"}
    with pytest.raises(ValueError, match="must hold integers"):
        rle.encode_label_map(label_map.astype(float), "C")


# ----------------------------------------------------------------------------
# COCO counts
# ----------------------------------------------------------------------------

def reference_coco_counts(mask):
    """COCO's uncompressed counts, written independently: run lengths of the
    column-major line, the first one a run of 0s (possibly empty)."""
    line = np.asarray(mask).flatten(order="F")
    edges = np.flatnonzero(np.diff(line)) + 1
    lengths = np.diff(np.concatenate([[0], edges, [line.size]])).tolist()
    return ([0] + lengths) if line.size and line[0] else lengths


def test_coco_counts_known_values():
    # pycocotools' own examples: [0 0 1 1 1 0 1] -> [2 3 1 1], [1 1 1 1 1 1 0] -> [0 6 1].
    assert rle.from_coco_counts([2, 3, 1, 1], (1, 7)) == "3 3 7 1"
    assert rle.from_coco_counts([0, 6, 1], (1, 7)) == "1 6"
    assert reference_coco_counts(MASK) == [2, 2, 2, 2, 2, 1, 1]
    assert rle.from_coco_counts(reference_coco_counts(MASK), MASK.shape) == MASK_F
    assert rle.from_coco_counts([12], (3, 4)) == ""


def test_coco_counts_are_not_start_length_pairs():
    # Read as 'start length' pairs, counts are usually refused (the "starts" fall)...
    with pytest.raises(ValueError, match="runs must be sorted"):
        rle.decode(" ".join(map(str, reference_coco_counts(MASK)[:6])), MASK.shape, "F")
    # ...but some are valid pairs, and give another mask without an error.
    truth = np.array([[0, 0, 1, 0, 0, 0, 1]], np.uint8)
    counts = reference_coco_counts(truth)
    assert counts == [2, 1, 3, 1]
    misread = rle.decode(" ".join(map(str, counts)), truth.shape, "F")
    assert misread.tolist() == [[0, 1, 1, 0, 0, 0, 0]]


@given(mask=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9),
                       elements=st.integers(0, 1)))
@SETTINGS
def test_coco_counts_round_trip(mask):
    text = rle.from_coco_counts(reference_coco_counts(mask), mask.shape)
    assert text == rle.encode(mask, "F")
    assert np.array_equal(rle.decode(text, mask.shape, "F"), mask)


def test_coco_counts_agree_with_pycocotools(rng):
    coco_mask = pytest.importorskip("pycocotools.mask")
    for shape in [(5, 7), (16, 9), (1, 1)]:
        mask = (rng.random(shape) < 0.4).astype(np.uint8)
        counts = reference_coco_counts(mask)
        compressed = coco_mask.frPyObjects({"counts": counts, "size": list(shape)}, *shape)
        assert np.array_equal(coco_mask.decode(compressed), mask)
        assert np.array_equal(rle.decode(rle.from_coco_counts(counts, shape), shape, "F"), mask)


def test_coco_counts_errors():
    with pytest.raises(ValueError, match=r"sum to 6, not 12 = 3x4"):
        rle.from_coco_counts([2, 4], (3, 4))
    with pytest.raises(ValueError, match="count 1 is -2 < 0"):
        rle.from_coco_counts([10, -2, 4], (3, 4))
    with pytest.raises(ValueError, match="must be integers"):
        rle.from_coco_counts([6, 5.5, 0.5], (3, 4))
    with pytest.raises(TypeError, match="compressed COCO string"):
        rle.from_coco_counts("PPYo0", (3, 4))
