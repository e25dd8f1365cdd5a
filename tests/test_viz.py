"""segnet_lib.viz: pixel values of overlays, figure contents, and the widget browser."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from segnet_lib import metrics, viz, voc  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def sample(rng):
    image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    label = np.zeros((12, 10), np.uint8)
    label[2:8, 3:9] = 8  # cat
    label[1, :] = 255
    pred = np.zeros((12, 10), np.int64)
    pred[3:9, 3:9] = 8
    pred[10:, :2] = 15  # person, not in the ground truth
    return image, label, pred


def legend_texts(target):
    legend = target.legends[0] if hasattr(target, "legends") and target.legends \
        else target.get_legend()
    return [t.get_text() for t in legend.get_texts()]


# ---------------------------------------------------------------- overlays

def test_overlay_blends_with_the_palette(sample):
    image, label, _ = sample
    np.testing.assert_array_equal(viz.overlay(image, label, alpha=0.0), image)
    np.testing.assert_array_equal(viz.overlay(image, label, alpha=1.0), voc.colorize(label))
    half = viz.overlay(image, label, alpha=0.5)
    expected = np.rint(0.5 * image[4, 4].astype(float) + 0.5 * voc.VOC_COLORMAP[8])
    np.testing.assert_array_equal(half[4, 4], expected)


def test_overlay_transparent_classes_keep_the_image(sample):
    image, label, _ = sample
    out = viz.overlay(image, label, alpha=1.0, transparent=(0,))
    np.testing.assert_array_equal(out[label == 0], image[label == 0])
    np.testing.assert_array_equal(out[4, 4], voc.VOC_COLORMAP[8])


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=1.5), "alpha must be in"),
    (dict(label_map=np.zeros((3, 3), np.uint8)), "does not match"),
    (dict(image=np.zeros((12, 10, 3), np.float32)), "uint8"),
])
def test_overlay_rejects_bad_input(sample, kwargs, message):
    image, label, _ = sample
    args = dict(image=image, label_map=label, alpha=0.5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        viz.overlay(**args)


def test_error_overlay_marks_only_scored_mistakes(sample):
    image, label, pred = sample
    out = viz.error_overlay(image, label, pred, alpha=1.0, show_correct=True)
    wrong = (label != 255) & (label != pred)
    right = (label != 255) & (label == pred)
    assert wrong.any() and right.any()
    assert (out[wrong] == viz.ERROR_COLOR).all()
    assert (out[right] == viz.CORRECT_COLOR).all()
    void = out[label == 255]  # grey: the three channels agree
    assert (void[:, 0] == void[:, 1]).all() and (void[:, 1] == void[:, 2]).all()
    with pytest.raises(ValueError, match="prediction shape"):
        viz.error_overlay(image, label, pred[:5])


# ---------------------------------------------------------------- figures

def test_class_legend_names_and_void():
    fig, ax = plt.subplots()
    viz.class_legend(ax, [15, 0, 255, 15])
    assert legend_texts(ax) == ["background", "person", "void"]
    assert viz.class_legend(ax, []) is None


def test_show_grid_layout_titles_and_colour_bars(rng):
    rgb = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    fig = viz.show_grid([[rgb, rng.random((5, 5))], [rgb]], ["a", "b"], ["row 1", "row 2"])
    axes = fig.axes
    assert len(axes) == 5  # 2x2 panels + one colour bar for the float map
    assert [axes[0].get_title(), axes[1].get_title()] == ["a", "b"]
    assert axes[0].get_ylabel() == "row 1"
    assert not axes[3].axison  # the missing panel is blank
    with pytest.raises(ValueError, match="at least one row"):
        viz.show_grid([])


def test_plot_predictions_panels(sample):
    image, label, pred = sample
    probs = np.eye(21, dtype=np.float32)[pred]  # probabilities are turned into ids
    fig = viz.plot_predictions([image, image], [label, label], [pred, probs],
                               titles=["first", "second"], alpha=0.7)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 8
    assert [ax.get_title() for ax in panels[:4]] == ["image", "ground truth", "prediction", "errors"]
    # background is left transparent by default, so it has no legend entry
    np.testing.assert_array_equal(panels[1].images[0].get_array(),
                                  viz.overlay(image, label, 0.7, transparent=(0,)))
    np.testing.assert_array_equal(panels[6].images[0].get_array(),
                                  viz.overlay(image, pred, 0.7, transparent=(0,)))
    assert panels[4].get_ylabel() == "second"
    assert legend_texts(fig) == ["cat", "person", "void"]
    painted = viz.plot_predictions([image], [label], [pred], transparent=())
    assert legend_texts(painted) == ["background", "cat", "person", "void"]


def test_plot_predictions_with_uncertainty_and_errors(sample, rng):
    image, label, pred = sample
    fig = viz.plot_predictions([image], [label], [pred], uncertainties=[rng.random((12, 10))],
                               uncertainty_name="entropy", legend=False)
    assert [ax.get_title() for ax in fig.axes if ax.images][-1] == "entropy"
    assert not fig.legends
    with pytest.raises(ValueError, match="1 images, 2 labels"):
        viz.plot_predictions([image], [label, label], [pred])


def test_plot_confusion_normalised_rows(sample):
    _, label, pred = sample
    cm = metrics.confusion_matrix(label, pred, 21)
    fig = viz.plot_confusion(cm)
    ax = fig.axes[0]
    shown = ax.images[0].get_array()
    assert shown.shape == (3, 3)  # background, cat, person: the others are absent
    np.testing.assert_allclose(shown.sum(axis=1), [1, 1, 0])  # person has no true pixels
    assert [t.get_text() for t in ax.get_yticklabels()] == ["background", "cat", "person"]
    assert len(ax.texts) == 9 and ax.get_xlabel() == "predicted class"
    assert len(fig.axes) == 2  # the colour bar
    counts = viz.plot_confusion(cm, normalize=None, hide_absent=False).axes[0]
    assert counts.images[0].get_array().sum() == cm.sum()
    with pytest.raises(ValueError, match="normalize"):
        viz.plot_confusion(cm, normalize="all")


def test_plot_iou_bars_follow_the_scores():
    iou = np.array([0.9, np.nan, 0.25])
    fig = viz.plot_iou(iou, ["background", "aeroplane", "bicycle"])
    ax = fig.axes[0]
    np.testing.assert_allclose([p.get_width() for p in ax.patches], [0.9, 0.0, 0.25])
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["0.90", "absent", "0.25"]
    assert legend_texts(ax) == ["mean IoU 0.575"]
    np.testing.assert_allclose(ax.patches[2].get_facecolor()[:3], voc.VOC_COLORMAP[2] / 255)


def test_plot_history_from_csv(tmp_path):
    history = pd.DataFrame({
        "step": [0, 10, 20, 30],
        "loss": [2.0, 1.5, 1.2, 1.0],
        "val_loss": [np.nan, 1.6, np.nan, 1.1],
        "val_mean_iou": [np.nan, 0.2, np.nan, 0.3],
        "learning_rate": [0.1, 0.1, 0.05, 0.02],
    })
    path = tmp_path / "history.csv"
    history.to_csv(path, index=False)
    fig = viz.plot_history(path)
    loss_ax, score_ax, lr_ax = fig.axes
    assert legend_texts(loss_ax) == ["loss", "val loss"]
    np.testing.assert_array_equal(loss_ax.lines[1].get_xdata(), [10, 30])  # NaN rows dropped
    assert legend_texts(score_ax) == ["val mean iou"]
    assert lr_ax.get_yscale() == "log" and loss_ax.get_xlabel() == "step"
    constant_lr = history.assign(learning_rate=0.1)
    assert len(viz.plot_history(constant_lr).axes) == 2  # a flat line is left out
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        viz.plot_history(tmp_path / "nothing.csv")
    with pytest.raises(ValueError, match="no loss"):
        viz.plot_history(pd.DataFrame({"step": [1], "foo": [2]}))


def test_plot_accuracy_vs_uncertainty():
    table = pd.DataFrame({"mean_uncertainty": [0.1, 0.5, 0.9], "accuracy": [0.95, 0.7, 0.4],
                          "pixel_share": [0.5, 0.3, 0.2]})
    ax = viz.plot_accuracy_vs_uncertainty(table).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.95, 0.7, 0.4])
    assert legend_texts(ax)[1] == f"all pixels ({0.5 * 0.95 + 0.3 * 0.7 + 0.2 * 0.4:.3f})"
    with pytest.raises(ValueError, match="pixel_share"):
        viz.plot_accuracy_vs_uncertainty(table.drop(columns="pixel_share"))


# ---------------------------------------------------------------- browser

class TinySplit:
    ids = ["a", "b", "c"]

    def __init__(self, rng):
        self.items = []
        for k in range(3):
            label = np.zeros((8, 9), np.uint8)
            label[2:6, 2:7] = k + 1
            self.items.append((rng.integers(0, 256, (8, 9, 3), dtype=np.uint8), label))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def panel_titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.images]


def test_browser_widgets_and_callbacks(rng):
    split = TinySplit(rng)
    calls = []

    def predict(image):
        calls.append(image)
        return np.zeros(image.shape[:2], np.int64)  # always background

    b = viz.browser(split, predict, alpha=0.4)
    assert b.index.max == 2 and b.alpha.value == 0.4
    assert b.toggles["uncertainty"].disabled  # predict gives no uncertainty
    assert panel_titles(b.figure) == ["image", "ground truth", "prediction", "errors"]
    assert b.figure._suptitle.get_text().startswith("a  (#0")

    b.index.value = 2
    assert b.figure._suptitle.get_text().startswith("c  (#2")
    label = split[2][1]
    expected = (label == 0)[label != 255].mean()
    assert f"pixel accuracy {expected:.3f}" in b.figure._suptitle.get_text()

    b.toggles["errors"].value = False
    assert panel_titles(b.figure) == ["image", "ground truth", "prediction"]
    b.alpha.value = 1.0
    gt_panel = [ax for ax in b.figure.axes if ax.get_title() == "ground truth"][0]
    np.testing.assert_array_equal(gt_panel.images[0].get_array(),
                                  viz.overlay(split[2][0], label, 1.0, transparent=(0,)))
    assert (gt_panel.images[0].get_array()[label == 3] == voc.VOC_COLORMAP[3]).all()
    b.index.value = 0  # cached: no new prediction
    assert len(calls) == 2


def test_browser_shows_uncertainty_when_given(rng):
    split = TinySplit(rng)

    def predict(image):
        probs = np.full(image.shape[:2] + (4,), 0.25, np.float32)
        probs[..., 1] = 0.4
        return probs, np.ones(image.shape[:2], np.float32)

    b = viz.Browser(split, predict)
    assert not b.toggles["uncertainty"].disabled
    b.toggles["uncertainty"].value = True
    assert panel_titles(b.figure)[-1] == "uncertainty"
    assert b.view_data(0)[2].max() == 1  # argmax of the probabilities


def test_browser_rejects_bad_index(rng):
    with pytest.raises(ValueError, match="index 5 out of range"):
        viz.browser(TinySplit(rng), lambda im: im[..., 0] * 0, index=5)
