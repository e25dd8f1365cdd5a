"""segnet_lib.metrics: hand-computed values, edge cases and brute-force cross-checks."""
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segnet_lib import cli, datasets, export, metrics, sample_data, voc

# A 2x3 example worked by hand (see test_scores_hand_computed):
#   pairs (gt, pred): (0,0) (0,1) (1,1) (1,1) (2,0), and one void pixel.
LABELS = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
PREDS = np.array([[0, 1, 1], [1, 0, 2]], np.int64)


def test_confusion_matrix_hand_computed():
    cm = metrics.confusion_matrix(LABELS, PREDS, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    assert cm.dtype == np.int64


def test_scores_hand_computed():
    s = metrics.scores(metrics.confusion_matrix(LABELS, PREDS, 3))
    assert s["global_accuracy"] == pytest.approx(3 / 5)
    np.testing.assert_allclose(s["per_class_accuracy"], [1 / 2, 1, 0])
    assert s["class_accuracy"] == pytest.approx(0.5)
    # IoU = TP / (GT + pred - TP): 1/3, 2/(2+3-2), 0/(1+0-0)
    np.testing.assert_allclose(s["per_class_iou"], [1 / 3, 2 / 3, 0])
    assert s["mean_iou"] == pytest.approx(1 / 3)
    # frequency-weighted: 2/5 * 1/3 + 2/5 * 2/3 + 1/5 * 0
    assert s["fw_iou"] == pytest.approx(0.4)
    np.testing.assert_allclose(s["per_class_precision"], [1 / 2, 2 / 3, np.nan])
    np.testing.assert_array_equal(s["gt_pixels"], [2, 2, 1])
    np.testing.assert_array_equal(s["predicted_pixels"], [2, 3, 0])
    assert s["num_pixels"] == 5


def test_void_pixels_are_ignored_whatever_was_predicted():
    a = metrics.confusion_matrix(LABELS, PREDS, 3)
    preds = PREDS.copy()
    preds[1, 2] = 0  # the void pixel
    np.testing.assert_array_equal(metrics.confusion_matrix(LABELS, preds, 3), a)


def test_class_absent_from_both_is_excluded_from_means():
    s4 = metrics.scores(metrics.confusion_matrix(LABELS, PREDS, 4))
    s3 = metrics.scores(metrics.confusion_matrix(LABELS, PREDS, 3))
    assert math.isnan(s4["per_class_iou"][3]) and math.isnan(s4["per_class_accuracy"][3])
    for key in ("global_accuracy", "class_accuracy", "mean_iou", "fw_iou"):
        assert s4[key] == pytest.approx(s3[key])


def test_predicted_but_absent_class_counts_as_zero_iou():
    labels = np.zeros((2, 2), np.uint8)
    preds = np.array([[0, 0], [0, 1]])
    s = metrics.scores(metrics.confusion_matrix(labels, preds, 2))
    np.testing.assert_allclose(s["per_class_iou"], [3 / 4, 0])
    assert s["mean_iou"] == pytest.approx(3 / 8)
    # recall of a class with no ground truth is undefined, so only class 0 counts
    assert math.isnan(s["per_class_accuracy"][1])
    assert s["class_accuracy"] == pytest.approx(3 / 4)
    assert s["fw_iou"] == pytest.approx(3 / 4)


def test_all_void_gives_nan_without_warnings():
    labels = np.full((3, 3), 255, np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cm = metrics.confusion_matrix(labels, np.zeros((3, 3), int), 5)
        s = metrics.scores(cm)
    assert cm.sum() == 0
    for key in ("global_accuracy", "class_accuracy", "mean_iou", "fw_iou"):
        assert math.isnan(s[key]), key
    assert np.isnan(s["per_class_iou"]).all()


def test_one_class():
    labels = np.zeros((4, 5), np.uint8)
    s = metrics.scores(metrics.confusion_matrix(labels, np.zeros((4, 5), int), 1))
    for key in ("global_accuracy", "class_accuracy", "mean_iou", "fw_iou"):
        assert s[key] == 1.0


@pytest.mark.parametrize("labels, preds, message", [
    (np.array([[0, 3]]), np.array([[0, 1]]), "labels contains the value 3 at index (0, 1)"),
    (np.array([[0, -1]]), np.array([[0, 1]]), "labels contains the value -1"),
    (np.array([[0, 1]]), np.array([[0, 255]]), "predictions contains the value 255"),
    (np.array([[0, 1]]), np.array([[0, 3]]), "predictions contains the value 3"),
    (np.array([[0, 1]]), np.array([[0.0, 1.0]]), "dtype float64"),
    (np.array([[0, 1]]), np.array([0, 1]), "same shape"),
])
def test_confusion_matrix_rejects_bad_values(labels, preds, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        metrics.confusion_matrix(labels, preds, 3)


def test_ignore_label_none_makes_255_an_error():
    with pytest.raises(ValueError, match="labels contains the value 255"):
        metrics.confusion_matrix(np.array([255]), np.array([0]), 3, ignore_label=None)


def test_scores_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        metrics.scores(np.zeros((2, 3)))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_confusion_matrix_matches_a_double_loop(data):
    num_classes = data.draw(st.integers(1, 5))
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    label_values = st.one_of(st.integers(0, num_classes - 1), st.just(255))
    labels = data.draw(hnp.arrays(np.int32, shape, elements=label_values))
    preds = data.draw(hnp.arrays(np.int32, shape, elements=st.integers(0, num_classes - 1)))
    expected = np.zeros((num_classes, num_classes), int)
    for t, p in zip(labels.ravel(), preds.ravel()):
        if t != 255:
            expected[t, p] += 1
    np.testing.assert_array_equal(metrics.confusion_matrix(labels, preds, num_classes), expected)


def test_batch_matrix_is_the_sum_of_image_matrices(rng):
    labels = rng.integers(0, 4, size=(3, 7, 5))
    labels[rng.random(labels.shape) < 0.1] = 255
    preds = rng.integers(0, 4, size=(3, 7, 5))
    whole = metrics.confusion_matrix(labels, preds, 4)
    parts = sum(metrics.confusion_matrix(lab, pre, 4) for lab, pre in zip(labels, preds))
    np.testing.assert_array_equal(whole, parts)


# ---------------------------------------------------------------- boundary F1

def square(size=10, top=2, left=2, side=4, value=1):
    out = np.zeros((size, size), np.uint8)
    out[top:top + side, left:left + side] = value
    return out


def test_class_boundary_of_a_square_is_its_perimeter():
    edge = metrics.class_boundary(square() == 1)
    assert edge.sum() == 12  # 4x4 square: 16 pixels minus the 2x2 interior
    assert not edge[3:5, 3:5].any() and edge[2, 2] and edge[5, 5]
    # the image frame is not a boundary
    assert not metrics.class_boundary(np.ones((5, 5), bool)).any()


@pytest.mark.parametrize("radius, count", [(0, 1), (1, 5), (1.5, 9), (2, 13)])
def test_dilate_disk_of_one_pixel(radius, count):
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    assert metrics.dilate_disk(mask, radius).sum() == count


@pytest.mark.parametrize("radius", [0.5, 1.0, 2.3, 3.0, 4.6875, 12.5, 30.0])
def test_dilate_disk_matches_brute_force_distances(rng, radius):
    mask = rng.random((11, 13)) < 0.05
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[:11, :13]
    dist = np.sqrt((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2).min(axis=-1)
    np.testing.assert_array_equal(metrics.dilate_disk(mask, radius), dist <= radius)


def test_boundary_f1_perfect_prediction_is_one():
    label = square()
    assert metrics.boundary_f1(label, label.astype(int), 2) == 1.0


def test_boundary_f1_hand_computed_shift():
    label = square()
    shifted = square(left=3).astype(int)
    # tolerance 0: only coinciding boundary pixels match.
    # class 1: 6 of 12 perimeter pixels coincide -> P = R = 1/2.
    # class 0: the 4-neighbour ring outside the square has 16 pixels; 6 coincide.
    f1 = metrics.image_boundary_f1(label, shifted, 2, tolerance=0)
    np.testing.assert_allclose(f1, [6 / 16, 1 / 2])
    assert metrics.boundary_f1(label, shifted, 2, tolerance=0) == pytest.approx((6 / 16 + 0.5) / 2)
    # within one pixel every boundary pixel finds a partner
    assert metrics.boundary_f1(label, shifted, 2, tolerance=1) == 1.0


def test_boundary_f1_missed_and_invented_classes():
    label = square()
    label[0, 0] = 2  # class 2 present in the ground truth, never predicted
    pred = square(value=3).astype(int)  # and class 3 predicted but absent
    f1 = metrics.image_boundary_f1(label, pred, 4, tolerance=0)
    assert f1[2] == 0.0
    assert math.isnan(f1[3])  # only classes in the ground truth are scored
    assert f1[1] == 0.0


def test_boundary_f1_edge_cases():
    one_class = np.zeros((6, 6), np.uint8)
    assert metrics.boundary_f1(one_class, one_class.astype(int), 1) == 1.0
    void = np.full((6, 6), 255, np.uint8)
    assert math.isnan(metrics.boundary_f1(void, one_class.astype(int), 1))
    # an all-void image is skipped in the mean over images
    batch = np.stack([void, square(6, 1, 1, 3)])
    preds = np.stack([one_class, square(6, 1, 1, 3)]).astype(int)
    assert metrics.boundary_f1(batch, preds, 2) == 1.0


def test_default_tolerance_is_the_papers():
    assert metrics.default_tolerance((375, 500)) == pytest.approx(0.0075 * 625)


def test_boundary_f1_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        metrics.image_boundary_f1(square(), square(8).astype(int), 2)
    with pytest.raises(ValueError, match="prediction contains the value 5"):
        metrics.image_boundary_f1(square(), square(value=5).astype(int), 2)
    with pytest.raises(ValueError, match="2 label maps but 1"):
        metrics.boundary_f1([square(), square()], [square()], 2)


# ---------------------------------------------------------------- Evaluator

def test_evaluator_accumulates_like_one_big_matrix(rng):
    labels = [rng.integers(0, 3, (5, 6)), rng.integers(0, 3, (4, 7))]
    preds = [rng.integers(0, 3, (5, 6)), rng.integers(0, 3, (4, 7))]
    ev = metrics.Evaluator(3)
    for lab, pre, name in zip(labels, preds, ["a", "b"]):
        ev.update(lab, pre, image_ids=name)
    expected = sum(metrics.confusion_matrix(lab, pre, 3) for lab, pre in zip(labels, preds))
    np.testing.assert_array_equal(ev.confusion, expected)
    got = ev.scores()
    assert got["mean_iou"] == pytest.approx(metrics.scores(expected)["mean_iou"])
    table = ev.per_image()
    assert list(table["image_id"]) == ["a", "b"] and len(ev) == 2
    per_image_bf = [metrics.boundary_f1(lab, pre, 3) for lab, pre in zip(labels, preds)]
    np.testing.assert_allclose(table["boundary_f1"], per_image_bf)
    assert got["boundary_f1"] == pytest.approx(np.mean(per_image_bf))
    ev.reset()
    assert len(ev) == 0 and ev.confusion.sum() == 0


def test_evaluator_batch_update_and_per_class_bf():
    labels = np.stack([square(), square(value=0)])
    ev = metrics.Evaluator(2, tolerance=0)
    ev.update(labels, np.stack([square(left=3), square(value=0)]).astype(int))
    s = ev.scores()
    # class 1 only in image 0 (F1 1/2); class 0 in both (6/16, then 1 on the empty image)
    np.testing.assert_allclose(s["per_class_boundary_f1"], [(6 / 16 + 1) / 2, 1 / 2])
    assert list(ev.per_image()["image_id"]) == [0, 1]


class FakeDataset:
    num_classes = 3
    ids = ["x", "y", "z"]

    def __init__(self, rng):
        self.masks = [rng.integers(0, 3, (6, 8)).astype(np.uint8) for _ in self.ids]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return np.zeros((6, 8, 3), np.uint8), self.masks[i]


def test_evaluate_dataset_with_a_perfect_predictor(rng):
    ds = FakeDataset(rng)
    it = iter(ds.masks)

    def predict(image):  # probabilities, one-hot on the true mask
        return np.eye(3, dtype=np.float32)[next(it)]

    ev = metrics.evaluate_dataset(predict, ds, limit=2)
    s = ev.scores()
    assert len(ev) == 2 and s["global_accuracy"] == 1.0 and s["mean_iou"] == 1.0
    assert s["boundary_f1"] == 1.0
    assert list(ev.per_image()["image_id"]) == ["x", "y"]


def test_evaluate_dataset_reports_shape_mismatch(rng):
    with pytest.raises(ValueError, match="image 'x' has shape"):
        metrics.evaluate_dataset(lambda im: np.zeros((3, 3), int), FakeDataset(rng))


def test_tables():
    ev = metrics.Evaluator(3)
    ev.update(LABELS, PREDS)
    s = ev.scores()
    summary = metrics.summary_table(s)
    assert list(summary.index) == list(metrics.SUMMARY_KEYS)
    assert summary.loc["global_accuracy", "value"] == 0.6
    table = metrics.scores_table(s, ["bg", "cat", "dog"], decimals=2)
    assert list(table.index) == ["bg", "cat", "dog"]
    assert table.loc["cat", "iou"] == 0.67 and table.loc["bg", "gt_pixels"] == 2
    assert "boundary_f1" in table.columns
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        metrics.scores_table(s, ["a", "b"])


# ---------------------------------------------------------------- `evaluate` command

class BackgroundPredictor:
    """Stands in for export.Predictor: always predicts background."""

    num_classes = 21
    class_names = tuple(voc.VOC_CLASSES)
    variant = "fake"

    def __init__(self, has_mc_dropout=False):
        self.has_mc_dropout = has_mc_dropout
        self.sampled = 0

    def predict(self, image):
        probs = np.zeros(image.shape[:2] + (21,), np.float32)
        probs[..., 0] = 1
        return probs

    def sample(self, images):
        self.sampled += len(images)
        return np.stack([self.predict(im) for im in images])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def fake_predictor(monkeypatch):
    made = []

    def load(path, **kwargs):
        made.append(BackgroundPredictor(has_mc_dropout=made_kind[0]))
        return made[-1]

    made_kind = [False]
    monkeypatch.setattr(export, "load_predictor", load)
    return made, made_kind


def run_evaluate(*argv):
    return cli.main(["evaluate", *map(str, argv)])


def test_evaluate_command_prints_and_writes(tmp_path, fake_predictor, capsys):
    root = sample_data.sample_root()
    out = tmp_path / "out"
    assert run_evaluate("--checkpoint", tmp_path, "--data", root, "--limit", 3, "--out", out) == 0
    ds = datasets.VOCSegmentation(root, "val")
    masks = [ds[i][1] for i in range(3)]
    expected = metrics.scores(sum(metrics.confusion_matrix(m, np.zeros_like(m), 21)
                                  for m in masks))
    printed = capsys.readouterr().out
    assert "3 images of 'val'" in printed and f"{expected['global_accuracy']:.3f}" in printed

    def no_nan(token):
        raise AssertionError(f"{token} in metrics.json")

    report = json.loads((out / "metrics.json").read_text(), parse_constant=no_nan)
    assert report["images"] == 3 and report["split"] == "val"
    assert report["summary"]["global_accuracy"] == pytest.approx(expected["global_accuracy"])
    assert report["summary"]["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert np.array(report["confusion"]).sum() == expected["num_pixels"]
    per_class = pd.read_csv(out / "metrics.csv", index_col="class")
    assert len(per_class) == 21 and per_class.loc["background", "gt_pixels"] == \
        expected["gt_pixels"][0]
    assert list(pd.read_csv(out / "per_image.csv")["image_id"]) == ds.ids[:3]


def test_evaluate_command_mc_samples(tmp_path, fake_predictor, capsys):
    made, kind = fake_predictor
    args = ("--checkpoint", tmp_path, "--data", sample_data.sample_root(), "--limit", 2,
            "--out", tmp_path / "o", "--mc-samples", 3, "--no-boundary")
    with pytest.raises(SystemExit) as exc:
        run_evaluate(*args)
    assert exc.value.code == 2 and "no dropout to sample" in capsys.readouterr().err
    kind[0] = True
    assert run_evaluate(*args) == 0
    assert made[-1].sampled == 6  # 3 passes for each of 2 images


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "/no/such/run"], "--checkpoint /no/such/run"),
    (["--checkpoint", ".", "--data", "/no/such/data"], "--data /no/such/data"),
    (["--checkpoint", ".", "--mc-samples", "0"], "must be >= 1, got 0"),
])
def test_evaluate_command_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        run_evaluate(*argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_boundary_f1_ignore_label_inside_the_class_range():
    label = square()  # 0 around a square of 1
    f1 = metrics.image_boundary_f1(label, label.astype(int), 2, ignore_label=0)
    assert math.isnan(f1[0]) and f1[1] == 1.0
