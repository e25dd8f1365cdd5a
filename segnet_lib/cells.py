"""Cell images in the Sartorius layout: a generated stand-in, label maps, submissions.

The Sartorius Cell Instance Segmentation competition (Kaggle, 2021) ships
``train.csv`` with one row per annotated cell and the columns of
:data:`CSV_COLUMNS`; ``annotation`` is a 1-based ``start length`` RLE of a
520 x 704 (height x width) mask numbered **row-major** (``order='C'``), and
``cell_type`` names the neuronal cell line: ``shsy5y``, ``astro`` or ``cort``.
Images are greyscale phase-contrast micrographs ``train/<id>.png``. Annotated
cells overlap: two rows of one image can claim the same pixel.

This module provides, without any download:

* :func:`generate` / :func:`cells_root`: a deterministic stand-in in exactly
  that layout, at a scale a CPU can train on (``scale=1.0`` gives the real
  520 x 704). Each image holds one cell type, as the real images do (public
  solutions reduce ``cell_type`` to one value per image), drawn with the
  three morphologies that tell the types apart: small round ``cort`` cells
  scattered over the field; elongated, spindle-shaped ``shsy5y`` cells with
  thin neurites, in touching clusters; few, large, irregular ``astro`` cells
  with long processes, spread out. All three share one intensity model (a
  bright halo outside the outline, a dark rim inside it, a textured interior
  darker or lighter than the background), so no grey-level threshold
  separates them; shape, size and arrangement do.
* :func:`semantic_map`: an image's rows painted into one label map by cell
  type (0 background, then :data:`CELL_TYPES` in order), with an explicit
  overlap policy.
* :func:`instance_map`, :func:`submission_rows`, :func:`write_submission`: a
  predicted label map back to the competition's submission format, one RLE
  row per connected component of each class.
* :func:`has_layout`: whether a CSV header is this layout's, so that
  :func:`segnet_lib.datasets.open_split` reads such a file (and ``'cells'``,
  the stand-in) without being told its pixel order or class column.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy import ndimage
from tqdm.auto import tqdm

from segnet_lib import rle, rle_csv
from segnet_lib.files import atomic_write_text, cache_dir, cached_dir

#: The competition's cell lines; class id = index + 1 (0 is the background). The
#: order is the one public solutions number them in (e.g. the winning solution's
#: ``CATEGORIES = ('shsy5y', 'astro', 'cort')``), not the sorted one.
CELL_TYPES = ("shsy5y", "astro", "cort")
#: Class names, index = class id.
CLASS_NAMES = (rle_csv.BACKGROUND,) + CELL_TYPES
#: Size of the real images (and of the stand-in at ``scale=1.0``).
HEIGHT, WIDTH = 520, 704
#: The columns of the competition's ``train.csv``, in order.
CSV_COLUMNS = ("id", "annotation", "width", "height", "cell_type", "plate_time",
               "sample_date", "sample_id", "elapsed_timedelta")
#: The columns of a submission: one row per predicted instance.
SUBMISSION_COLUMNS = ("id", "predicted")
#: Pixel order of every RLE string in this format (row-major).
RLE_ORDER = "C"
#: The column that holds each row's cell type.
CLASS_COLUMN = "cell_type"
#: The columns that identify the layout in a header (:func:`has_layout`).
LAYOUT_COLUMNS = ("id", "annotation", CLASS_COLUMN)
#: Where the images and the annotations live under a dataset root.
IMAGE_DIR = "train"
CSV_NAME = "train.csv"
#: Images in the cached stand-in (:func:`cells_root`).
DEFAULT_NUM_IMAGES = 150
#: Bump when the generator or the cached copy (DEFAULT_NUM_IMAGES, the default
#: scale) changes: cached copies are regenerated, and a run trained on ``'cells'``
#: records this version (``datasets.data_version``), so a shipped one turns stale.
CELLS_VERSION = 2

_SUPERSAMPLE = 3  # cells are drawn 3x larger and box-filtered: soft outlines
_EIGHT_NEIGHBOURS = np.ones((3, 3), bool)  # connectivity of a cell: edges and corners
# Plates (the part of sample_id before the first '_') seen in public solutions'
# code for each cell type; the stand-in draws its sample ids from these.
_PLATES = {"shsy5y": ("shsy5y[diff]",),
           "astro": ("astro[hippo]", "astros[cereb]"),
           "cort": ("cort[6-OHDA]", "cort[debris]", "cort[density]", "cort[oka-high]",
                    "cort[oka-low]", "cort[pre-treat]")}


# ----------------------------------------------------------------------------
# Sizes and names
# ----------------------------------------------------------------------------

def image_size(scale: float = 0.5) -> tuple[int, int]:
    """``(height, width)`` of the stand-in's images at ``scale`` of 520 x 704.

    Raises:
        ValueError: ``scale`` outside (0, 1].
    """
    if not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1] (1.0 is the real 520x704), got {scale!r}")
    return max(1, round(HEIGHT * scale)), max(1, round(WIDTH * scale))


def has_layout(columns) -> bool:
    """Whether a CSV header is the Sartorius ``train.csv``'s.

    It is when it has the columns of :data:`LAYOUT_COLUMNS` (``id``,
    ``annotation``, ``cell_type``; exact names, as in the file), whatever
    else it has: the metadata columns are not needed to read the masks.
    Such a file is read row-major (:data:`RLE_ORDER`) with ``cell_type`` as
    the class column and :data:`CLASS_NAMES` as the classes.
    """
    return set(LAYOUT_COLUMNS) <= {str(c) for c in columns}


def class_id(cell_type: str, where: str = "cell type") -> int:
    """Class id (1, 2, 3) of a cell type name; ValueError naming ``where`` otherwise."""
    try:
        return CELL_TYPES.index(cell_type) + 1
    except ValueError:
        raise ValueError(f"{where}: unknown cell type {cell_type!r}; expected one of "
                         f"{', '.join(CELL_TYPES)}") from None


# ----------------------------------------------------------------------------
# Drawing one cell
# ----------------------------------------------------------------------------

def _blob(rng, cx, cy, rx, ry, angle, roughness, n=28):
    """Outline points of a perturbed ellipse (a few low harmonics on the radius)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    k = np.arange(2, 6)[:, None]
    r = 1 + (roughness * rng.normal(size=(4, 1)) / k
             * np.cos(k * t + rng.uniform(0, 2 * np.pi, (4, 1)))).sum(axis=0)
    x, y = rx * r * np.cos(t), ry * r * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def _process(rng, x, y, angle, length, width, curl):
    """A tapering, gently curving line: ``(points [k, 2], widths [k - 1])``."""
    steps = max(2, int(length / 6))
    turns = np.cumsum(rng.normal(0, curl, steps))
    seg = length / steps
    xs = x + np.concatenate([[0], np.cumsum(seg * np.cos(angle + turns))])
    ys = y + np.concatenate([[0], np.cumsum(seg * np.sin(angle + turns))])
    widths = np.linspace(width, max(1.0, 0.3 * width), steps)
    return np.stack([xs, ys], axis=1), widths


def _cort(rng, cx, cy):
    """Small, round-ish cell body; now and then one short neurite."""
    rx = rng.uniform(7, 11)
    parts = [("poly", _blob(rng, cx, cy, rx, rx * rng.uniform(0.75, 1.0),
                            rng.uniform(0, np.pi), 0.15))]
    if rng.random() < 0.2:
        a = rng.uniform(0, 2 * np.pi)
        parts.append(("line",) + _process(rng, cx + 0.8 * rx * math.cos(a),
                                          cy + 0.8 * rx * math.sin(a), a,
                                          rng.uniform(8, 20), rng.uniform(1.5, 2.5), 0.2))
    return parts


def _shsy5y(rng, cx, cy, angle):
    """Spindle-shaped body with a thin neurite from one or both poles."""
    rx, ry = rng.uniform(12, 22), rng.uniform(4, 7)
    parts = [("poly", _blob(rng, cx, cy, rx, ry, angle, 0.1))]
    for pole in ((0, 1) if rng.random() < 0.6 else (rng.integers(2),)):
        a = angle + np.pi * pole + rng.normal(0, 0.2)
        parts.append(("line",) + _process(rng, cx + 0.9 * rx * math.cos(a),
                                          cy + 0.9 * rx * math.sin(a), a,
                                          rng.uniform(15, 45), rng.uniform(1.5, 3), 0.15))
    return parts


def _astro(rng, cx, cy):
    """Large irregular body with several long, tapering, sometimes branching processes."""
    r = rng.uniform(18, 30)
    parts = [("poly", _blob(rng, cx, cy, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi),
                            0.45, n=36))]
    for a in rng.uniform(0, 2 * np.pi) + np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 8))):
        pts, widths = _process(rng, cx + 0.7 * r * math.cos(a), cy + 0.7 * r * math.sin(a), a,
                               rng.uniform(35, 110), rng.uniform(4, 8), 0.25)
        parts.append(("line", pts, widths))
        if rng.random() < 0.4:  # a side branch from half way along
            mid = len(pts) // 2
            b = a + rng.choice((-1, 1)) * rng.uniform(0.4, 1.0)
            parts.append(("line",) + _process(rng, pts[mid, 0], pts[mid, 1], b,
                                              rng.uniform(20, 50), widths[min(mid, len(widths) - 1)],
                                              0.25))
    return parts


def _rasterize(parts, scale: float, shape: tuple[int, int]):
    """Soft coverage of one cell: ``(rows, cols, alpha float32 [h, w])`` or None if off-image.

    ``parts`` are in full-size (520 x 704) pixel units; they are scaled here,
    drawn ``_SUPERSAMPLE`` times larger with Pillow and box-filtered down.
    """
    pad = 2 + max((p[2].max() for p in parts if p[0] == "line"), default=0) * scale
    pts = np.concatenate([p[1] for p in parts]) * scale
    y0 = max(0, int(math.floor(pts[:, 1].min() - pad)))
    x0 = max(0, int(math.floor(pts[:, 0].min() - pad)))
    y1 = min(shape[0], int(math.ceil(pts[:, 1].max() + pad)) + 1)
    x1 = min(shape[1], int(math.ceil(pts[:, 0].max() + pad)) + 1)
    if y1 <= y0 or x1 <= x0:
        return None
    s = _SUPERSAMPLE
    canvas = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    draw = ImageDraw.Draw(canvas)
    origin = np.array([x0, y0], np.float64)

    def local(p):
        return [tuple(q) for q in ((np.asarray(p) * scale - origin) * s)]

    for part in parts:
        if part[0] == "poly":
            draw.polygon(local(part[1]), fill=255)
            continue
        points, widths = local(part[1]), np.asarray(part[2]) * scale * s
        for (a, b), w in zip(zip(points[:-1], points[1:]), widths):
            draw.line([a, b], fill=255, width=max(1, int(round(w))))
            rad = w / 2  # round joints, so a bending process has no notches
            draw.ellipse([b[0] - rad, b[1] - rad, b[0] + rad, b[1] + rad], fill=255)
    alpha = np.asarray(canvas.resize((x1 - x0, y1 - y0), Image.BOX), np.float32) / 255.0
    return slice(y0, y1), slice(x0, x1), alpha


def _one_piece(inside: np.ndarray) -> np.ndarray:
    """The largest 8-connected piece of a cell's thresholded coverage [h, w].

    A process thinner than a pixel at this scale thresholds into dashes; real
    annotations are one piece per cell, so the dashes are left out of the mask
    (the image still shows them faintly, as annotators also miss faint ends).
    """
    pieces, n = ndimage.label(inside, structure=_EIGHT_NEIGHBOURS)
    if n <= 1:
        return inside
    sizes = np.bincount(pieces.ravel())[1:]
    return pieces == 1 + int(np.argmax(sizes))


# ----------------------------------------------------------------------------
# A whole image
# ----------------------------------------------------------------------------

def _smooth_field(rng, shape, cells):
    """Zero-mean, unit-ish low-frequency noise [H, W] (bicubic upsampled random grid)."""
    grid = rng.normal(size=cells).astype(np.float32)
    field = np.asarray(Image.fromarray(grid, "F").resize((shape[1], shape[0]), Image.BICUBIC))
    return field / max(float(field.std()), 1e-6)


def _saturate(x: np.ndarray, k: float) -> np.ndarray:
    """A soft limit at +-k: about x for small x, never beyond k."""
    return x / np.sqrt(1 + (x / k) ** 2)


def _layout(rng, cell_type: str):
    """Centres (and orientations) of the cells of one image, in full-size units."""
    h, w = HEIGHT, WIDTH
    if cell_type == "cort":  # many, scattered uniformly
        n = int(rng.integers(50, 110))
        return [(rng.uniform(0, w), rng.uniform(0, h), None) for _ in range(n)]
    if cell_type == "shsy5y":  # clusters of roughly aligned, touching spindles
        out = []
        for _ in range(int(rng.integers(4, 9))):
            cx, cy = rng.uniform(0.05 * w, 0.95 * w), rng.uniform(0.05 * h, 0.95 * h)
            spread, heading = rng.uniform(20, 55), rng.uniform(0, np.pi)
            for _ in range(int(rng.integers(10, 30))):
                out.append((cx + rng.normal(0, spread * 1.4), cy + rng.normal(0, spread),
                            heading + rng.normal(0, 0.6)))
        return out
    # astro: few, spread out (a minimum distance between bodies)
    out = []
    wanted = int(rng.integers(8, 18))
    for _ in range(400):
        if len(out) >= wanted:
            break
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        if all((x - a) ** 2 + (y - b) ** 2 > 90 ** 2 for a, b, _ in out):
            out.append((x, y, None))
    return out


#: Largest share of a new cell that may lie on cells already placed: cells
#: touch and overlap (as annotated cells do), but none hides another.
_MAX_OVERLAP = {"cort": 0.15, "shsy5y": 0.3, "astro": 0.15}


def render_image(rng: np.random.Generator, cell_type: str, scale: float = 0.5):
    """Draws one phase-contrast-like image of one cell type and its instance masks.

    Args:
        rng: the image's random generator (e.g. ``np.random.default_rng([seed, k])``).
        cell_type: one of :data:`CELL_TYPES`.
        scale: image size as a fraction of 520 x 704 (cell sizes scale too;
            the number of cells does not: the same field of view, sampled coarser).

    Returns:
        ``(image, masks)``: uint8 ``[H, W]`` greyscale and a list of bool
        ``[H, W]`` instance masks in drawing order (they may overlap).
    """
    class_id(cell_type)
    shape = image_size(scale)
    h, w = shape
    halo = np.zeros(shape, np.float32)  # phase-contrast halo strength per pixel
    body = np.zeros(shape, np.float32)  # interior grey-level offset per pixel
    count = np.zeros(shape, np.uint8)  # how many annotated cells cover a pixel
    masks = []
    for x, y, angle in _layout(rng, cell_type):
        if cell_type == "cort":
            parts = _cort(rng, x, y)
        elif cell_type == "shsy5y":
            parts = _shsy5y(rng, x, y, angle)
        else:
            parts = _astro(rng, x, y)
        drawn = _rasterize(parts, scale, shape)
        # Both draws happen for every cell, so later cells do not depend on
        # which earlier ones were kept.
        halo_gain, body_gain = rng.uniform(60, 120), rng.uniform(-12, 20)
        if drawn is None:
            continue
        rows, cols, alpha = drawn
        inside = _one_piece(alpha > 0.5)
        area = int(inside.sum())
        if area < max(3, 12 * scale * scale):
            continue  # mostly outside the image: too little left to annotate
        if np.count_nonzero(inside & (count[rows, cols] > 0)) > _MAX_OVERLAP[cell_type] * area:
            continue
        count[rows, cols] += inside
        halo[rows, cols] += halo_gain * alpha
        body[rows, cols] += body_gain * alpha
        mask = np.zeros(shape, bool)
        mask[rows, cols] = inside
        masks.append(mask)
    # Debris: small specks with the same optics, labelled background.
    for _ in range(int(rng.integers(0, 25))):
        drawn = _rasterize([("poly", _blob(rng, rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT),
                                           rng.uniform(1.5, 4), rng.uniform(1.5, 4), 0, 0.2, 12))],
                           scale, shape)
        gain = rng.uniform(20, 80)
        if drawn is not None:
            halo[drawn[0], drawn[1]] += gain * drawn[2]
    # Phase contrast: a bright ring just outside each outline and a dark rim
    # just inside (a blurred copy minus the sharp one), over a textured
    # interior. Where several cells pile up, the optics saturate rather than
    # add up to black (x / sqrt(1 + (x/k)^2), not tanh: NumPy's tanh differs
    # in the last bit between SIMD instruction sets, sqrt does not).
    halo = _saturate(halo, 120)
    body = _saturate(body, 30)
    sigma = max(0.8, 3.0 * scale)
    grain = (max(2, round(h / (6 * scale))), max(2, round(w / (6 * scale))))  # ~6 px at full size
    texture = _smooth_field(rng, shape, grain)
    image = (ndimage.gaussian_filter(halo, sigma) - halo) + body * (1 + 0.5 * texture)
    # Uneven illumination: a smooth gradient and a vignette around a mean grey.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
    image += rng.uniform(118, 138) + rng.uniform(3, 10) * _smooth_field(rng, shape, (3, 4)) \
        - rng.uniform(0, 10) * r2 / 2
    image += rng.normal(0, rng.uniform(2, 5), shape)  # sensor noise
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), masks


def _metadata(rng, cell_type: str) -> dict:
    """Plausible plate_time, sample_date, sample_id and elapsed_timedelta for one image."""
    hours, minutes = int(rng.integers(8, 24)), int(rng.choice((0, 30)))
    day = np.datetime64("2019-06-01") + int(rng.integers(0, 540))
    plates = _PLATES[cell_type]
    well = f"{'ABCDEFGH'[rng.integers(8)]}{rng.integers(1, 13)}-{rng.integers(1, 5)}"
    return {"plate_time": f"{hours:02d}h{minutes:02d}m00s",
            "sample_date": str(day),
            "sample_id": f"{plates[rng.integers(len(plates))]}_{well}_Vessel-"
                         f"{rng.integers(100, 1000)}_Ph_{rng.integers(1, 5)}",
            # The same duration as plate_time, written the way pandas prints a Timedelta.
            "elapsed_timedelta": f"0 days {hours:02d}:{minutes:02d}:00"}


def image_id(seed: int, k: int) -> str:
    """The stand-in's id of image ``k``: 12 hex digits, like the real ids."""
    return hashlib.blake2b(f"segnet-cells-{seed}-{k}".encode(), digest_size=6).hexdigest()


def generate(out_dir, seed: int = 0, num_images: int = DEFAULT_NUM_IMAGES, scale: float = 0.5,
             progress: bool = False, images: bool = True) -> Path:
    """Writes a generated stand-in for the Sartorius training data.

    Layout written under ``out_dir``::

        train.csv          the columns of CSV_COLUMNS, one row per cell
        train/<id>.png     8-bit greyscale images

    Image ``k`` shows cell type ``CELL_TYPES[k % 3]`` (so every type appears
    as often) and is drawn from its own stream ``np.random.default_rng([seed,
    k])``, first by :func:`render_image`, then its metadata: it does not
    depend on ``num_images``, and its id is ``image_id(seed, k)``.
    ``annotation`` is each cell's full mask, RLE row-major: where cells
    overlap, both rows hold the shared pixels, as in the real annotations.
    ``width``/``height`` are the image's (scaled) size.

    Args:
        out_dir: destination folder (created; existing files are overwritten).
        seed: the dataset's seed.
        num_images: number of images (the real training set has 606).
        scale: image size as a fraction of 520 x 704; 1.0 is the real size.
        progress: show a progress bar.
        images: write the PNGs (False: only ``train.csv``, e.g. to time a
            CSV reader; the rows are the same).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images!r}")
    h, w = image_size(scale)
    root = Path(out_dir)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    records = []
    for k in tqdm(range(num_images), desc="cell images", disable=not progress):
        rng = np.random.default_rng([seed, k])
        cell_type = CELL_TYPES[k % len(CELL_TYPES)]
        image, masks = render_image(rng, cell_type, scale)
        meta = _metadata(rng, cell_type)
        name = image_id(seed, k)
        if images:
            Image.fromarray(image, "L").save(root / IMAGE_DIR / f"{name}.png", compress_level=1)
        for mask in masks:
            records.append((name, rle.encode(mask, RLE_ORDER), w, h, cell_type,
                            meta["plate_time"], meta["sample_date"], meta["sample_id"],
                            meta["elapsed_timedelta"]))
    pd.DataFrame.from_records(records, columns=list(CSV_COLUMNS)).to_csv(root / CSV_NAME,
                                                                         index=False)
    return root


def cells_root(seed: int = 0, scale: float = 0.5) -> Path:
    """The cached stand-in's root (``train.csv``, ``train/``), generated on first use.

    The copy lives in ``segnet_lib.files.cache_dir()/cells-v<version>-seed<seed>-
    scale<scale>-n<images>``, built and published whole by
    :func:`segnet_lib.files.cached_dir`, so an interrupted run leaves no half
    dataset.

    Args:
        seed: the dataset's seed.
        scale: image size as a fraction of 520 x 704.

    Returns:
        :class:`~pathlib.Path` of the root.
    """
    image_size(scale)
    final = cache_dir() / f"cells-v{CELLS_VERSION}-seed{seed}-scale{scale:g}-n{DEFAULT_NUM_IMAGES}"
    return cached_dir(final, lambda folder: generate(folder, seed=seed, scale=scale),
                      f"segnet_lib cells v{CELLS_VERSION}, seed {seed}, scale {scale:g}")


# ----------------------------------------------------------------------------
# Rows -> label map -> rows
# ----------------------------------------------------------------------------

def semantic_map(rles: Sequence, cell_types: Sequence[str], shape, overlap: str = "last", *,
                 row_labels: Sequence[str] | None = None) -> np.ndarray:
    """Paints an image's annotation rows into one label map by cell type.

    Args:
        rles: the ``annotation`` strings of one image (row-major RLE).
        cell_types: the ``cell_type`` of each row.
        shape: ``(height, width)`` of the image.
        overlap: where two rows cover one pixel: ``'last'`` (the later row
            wins), ``'first'`` or ``'error'`` (see
            :func:`segnet_lib.rle.decode_label_map`). Real annotations overlap,
            so ``'error'`` fails on the real file; with one cell type per image,
            ``'last'`` and ``'first'`` give the same map.
        row_labels: how to name each row in errors (e.g. ``'train.csv, line 7
            (id ...)'``); default ``'row i'``.

    Returns:
        uint8 ``[height, width]``: 0 background, ``class_id(cell_type)`` on cells.

    Raises:
        ValueError: an unknown cell type, a malformed RLE or a run past the end
            of the image (naming the row), or an overlap with ``overlap='error'``.
    """
    cell_types = list(cell_types)
    labels = list(row_labels) if row_labels is not None else \
        [f"row {i}" for i in range(len(cell_types))]
    if len(labels) != len(cell_types):
        raise ValueError(f"{len(cell_types)} cell types but {len(labels)} row labels")
    values = [class_id(t, labels[i]) for i, t in enumerate(cell_types)]
    return rle.decode_label_map(rles, values, shape, RLE_ORDER, overlap=overlap,
                                dtype=np.uint8, row_labels=labels)


def iter_semantic_maps(csv_path, overlap: str = "last", ids: Sequence[str] | None = None):
    """Lazily decodes a Sartorius-layout CSV into one label map per image.

    A thin layer over :func:`segnet_lib.rle_csv.iter_label_maps`:
    ``annotation`` is the RLE (row-major), ``cell_type`` the class (by
    :data:`CLASS_NAMES`), and each image's size comes from its
    ``width``/``height``, which must agree across its rows.

    Args:
        csv_path: a ``train.csv`` (the real one or :func:`generate`'s).
        overlap: overlap policy, as in :func:`semantic_map`.
        ids: only these images, in this order (default: all, in file order).

    Returns:
        An iterator of ``(image_id, label_map)``, label maps uint8 ``[H, W]``.

    Raises:
        FileNotFoundError, ValueError: a missing file or column, or an unknown
            cell type (naming the file, line and id), at once; while
            iterating, a malformed row (an RLE past the end of its width x
            height, runs out of order or overlapping, sizes that disagree
            within an image), naming the file, line and id.
    """
    return rle_csv.iter_label_maps(csv_path, RLE_ORDER, kind="semantic", overlap=overlap, ids=ids,
                                   class_column=CLASS_COLUMN, classes=CLASS_NAMES)


def instance_map(label_map, min_area: int = 1,
                 class_names: Sequence[str] = CLASS_NAMES) -> tuple[np.ndarray, list]:
    """Splits a semantic label map into instances: connected components per class.

    Pixels touching by an edge or a corner (8-connectivity) belong to one
    instance, so a thin diagonal process stays with its cell. The limit of
    this approach: cells of one type that touch merge into one instance, and
    an instance hidden under another cell is lost (a label map has one class
    per pixel). The instances never overlap, as the competition requires.

    Args:
        label_map: integer ``[H, W]`` class ids, 0 the background.
        min_area: components with fewer pixels are dropped (prediction specks).
        class_names: names by class id (default: background and the cell
            types); any model's classes work.

    Returns:
        ``(instances, classes)``: int32 ``[H, W]`` with instance ids 1..N (0
        for background and dropped specks), numbered by class id and then in
        scan order of each component's first pixel, and the class id of each
        instance (``classes[k - 1]`` for instance ``k``; its mask is
        ``instances == k``). One array, however many instances: a noisy
        prediction has tens of thousands, and a full mask each would not fit
        in memory.

    Raises:
        ValueError: a label map that is not 2-D integers or holds a value
            that is not a class id (naming it and where).
    """
    m = np.asarray(label_map)
    if m.ndim != 2 or m.dtype.kind not in "iub":
        raise ValueError(f"label map must be 2-D integers, got shape {m.shape} dtype {m.dtype}")
    names = tuple(class_names)
    bad = (m < 0) | (m >= len(names))
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise ValueError(f"label map value {m[y, x]} at (row {y}, col {x}) is not a class id "
                         f"0..{len(names) - 1} ({', '.join(names)})")
    out = np.zeros(m.shape, np.int32)
    classes = []
    for cid in range(1, len(names)):
        components, n = ndimage.label(m == cid, structure=_EIGHT_NEIGHBOURS)
        if not n:
            continue
        keep = np.bincount(components.ravel(), minlength=n + 1) >= min_area
        keep[0] = False
        renumber = np.zeros(n + 1, np.int32)
        renumber[keep] = len(classes) + 1 + np.arange(np.count_nonzero(keep), dtype=np.int32)
        inside = components > 0
        out[inside] = renumber[components[inside]]
        classes += [cid] * int(np.count_nonzero(keep))
    return out, classes


def submission_rows(image_id: str, label_map, min_area: int = 1,
                    class_names: Sequence[str] = CLASS_NAMES) -> list[dict]:
    """One submission row per instance of a predicted label map.

    Args:
        image_id: the image's id.
        label_map: integer ``[H, W]`` class ids (see :func:`instance_map`).
        min_area: smallest instance kept, in pixels.
        class_names: names by class id (see :func:`instance_map`).

    Returns:
        ``[{'id': image_id, 'predicted': rle}, ...]`` with row-major RLEs, in
        :func:`instance_map`'s order; an image without instances gets one row
        with an empty ``predicted``, as in the competition's sample
        submission, so every image appears.
    """
    found, _ = instance_map(label_map, min_area, class_names)
    # All instances in one vectorised pass; ids come back sorted, 1..N.
    encoded = rle.encode_label_map(found, RLE_ORDER, ignore=(0,))
    rows = [{"id": str(image_id), "predicted": text} for text in encoded.values()]
    return rows or [{"id": str(image_id), "predicted": ""}]


def write_submission(path, rows: Iterable[Mapping]) -> Path:
    """Writes submission rows (``id``, ``predicted``) to a CSV, atomically.

    Raises:
        ValueError: a row without ``id`` or ``predicted`` (naming the row).
    """
    records = []
    for i, row in enumerate(rows):
        missing = [c for c in SUBMISSION_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"submission row {i} has no {', '.join(missing)}: {dict(row)!r:.80}")
        records.append((str(row["id"]), row["predicted"] or ""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame.from_records(records, columns=list(SUBMISSION_COLUMNS))
    return atomic_write_text(path, frame.to_csv(index=False))


__all__ = ["CELL_TYPES", "CLASS_NAMES", "HEIGHT", "WIDTH", "CSV_COLUMNS", "SUBMISSION_COLUMNS",
           "RLE_ORDER", "CLASS_COLUMN", "LAYOUT_COLUMNS", "IMAGE_DIR", "CSV_NAME",
           "DEFAULT_NUM_IMAGES", "CELLS_VERSION", "image_size", "has_layout", "class_id",
           "image_id", "render_image", "generate", "cells_root", "semantic_map",
           "iter_semantic_maps", "instance_map", "submission_rows", "write_submission"]
