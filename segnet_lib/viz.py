"""Pictures of segmentations: overlays, prediction grids, metric plots, a browser.

Label maps are coloured with the VOC palette (:func:`segnet_lib.voc.colorize`),
so a class has the same colour in every figure of the book, in the dataset's
own PNGs and in the legends drawn here. Plot functions draw with matplotlib's
pyplot and return the :class:`~matplotlib.figure.Figure` (a notebook shows it
when the cell ends; end the cell with ``plt.show()`` rather than a bare call, or
the returned figure is shown twice; a trailing ``;`` does not prevent that under
nbval, which runs cells without IPython's history). The
interactive :class:`Browser` draws on bare figures instead, because figures
created by pyplot inside widget callbacks pile up and reappear at the next cell.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from segnet_lib import voc

__all__ = [
    "colorize",
    "overlay",
    "error_overlay",
    "class_legend",
    "show_grid",
    "plot_predictions",
    "plot_confusion",
    "plot_iou",
    "plot_history",
    "plot_accuracy_vs_uncertainty",
    "Browser",
    "browser",
    "ERROR_COLOR",
    "CORRECT_COLOR",
]

#: RGB of misclassified pixels in error maps.
ERROR_COLOR = (230, 25, 45)
#: RGB of correctly classified pixels in error maps.
CORRECT_COLOR = (40, 170, 80)
#: Inches per panel in grids: big enough to read a 128x128 mask in the HTML book.
PANEL_INCHES = 2.6


def colorize(label_map, colormap: np.ndarray = voc.VOC_COLORMAP) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB picture of a label map (see :func:`segnet_lib.voc.colorize`)."""
    return voc.colorize(label_map, colormap)


def _check_image(image, label_map=None) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 [H, W, 3], got {image.dtype} with shape {image.shape}")
    if label_map is not None and np.shape(label_map) != image.shape[:2]:
        raise ValueError(
            f"label map shape {np.shape(label_map)} does not match the image's "
            f"{image.shape[:2]}")
    return image


def _check_alpha(alpha: float) -> float:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(alpha)


def _blend(image: np.ndarray, colours: np.ndarray, alpha, where=None) -> np.ndarray:
    """``(1 - alpha) * image + alpha * colours`` on ``where`` (everywhere if None), rounded."""
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    mixed = np.rint(mixed).astype(np.uint8)
    if where is None:
        return mixed
    return np.where(where[..., None], mixed, image)


def overlay(image, label_map, alpha: float = 0.5, transparent: Sequence[int] = (),
            colormap: np.ndarray = voc.VOC_COLORMAP) -> np.ndarray:
    """Paints a label map over an image.

    Args:
        image: uint8 ``[H, W, 3]``.
        label_map: integer ``[H, W]`` class ids (255 = void, drawn in the
            palette's void colour).
        alpha: weight of the label colours, 0 (image only) to 1 (colours only).
        transparent: class ids left unpainted, e.g. ``(0,)`` to keep the
            background as it is.
        colormap: uint8 ``[256, 3]`` palette.

    Returns:
        uint8 ``[H, W, 3]``.
    """
    image = _check_image(image, label_map)
    alpha = _check_alpha(alpha)
    label_map = np.asarray(label_map)
    where = ~np.isin(label_map, list(transparent)) if len(transparent) else None
    return _blend(image, colorize(label_map, colormap), alpha, where)


def error_overlay(image, label, prediction, alpha: float = 0.6,
                  ignore_label: int = voc.IGNORE_LABEL, show_correct: bool = False) -> np.ndarray:
    """Marks misclassified pixels in red on a grey copy of the image.

    Void pixels are left grey: they are not scored, so they are neither right
    nor wrong.

    Args:
        image: uint8 ``[H, W, 3]``.
        label: integer ``[H, W]`` ground truth.
        prediction: integer ``[H, W]`` predicted class ids.
        alpha: weight of the marking colours.
        ignore_label: the void value of ``label``.
        show_correct: also tint correct pixels green.

    Returns:
        uint8 ``[H, W, 3]``.
    """
    image = _check_image(image, label)
    alpha = _check_alpha(alpha)
    label, prediction = np.asarray(label), np.asarray(prediction)
    if prediction.shape != label.shape:
        raise ValueError(
            f"prediction shape {prediction.shape} does not match the label's {label.shape}")
    # Grey background so that red and green stand out whatever the photo's colours.
    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    out = np.repeat(np.rint(grey).astype(np.uint8)[..., None], 3, axis=-1)
    scored = label != ignore_label
    wrong = scored & (label != prediction)
    out = _blend(out, np.broadcast_to(np.array(ERROR_COLOR, np.uint8), out.shape), alpha, wrong)
    if show_correct:
        right = scored & ~wrong
        out = _blend(out, np.broadcast_to(np.array(CORRECT_COLOR, np.uint8), out.shape),
                     alpha, right)
    return out


def class_legend(target, class_ids, class_names: Sequence[str] = voc.VOC_CLASSES,
                 colormap: np.ndarray = voc.VOC_COLORMAP, **kwargs):
    """Adds a legend of coloured squares, one per class id, to an axes or figure.

    Args:
        target: a matplotlib Axes or Figure.
        class_ids: the ids to list (e.g. those present in an image); 255 is
            listed as "void".
        class_names: names indexed by class id.
        colormap: uint8 ``[256, 3]`` palette.
        **kwargs: passed to ``legend`` (e.g. ``loc``, ``ncol``).

    Returns:
        The Legend, or None when ``class_ids`` is empty.
    """
    handles = []
    for c in sorted({int(c) for c in class_ids}):
        name = "void" if c == voc.IGNORE_LABEL else (
            class_names[c] if c < len(class_names) else f"class {c}")
        handles.append(Patch(facecolor=colormap[c] / 255.0, edgecolor="0.3", label=name))
    if not handles:
        return None
    kwargs.setdefault("frameon", False)
    kwargs.setdefault("fontsize", "small")
    return target.legend(handles=handles, **kwargs)


def show_grid(rows: Sequence[Sequence], column_titles: Optional[Sequence[str]] = None,
              row_titles: Optional[Sequence[str]] = None, panel_inches: float = PANEL_INCHES,
              suptitle: Optional[str] = None, figure: Optional[Figure] = None) -> Figure:
    """Shows a grid of pictures without axes.

    Args:
        rows: a list of rows, each a list of uint8 ``[H, W, 3]`` images or
            float ``[H, W]`` maps (drawn with the 'magma' colour map and a colour
            bar); None leaves a panel empty.
        column_titles: titles of the columns (on the first row).
        row_titles: a label for each row (left of its first panel).
        panel_inches: size of one panel.
        suptitle: a title for the whole figure.
        figure: draw on this (empty) figure instead of a new pyplot figure.

    Returns:
        The Figure.
    """
    n_rows = len(rows)
    n_cols = max((len(r) for r in rows), default=0)
    if n_rows == 0 or n_cols == 0:
        raise ValueError("show_grid needs at least one row with one panel")
    size = (panel_inches * n_cols, panel_inches * n_rows + (0.4 if suptitle else 0.0))
    if figure is None:
        figure = plt.figure(figsize=size, layout="constrained")
    else:
        figure.set_size_inches(*size)
        figure.set_layout_engine("constrained")
    axes = np.asarray(figure.subplots(n_rows, n_cols, squeeze=False))
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            panel = row[c] if c < len(row) else None
            if panel is None:
                ax.set_axis_off()
                continue
            panel = np.asarray(panel)
            if panel.ndim == 2:
                im = ax.imshow(panel, cmap="magma", interpolation="nearest")
                figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
            else:
                ax.imshow(panel, interpolation="nearest")
            if r == 0 and column_titles is not None and c < len(column_titles):
                ax.set_title(column_titles[c])
        if row_titles is not None and r < len(row_titles):
            axes[r, 0].set_ylabel(row_titles[r], fontsize="small")
    if suptitle:
        figure.suptitle(suptitle)
    return figure


def _as_labels(prediction) -> np.ndarray:
    """Class ids from class ids ``[H, W]`` or probabilities ``[H, W, C]``."""
    prediction = np.asarray(prediction)
    return prediction.argmax(axis=-1) if prediction.ndim == 3 else prediction


def plot_predictions(images, labels, predictions, uncertainties=None,
                     titles: Optional[Sequence[str]] = None,
                     class_names: Sequence[str] = voc.VOC_CLASSES, alpha: float = 0.7,
                     transparent: Sequence[int] = (0,), uncertainty_name: str = "uncertainty",
                     legend: bool = True, ignore_label: int = voc.IGNORE_LABEL) -> Figure:
    """Image | ground truth | prediction | errors (| uncertainty), one row per image.

    Args:
        images: uint8 ``[H, W, 3]`` images (a list, or a ``[B, H, W, 3]`` array).
        labels: integer ``[H, W]`` ground-truth maps (None entries: no ground
            truth, so no error panel either).
        predictions: class ids ``[H, W]`` or probabilities ``[H, W, C]``.
        uncertainties: optional float ``[H, W]`` maps (e.g. predictive entropy).
        titles: one label per row (e.g. the image id and its score).
        class_names: names indexed by class id, for the legend.
        alpha: opacity of the label colours over the image (1: colours only).
        transparent: classes left unpainted (default: background, whose palette
            colour is black and would hide the photo); () paints every class.
        uncertainty_name: title of the uncertainty column.
        legend: add a legend of the classes that appear.
        ignore_label: the void value of the labels.

    Returns:
        The Figure.
    """
    images = list(images)
    labels = list(labels) if labels is not None else [None] * len(images)
    predictions = [_as_labels(p) for p in predictions]
    if not (len(images) == len(labels) == len(predictions)):
        raise ValueError(
            f"got {len(images)} images, {len(labels)} labels and {len(predictions)} predictions")
    if uncertainties is not None:
        uncertainties = list(uncertainties)
        if len(uncertainties) != len(images):
            raise ValueError(f"got {len(uncertainties)} uncertainty maps for {len(images)} images")
    columns = ["image", "ground truth", "prediction", "errors"]
    if uncertainties is not None:
        columns.append(uncertainty_name)
    rows, present = [], set()
    for i, (image, label, pred) in enumerate(zip(images, labels, predictions)):
        image = _check_image(image, pred)
        present.update(np.unique(pred).tolist())
        row = [image, None, overlay(image, pred, alpha, transparent), None]
        if label is not None:
            present.update(np.unique(label).tolist())
            row[1] = overlay(image, label, alpha, transparent)
            row[3] = error_overlay(image, label, pred, ignore_label=ignore_label)
        if uncertainties is not None:
            row.append(np.asarray(uncertainties[i], np.float32))
        rows.append(row)
    figure = show_grid(rows, columns, titles)
    if legend:
        shown = present - set(transparent)
        class_legend(figure, shown, class_names, loc="outside lower center",
                     ncol=min(8, max(1, len(shown))))
    return figure


def plot_confusion(confusion, class_names: Sequence[str] = voc.VOC_CLASSES,
                   normalize: Optional[str] = "true", ax=None, annotate: Optional[bool] = None,
                   title: Optional[str] = None, hide_absent: bool = True) -> Figure:
    """Heat map of a confusion matrix (rows = ground truth) with class names.

    Args:
        confusion: ``[C, C]`` counts from :func:`segnet_lib.metrics.confusion_matrix`.
        class_names: ``C`` names.
        normalize: ``'true'`` divides each row by its total (the diagonal is
            then the per-class accuracy), ``'pred'`` each column, None shows
            counts.
        ax: draw into this Axes (default: a new figure).
        annotate: write the values in the cells (default: when C <= 12).
        title: the axes title.
        hide_absent: drop classes with neither ground truth nor predictions.

    Returns:
        The Figure.
    """
    confusion = np.asarray(confusion, np.float64)
    num_classes = confusion.shape[0]
    if confusion.shape != (num_classes, num_classes):
        raise ValueError(f"confusion must be square, got shape {confusion.shape}")
    if len(class_names) < num_classes:
        raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
    keep = np.arange(num_classes)
    if hide_absent:
        keep = keep[(confusion.sum(0) + confusion.sum(1)) > 0]
    shown = confusion[np.ix_(keep, keep)]
    names = [class_names[k] for k in keep]
    if normalize == "true":
        totals = shown.sum(axis=1, keepdims=True)
        shown = np.divide(shown, totals, out=np.zeros_like(shown), where=totals > 0)
        bar_label = "share of the true class's pixels"
    elif normalize == "pred":
        totals = shown.sum(axis=0, keepdims=True)
        shown = np.divide(shown, totals, out=np.zeros_like(shown), where=totals > 0)
        bar_label = "share of the predicted class's pixels"
    elif normalize is None:
        bar_label = "pixels"
    else:
        raise ValueError(f"normalize must be 'true', 'pred' or None, got {normalize!r}")
    n = len(keep)
    if ax is None:
        side = max(4.5, 0.42 * n + 2.5)
        figure, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    else:
        figure = ax.figure
    vmax = 1.0 if normalize else None
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label=bar_label)
    ax.set_xticks(range(n), names, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or ("Confusion matrix (rows sum to 1)" if normalize == "true"
                           else "Confusion matrix"))
    if annotate is None:
        annotate = n <= 12
    if annotate:
        top = shown.max() if shown.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{shown[i, j]:.2f}" if normalize else f"{int(shown[i, j])}"
                colour = "white" if top and shown[i, j] > 0.6 * top else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize="x-small", color=colour)
    return figure


def plot_iou(per_class_iou, class_names: Sequence[str] = voc.VOC_CLASSES, ax=None,
             title: str = "IoU per class", colormap: np.ndarray = voc.VOC_COLORMAP) -> Figure:
    """Horizontal bar chart of per-class IoU in the classes' colours, with the mean.

    Classes whose IoU is NaN (absent from ground truth and prediction) are
    listed as "absent" with no bar; the dashed line is the mean over the others.

    Args:
        per_class_iou: float ``[C]`` (from :func:`segnet_lib.metrics.scores`).
        class_names: ``C`` names.
        ax: draw into this Axes (default: a new figure).
        title: the axes title.
        colormap: palette for the bar colours.

    Returns:
        The Figure.
    """
    iou = np.asarray(per_class_iou, np.float64)
    if len(class_names) < len(iou):
        raise ValueError(f"got {len(class_names)} class names for {len(iou)} classes")
    names = list(class_names[:len(iou)])
    if ax is None:
        figure, ax = plt.subplots(figsize=(6.5, 0.28 * len(iou) + 1.2), layout="constrained")
    else:
        figure = ax.figure
    y = np.arange(len(iou))
    colours = colormap[: len(iou)] / 255.0
    ax.barh(y, np.nan_to_num(iou), color=colours, edgecolor="0.3", linewidth=0.5)
    for yi, value in zip(y, iou):
        ax.text((0.0 if np.isnan(value) else value) + 0.01, yi,
                "absent" if np.isnan(value) else f"{value:.2f}",
                va="center", fontsize="x-small", color="0.4" if np.isnan(value) else "black")
    finite = iou[~np.isnan(iou)]
    if finite.size:
        ax.axvline(finite.mean(), color="0.2", linestyle="--", linewidth=1,
                   label=f"mean IoU {finite.mean():.3f}")
        ax.legend(loc="lower right", fontsize="small")
    ax.set_yticks(y, names)
    ax.invert_yaxis()  # class 0 on top, as in the tables
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("intersection over union")
    ax.set_title(title)
    return figure


# Columns of a training history, grouped into panels by name.
_LOSS_WORDS = ("loss",)
_SCORE_WORDS = ("acc", "iou", "f1")
_STEP_COLUMNS = ("step", "global_step", "iteration", "epoch")


def plot_history(history, x: Optional[str] = None, title: str = "Training curves") -> Figure:
    """Training curves from a history table or its CSV file.

    Columns whose name contains "loss" share the first panel; columns with
    "acc", "iou" or "f1" (accuracies, mean IoU, BF) the second; "lr" or
    "learning_rate" a third (log scale), unless it is constant. Evaluation columns are usually filled
    only every few steps, so each curve is drawn from its non-missing rows.

    Args:
        history: pandas DataFrame or the path of a CSV (e.g. the run folder's
            ``history.csv`` written by :func:`segnet_lib.train.train`).
        x: the column for the horizontal axis (default: the first of "step",
            "global_step", "iteration", "epoch" that exists, else the row number).
        title: the figure title.

    Returns:
        The Figure.

    Raises:
        FileNotFoundError: the CSV does not exist.
        ValueError: no loss or score column to draw, or ``x`` is not a column.
    """
    if isinstance(history, (str, Path)):
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"history CSV not found: {path}")
        history = pd.read_csv(path)
    if x is None:
        x = next((c for c in _STEP_COLUMNS if c in history.columns), None)
    elif x not in history.columns:
        raise ValueError(f"x column {x!r} not in the history columns {list(history.columns)}")
    xs = history[x] if x is not None else pd.Series(np.arange(len(history)))
    numeric = [c for c in history.columns
               if c != x and pd.api.types.is_numeric_dtype(history[c])]
    groups = [
        ("loss", [c for c in numeric if any(w in c.lower() for w in _LOSS_WORDS)], False),
        ("score", [c for c in numeric if any(w in c.lower() for w in _SCORE_WORDS)
                   and not any(w in c.lower() for w in _LOSS_WORDS)], False),
        # A constant learning rate would only take space.
        ("learning rate", [c for c in numeric if c.lower() in ("lr", "learning_rate")
                           and history[c].nunique() > 1], True),
    ]
    groups = [g for g in groups if g[1]]
    if not groups:
        raise ValueError(
            f"no loss, accuracy, IoU or F1 column to plot among {list(history.columns)}")
    figure, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 3.4),
                                layout="constrained", squeeze=False)
    for ax, (ylabel, columns, log) in zip(axes[0], groups):
        for column in columns:
            rows = history[column].notna()
            style = "-" if rows.sum() > 20 else "o-"
            ax.plot(xs[rows], history.loc[rows, column], style, markersize=3,
                    label=column.replace("_", " "))
        ax.set_xlabel(x or "row")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle(title)
    return figure


def plot_accuracy_vs_uncertainty(table: pd.DataFrame, ax=None, label: Optional[str] = None,
                                 uncertainty_name: str = "predictive entropy",
                                 title: str = "Accuracy versus uncertainty") -> Figure:
    """Pixel accuracy in each uncertainty bin (a calibration view for MC dropout).

    Args:
        table: from :func:`segnet_lib.bayes.accuracy_by_uncertainty` (columns
            ``mean_uncertainty``, ``accuracy``, ``pixel_share``).
        ax: draw into this Axes (default: a new figure).
        label: legend label of the curve.
        uncertainty_name: the horizontal axis' quantity.
        title: the axes title.

    Returns:
        The Figure.
    """
    missing = {"mean_uncertainty", "accuracy", "pixel_share"} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)}")
    if ax is None:
        figure, ax = plt.subplots(figsize=(6.0, 4.0), layout="constrained")
    else:
        figure = ax.figure
    ax.plot(table["mean_uncertainty"], table["accuracy"], "o-", label=label or "pixel accuracy")
    overall = float(np.average(table["accuracy"], weights=table["pixel_share"]))
    ax.axhline(overall, color="0.5", linestyle="--", linewidth=1,
               label=f"all pixels ({overall:.3f})")
    ax.set_xlabel(f"{uncertainty_name} (bin mean)")
    ax.set_ylabel("pixel accuracy in the bin")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title)
    return figure


# --------------------------------------------------------------------------
# Interactive browser
# --------------------------------------------------------------------------

class Browser:
    """An ipywidgets browser over a split: image, ground truth, prediction, errors.

    Controls: an image index slider, an overlay-opacity slider and toggles for
    the ground truth, prediction, error and uncertainty panels. Predictions are
    computed on demand and cached. :attr:`figure` always holds the last drawn
    view, so the same picture can be shown statically (in the HTML book the
    widget cannot run).

    Args:
        dataset: indexable, ``len(dataset)``, ``dataset[i] -> (image uint8
            [H, W, 3], mask [H, W])``; ``.ids`` (when present) title the views.
        predict: ``image -> probabilities [H, W, C]`` or ``class ids [H, W]``,
            or ``-> (either of those, uncertainty float [H, W])``.
        class_names: names indexed by class id.
        index: the first image shown.
        alpha: the first overlay opacity.
        ignore_label: the void value of the masks.
        transparent: classes left unpainted in the overlays (default: background).
    """

    PANELS = ("ground truth", "prediction", "errors", "uncertainty")

    def __init__(self, dataset, predict: Callable, class_names: Sequence[str] = voc.VOC_CLASSES,
                 index: int = 0, alpha: float = 0.6, ignore_label: int = voc.IGNORE_LABEL,
                 transparent: Sequence[int] = (0,)):
        if len(dataset) == 0:
            raise ValueError("the dataset is empty: nothing to browse")
        if not 0 <= index < len(dataset):
            raise ValueError(f"index {index} out of range for {len(dataset)} images")
        self.dataset = dataset
        self.predict = predict
        self.class_names = class_names
        self.ignore_label = ignore_label
        self.transparent = tuple(transparent)
        self._cache = {}
        self.figure: Optional[Figure] = None
        self.index = widgets.IntSlider(value=index, min=0, max=len(dataset) - 1,
                                       description="image", continuous_update=False)
        self.alpha = widgets.FloatSlider(value=_check_alpha(alpha), min=0.0, max=1.0, step=0.05,
                                         description="opacity", continuous_update=False)
        self.toggles = {
            name: widgets.ToggleButton(value=name != "uncertainty", description=name)
            for name in self.PANELS
        }
        if self.view_data(index)[3] is None:
            # Nothing to show: keep the button but make clear it does nothing.
            self.toggles["uncertainty"].value = False
            self.toggles["uncertainty"].disabled = True
        self.output = widgets.Output()
        for control in (self.index, self.alpha, *self.toggles.values()):
            control.observe(self._on_change, names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.index, self.alpha]),
            widgets.HBox(list(self.toggles.values())),
            self.output,
        ])
        self.render()

    def image_id(self, i: int):
        """The dataset id of image ``i`` (its index when the dataset has no ids)."""
        ids = getattr(self.dataset, "ids", None)
        return ids[i] if ids is not None else i

    def view_data(self, i: int):
        """``(image, mask, prediction class ids, uncertainty or None)`` of image ``i``, cached."""
        if i not in self._cache:
            image, mask = self.dataset[i]
            output = self.predict(image)
            uncertainty = None
            if isinstance(output, tuple):
                output, uncertainty = output
            prediction = _as_labels(output)
            if prediction.shape != np.shape(mask):
                raise ValueError(
                    f"prediction for image {self.image_id(i)!r} has shape {prediction.shape}, "
                    f"its mask {np.shape(mask)}")
            self._cache[i] = (image, mask, prediction, uncertainty)
        return self._cache[i]

    def shown_panels(self) -> list:
        """Names of the panels switched on (the image itself is always shown)."""
        return [name for name, t in self.toggles.items() if t.value and not t.disabled]

    def render(self) -> Figure:
        """Draws the current view into :attr:`figure` and the output widget."""
        i, alpha = self.index.value, self.alpha.value
        image, mask, prediction, uncertainty = self.view_data(i)
        panels, titles = [image], ["image"]
        for name in self.shown_panels():
            if name == "ground truth":
                panels.append(overlay(image, mask, alpha, self.transparent))
            elif name == "prediction":
                panels.append(overlay(image, prediction, alpha, self.transparent))
            elif name == "errors":
                panels.append(error_overlay(image, mask, prediction, alpha, self.ignore_label))
            elif name == "uncertainty":
                panels.append(np.asarray(uncertainty, np.float32))
            titles.append(name)
        scored = np.asarray(mask) != self.ignore_label
        accuracy = float((prediction[scored] == np.asarray(mask)[scored]).mean()) \
            if scored.any() else math.nan
        figure = Figure()
        show_grid([panels], titles, figure=figure,
                  suptitle=f"{self.image_id(i)}  (#{i}, pixel accuracy {accuracy:.3f})")
        present = (set(np.unique(mask).tolist()) | set(np.unique(prediction).tolist())) \
            - set(self.transparent)
        class_legend(figure, present, self.class_names, loc="outside lower center",
                     ncol=min(8, len(present)))
        self.figure = figure
        with self.output:
            self.output.clear_output(wait=True)
            display(figure)
        return figure

    def _on_change(self, change) -> None:
        self.render()

    def _ipython_display_(self):
        display(self.widget)


def browser(dataset, predict: Callable, class_names: Sequence[str] = voc.VOC_CLASSES,
            index: int = 0, alpha: float = 0.6, transparent: Sequence[int] = (0,)) -> Browser:
    """Builds a :class:`Browser` (display it as the last expression of a cell)."""
    return Browser(dataset, predict, class_names, index=index, alpha=alpha,
                   transparent=transparent)
