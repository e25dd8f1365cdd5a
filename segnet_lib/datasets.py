"""The one dataset opener: what ``--data`` means, for every command and notebook.

A *dataset* is a sequence of ``(image, mask)`` pairs, read from files on demand,
like ``torchvision.datasets.VOCSegmentation`` (but NumPy arrays, not PIL
images): ``ds[i] -> (image uint8 [H, W, 3], mask uint8 [H, W])``, with class ids
in the mask and 255 for void. The ``tf.data`` pipeline (:mod:`segnet_lib.data`)
reads any of them.

* :class:`VOCSegmentation`: one split of a VOC-layout folder (PASCAL VOC 2012,
  or the generated sample data, which uses the same layout).
* :class:`CSVSegmentation`: an image folder plus a Kaggle-style RLE CSV
  (:mod:`segnet_lib.rle_csv`), its class names taken from the data.
* :class:`ClassSubset` (:func:`keep_classes`): any of them with only some
  classes kept, renumbered 0..K-1 in the order given, the others void (what
  ``TrainConfig.classes`` asks for).
* :func:`open_split` turns a ``data`` value (``'sample'``, ``'cells'``, a VOC
  folder or a CSV) and a split name into one of them; :func:`open_datasets`
  does it for the training and validation splits of a
  :class:`~segnet_lib.config.TrainConfig`; :func:`book_dataset` is the book's
  data (VOC 2012 if ``$SEGNET_VOC_ROOT`` is set, else the sample data).

How a CSV is read (:func:`csv_options`): options given win; the rest comes
from its header. A header with ``id``, ``annotation`` and ``cell_type`` is the
Sartorius ``train.csv`` (:func:`segnet_lib.cells.has_layout`): row-major RLE,
``cell_type`` as the class column with the cell types of
:data:`segnet_lib.cells.CLASS_NAMES`, images in ``train/`` next to it. Any
other CSV needs its pixel order; its class column, if any, is found by name
(:data:`segnet_lib.rle_csv.CLASS_COLUMNS`), and its images are in
``JPEGImages/`` next to it or in its own folder. Its class names come from the
data (:func:`csv_class_names`), never from VOC's list.

A CSV has no split lists, so :func:`open_split` holds out ``val_fraction`` of
its images (chosen with ``seed``) as split ``'val'`` and keeps the rest as
``'train'``, or reads split ``'val'`` from a second CSV (``val_csv``, read with
the first one's classes). The same arguments give the same split in
``train``, ``evaluate`` and ``study``.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from segnet_lib import cells, rle, rle_csv, sample_data
from segnet_lib.voc import (IMAGE_DIR, MASK_DIR, SPLIT_DIR, VOC_CLASSES, VOC_ROOT_ENV,
                            check_mask_values, find_voc_root, read_image, read_mask,
                            read_split_ids)

__all__ = ["SegmentationDataset", "VOCSegmentation", "CSVSegmentation", "ClassSubset",
           "CSVOptions", "CSV_SPLITS", "IMAGE_EXTENSIONS", "NAMED_DATA", "DEFAULT_OVERLAP",
           "BINARY_CLASSES", "numbered_class_names", "csv_class_names", "csv_options",
           "check_classes", "keep_classes", "check_options", "check_data", "open_split",
           "open_datasets", "book_dataset", "data_version"]

#: The splits of a CSV dataset: the held-out images are ``'val'``, the rest ``'train'``.
CSV_SPLITS = ("train", "val")
#: ``data`` values that name generated data: the VOC-layout sample data and the
#: Sartorius-layout cell images (:func:`segnet_lib.cells.cells_root`).
NAMED_DATA = ("sample", "cells")
#: Where two rows of a CSV cover one pixel, the later row wins by default:
#: instance annotations overlap (the Sartorius training labels do; the
#: competition gives them "in full, with overlapping portions included") and
#: public solutions paint them in file order. ``'error'`` refuses such a file,
#: naming both rows; ``'first'`` keeps the earlier row.
DEFAULT_OVERLAP = "last"
#: Class names of a CSV without a class column: each row is foreground.
BINARY_CLASSES = (rle_csv.BACKGROUND, "foreground")
#: Image files a :class:`CSVSegmentation` folder may hold.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".tif", ".tiff")


# ---------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------

class SegmentationDataset(Sequence):
    """What every dataset shares: ``len(ds)``, ``ds[i]``, iteration, class names.

    Subclasses set :attr:`ids` and :attr:`class_names` and implement
    :meth:`image_path` and :meth:`read_mask`.

    Attributes:
        ids: image ids, in dataset order.
        class_names: class names, index = class id.
    """

    class_names: tuple = VOC_CLASSES
    ids: list

    @property
    def num_classes(self) -> int:
        """Number of classes (void excluded)."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.ids)

    def _index(self, i) -> int:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset index must be an integer, got {type(i).__name__}")
        n = len(self.ids)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        return int(i) % n

    def __getitem__(self, i):
        i = self._index(i)
        image = self.read_image(i)
        mask = self.read_mask(i)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"image {self.ids[i]!r} is {image.shape[0]}x{image.shape[1]} but its mask is "
                f"{mask.shape[0]}x{mask.shape[1]} ({self._describe(i)})")
        return image, mask

    def image_path(self, i) -> Path:
        """Path of image ``i``."""
        raise NotImplementedError

    def read_image(self, i) -> np.ndarray:
        """uint8 ``[H, W, 3]`` image number ``i``."""
        return read_image(self.image_path(i))

    def read_mask(self, i) -> np.ndarray:
        """uint8 ``[H, W]`` class mask of image ``i``."""
        raise NotImplementedError

    def _describe(self, i) -> str:
        return f"{self.image_path(i)}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes)"


class VOCSegmentation(SegmentationDataset):
    """One split of a VOC-layout folder as a sequence of ``(image, mask)`` pairs.

    ``ds[i]`` reads the files on demand: ``image`` uint8 ``[H, W, 3]``, ``mask``
    uint8 ``[H, W]`` with class ids 0..20 and 255 for void. The same class
    reads the embedded sample data (:func:`segnet_lib.sample_data.sample_root`),
    which uses the same layout and class ids.

    Args:
        root: the VOC root or a folder above it (see
            :func:`segnet_lib.voc.find_voc_root`).
        split: a list in ``ImageSets/Segmentation`` (``'train'``, ``'val'``, ...).
        check_files: check at once that every listed id has its image and mask
            (a few ms for VOC's 1464 train ids), so a broken copy fails here
            and not an hour into training.

    Attributes:
        root: the resolved VOC root.
        split: the split name.
        ids: image ids, in split-file order.
        class_names: the 21 VOC class names.
        num_classes: 21.

    Raises:
        FileNotFoundError: no VOC layout, no such split, or an id without its
            image or mask (named).
    """

    def __init__(self, root, split: str = "train", check_files: bool = True):
        self.root = find_voc_root(root)
        self.split = split
        self.ids = read_split_ids(self.root, split)
        self.class_names = VOC_CLASSES
        if check_files:
            images = {p.stem for p in (self.root / IMAGE_DIR).glob("*.jpg")}
            masks = {p.stem for p in (self.root / MASK_DIR).glob("*.png")}
            for image_id in self.ids:
                for have, path in ((images, self.image_path), (masks, self.mask_path)):
                    if image_id not in have:
                        i = self.ids.index(image_id)
                        raise FileNotFoundError(
                            f"id {image_id!r} is listed in {SPLIT_DIR}/{split}.txt but "
                            f"{str(path(i))!r} does not exist")

    def image_path(self, i) -> Path:
        """Path of image ``i`` (``JPEGImages/<id>.jpg``)."""
        return self.root / IMAGE_DIR / f"{self.ids[self._index(i)]}.jpg"

    def mask_path(self, i) -> Path:
        """Path of mask ``i`` (``SegmentationClass/<id>.png``)."""
        return self.root / MASK_DIR / f"{self.ids[self._index(i)]}.png"

    def read_mask(self, i) -> np.ndarray:
        """uint8 ``[H, W]`` class mask of image ``i``, values checked."""
        return read_mask(self.mask_path(i), num_classes=self.num_classes)

    def _describe(self, i) -> str:
        return f"{self.image_path(i)} and {self.mask_path(i)}"

    def __repr__(self) -> str:
        return f"VOCSegmentation({str(self.root)!r}, split={self.split!r}, {len(self)} images)"


def numbered_class_names(num_classes: int) -> tuple:
    """``('background', 'class 1', ..., 'class N-1')``: names for class ids that come without any."""
    return (rle_csv.BACKGROUND,) + tuple(f"class {i}" for i in range(1, int(num_classes)))


def csv_class_names(frame, class_names: Optional[Sequence[str]] = None) -> tuple:
    """The class names of a CSV read by :func:`segnet_lib.rle_csv.read_csv`, from its data.

    * a class column holding names: background, then the names in the order
      ``class_names`` gives (e.g. :data:`segnet_lib.cells.CLASS_NAMES`) or,
      without it, sorted (``frame.attrs['class_names']``);
    * a class column holding ids: ``class_names`` if given, else
      :func:`numbered_class_names` up to the largest id;
    * no class column: ``class_names`` if given, else :data:`BINARY_CLASSES`.

    Raises:
        ValueError: ``class_names`` with fewer than two names for a CSV without classes.
    """
    if "class" in frame:
        if frame.attrs.get("class_names") is not None:
            return tuple(frame.attrs["class_names"])
        return numbered_class_names(max(int(frame["class"].max()), 1) + 1)
    if class_names is None:
        return BINARY_CLASSES
    if len(class_names) < 2:
        raise ValueError(f"a CSV without a class column has background and foreground: need two "
                         f"class names, got {tuple(class_names)}")
    return tuple(class_names)


class CSVSegmentation(SegmentationDataset):
    """An image folder plus a Kaggle-style RLE CSV, with the VOC dataset's interface.

    Each CSV row is one mask of one image (``id``, the RLE string and, if
    present, a class, ``width``, ``height``; see
    :func:`segnet_lib.rle_csv.read_csv` for the accepted column names). The file
    is read and grouped once (:class:`segnet_lib.rle_csv.RLETable`); the rows of
    an image are combined into its label map when ``ds[i]`` is read. The class
    names come from the data (:func:`csv_class_names`): the names in a class
    column, its ids, or, without a class column, one foreground class.
    Greyscale and palette images are read as RGB, the pipeline's 3 channels.

    Args:
        image_dir: folder of images named ``<id>.<ext>`` (or exactly ``<id>``
            when the ids carry their extension).
        csv_path: the CSV file.
        order: ``'C'`` (row-major) or ``'F'`` (column-major); see
            :mod:`segnet_lib.rle` for which competition uses which.
        ids: restrict to (and order by) these ids, e.g. a VOC split list;
            default: every id in the CSV, in order of first appearance.
        class_names: names by class id: the documented order of a class
            column's names (names not in it are an error), or names for its
            ids (ids beyond it are an error); default: from the data.
        class_column: the class column's name (default: found by name, see
            :func:`segnet_lib.rle_csv.read_csv`).
        overlap: where two rows cover one pixel: ``'last'`` (default, see
            :data:`DEFAULT_OVERLAP`), ``'first'`` or ``'error'``.
        **read_csv_kwargs: passed to :func:`segnet_lib.rle_csv.read_csv`.

    Attributes:
        image_dir, csv_path, order, overlap: as given.
        class_names: names by class id, from the data.
        table: the grouped CSV (:class:`~segnet_lib.rle_csv.RLETable`).

    Raises:
        FileNotFoundError: the folder, the CSV or an image is missing (named,
            with the CSV line of the image's first row).
        ValueError: a requested id has no row in the CSV, a class that is not
            one of ``class_names`` (naming the line and id), or (when reading
            ``ds[i]``) a row that does not decode or whose width/height
            disagree with the image (naming the line and id).
    """

    def __init__(self, image_dir, csv_path, order: str, ids=None,
                 class_names: Optional[Sequence[str]] = None, *, class_column: Optional[str] = None,
                 overlap: str = DEFAULT_OVERLAP, **read_csv_kwargs):
        self.image_dir = Path(image_dir)
        self.csv_path = Path(csv_path)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder {str(self.image_dir)!r} not found")
        if not self.csv_path.is_file():
            raise FileNotFoundError(f"RLE CSV {str(self.csv_path)!r} not found")
        self.order = rle.check_order(order)
        self.overlap = rle.check_overlap(overlap)
        frame = rle_csv.read_csv(self.csv_path, class_column=class_column,
                                 classes=class_names if class_names is None else tuple(class_names),
                                 **read_csv_kwargs)
        self.class_names = csv_class_names(frame, class_names)
        self.table = rle_csv.RLETable(frame, order,
                                      kind="semantic" if "class" in frame else "binary")
        self.ids = list(self.table.ids) if ids is None else self.table.check_ids(ids)
        files = {}  # '<id>' and '<id>.<ext>' -> path, for image files only
        for p in sorted(self.image_dir.iterdir()):
            if p.suffix in IMAGE_EXTENSIONS:
                files.setdefault(p.stem, p)
                files[p.name] = p
        self._paths = {}
        for image_id in self.ids:
            path = files.get(image_id)
            if path is None:
                raise FileNotFoundError(
                    f"{self.table.where(image_id)}: no image in {str(self.image_dir)!r} "
                    f"(looked for {image_id}.png/.jpg/...)")
            self._paths[image_id] = path

    def subset(self, ids) -> "CSVSegmentation":
        """The same dataset restricted to (and ordered by) ``ids``, without reading the CSV again."""
        ids = self.table.check_ids(ids)
        other = object.__new__(CSVSegmentation)
        other.__dict__.update(self.__dict__)
        other.ids = ids
        other._paths = {i: self._paths[i] for i in ids}
        return other

    def image_path(self, i) -> Path:
        """Path of image ``i``."""
        return self._paths[self.ids[self._index(i)]]

    def read_mask(self, i, shape=None) -> np.ndarray:
        """uint8 ``[H, W]`` label map of image ``i``, decoded from its CSV rows.

        Args:
            i: index.
            shape: ``(H, W)``; default: the image's size (read from its header).
        """
        i = self._index(i)
        path = self.image_path(i)
        if shape is None:
            with Image.open(path) as img:  # header only
                shape = (img.height, img.width)
        mask = self.table.label_map(self.ids[i], shape, overlap=self.overlap,
                                    shape_name=f"its image {str(path)!r}")
        check_mask_values(mask, self.num_classes,
                          where=f"{str(self.csv_path)!r} (id {self.ids[i]!r})")
        return np.ascontiguousarray(mask, dtype=np.uint8)

    def __getitem__(self, i):
        i = self._index(i)
        image = self.read_image(i)
        return image, self.read_mask(i, shape=image.shape[:2])

    def __repr__(self) -> str:
        return f"CSVSegmentation({str(self.csv_path)!r}, {len(self)} images, {self.num_classes} classes)"


class ClassSubset(SegmentationDataset):
    """A dataset with only some of its classes kept, renumbered; the rest void.

    Class ``classes[k]`` of ``base`` becomes class ``k``; every other class
    becomes void (255, ignored by the loss and the metrics), like the
    boundaries already are. The decoder study trains on the sample data's six
    classes this way: a model with 6 outputs, not 21 of which 15 never occur.

    Args:
        base: any dataset (``read_mask`` is used when it has one).
        classes: class ids of ``base`` to keep, in their new order (see
            :func:`check_classes`), each below ``base.num_classes``.

    Attributes:
        base, classes: as given; ``class_names`` the kept classes' names.
    """

    def __init__(self, base: SegmentationDataset, classes: Sequence[int]):
        classes = check_classes(classes)
        too_big = [c for c in classes if c >= base.num_classes]
        if too_big:
            raise ValueError(f"classes {too_big} not in {base!r} (ids 0..{base.num_classes - 1})")
        self.base, self.classes = base, classes
        self.ids = base.ids
        self.class_names = tuple(base.class_names[c] for c in classes)
        self._table = np.full(256, 255, np.uint8)  # old id -> new id; 255 stays void
        self._table[list(classes)] = np.arange(len(classes), dtype=np.uint8)

    def image_path(self, i) -> Path:
        return self.base.image_path(i)

    def read_image(self, i) -> np.ndarray:
        return self.base.read_image(i)

    def read_mask(self, i) -> np.ndarray:
        return self._table[self.base.read_mask(i)]

    def __getitem__(self, i):
        image, mask = self.base[i]
        return image, self._table[mask]

    def _describe(self, i) -> str:
        return self.base._describe(i)

    def __repr__(self) -> str:
        return f"ClassSubset({self.base!r}, classes={list(self.classes)})"


def check_classes(classes) -> tuple:
    """Checks a list of class ids to keep: distinct integers in 0..254, at least one.

    Returns:
        The ids as a tuple of ints.

    Raises:
        ValueError: naming the bad value.
    """
    try:
        values = tuple(classes)
    except TypeError:
        raise ValueError(f"classes must be a list of class ids, got {classes!r}") from None
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer))
           or not 0 <= v < 255]
    if bad or not values:
        raise ValueError(f"classes must be class ids in 0..254, at least one, got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"classes must not repeat an id, got {list(values)}")
    return tuple(int(v) for v in values)


def keep_classes(dataset: SegmentationDataset, classes=None) -> SegmentationDataset:
    """``dataset`` with only ``classes`` kept (a :class:`ClassSubset`); None: unchanged."""
    return dataset if classes is None else ClassSubset(dataset, classes)


# ---------------------------------------------------------------------------
# Opening a `data` value
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CSVOptions:
    """How a CSV is read: what was given, and the rest found from its header.

    Attributes:
        csv_path: the CSV.
        image_dir: its images.
        order: its RLE pixel order, or None if neither given nor detected.
        class_column: its class column (None: found by name, if any).
        class_names: names by class id, when known before reading the data
            (given, or the Sartorius cell types); None: from the data.
        layout: ``'sartorius'`` when the header is the Sartorius ``train.csv``'s,
            else None.
    """

    csv_path: Path
    image_dir: Path
    order: Optional[str]
    class_column: Optional[str]
    class_names: Optional[tuple]
    layout: Optional[str]


def csv_options(csv_path, *, rle_order=None, image_dir=None, class_column=None,
                class_names=None) -> CSVOptions:
    """How to read a CSV: the options given, the rest detected from its header.

    Reads only the header. A Sartorius header (:func:`segnet_lib.cells.has_layout`)
    means order ``'C'``, class column ``cell_type`` with the classes
    :data:`segnet_lib.cells.CLASS_NAMES`, and images in ``train/`` next to the
    CSV (or in its folder). For any other CSV: no order (it must be given),
    the class column found by name when reading, and images in ``JPEGImages/``
    next to it if that exists, else in its folder.

    Raises:
        FileNotFoundError: no such CSV.
        ValueError: the file has no CSV header.
    """
    path = Path(csv_path).expanduser()
    sartorius = cells.has_layout(rle_csv.read_header(path))
    if image_dir:
        images = Path(image_dir).expanduser()
    else:
        nearby = path.parent / (cells.IMAGE_DIR if sartorius else IMAGE_DIR)
        images = nearby if nearby.is_dir() else path.parent
    if sartorius:
        rle_order = rle_order or cells.RLE_ORDER
        if class_column in (None, cells.CLASS_COLUMN) and class_names is None:
            class_names = cells.CLASS_NAMES
        class_column = class_column or cells.CLASS_COLUMN
    return CSVOptions(path, images, rle_order, class_column,
                      None if class_names is None else tuple(class_names),
                      "sartorius" if sartorius else None)


def check_options(rle_order=None, val_fraction: float = 0.1, overlap: str = DEFAULT_OVERLAP,
                  classes=None) -> None:
    """Checks the options of :func:`open_split` that need no file.

    :class:`~segnet_lib.config.TrainConfig` calls it too, so a config with a
    bad value fails when it is made, not when its data is opened.

    Raises:
        ValueError: ``rle_order`` is not None, ``'C'`` or ``'F'``,
            ``val_fraction`` is not in (0, 1), ``overlap`` is not a policy
            of :data:`segnet_lib.rle.OVERLAP_POLICIES`, or ``classes`` is
            neither None nor a valid list (:func:`check_classes`).
    """
    if classes is not None:
        check_classes(classes)
    for name, value, check in (("rle_order", rle_order, rle.check_order),
                               ("overlap", overlap, rle.check_overlap)):
        if value is not None:
            try:
                check(value)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")


def check_data(data, *, rle_order=None, image_dir=None, val_csv=None) -> str:
    """Says what ``data`` names, checking its files without reading the data.

    Args:
        data: ``'sample'``, ``'cells'``, a VOC-layout folder (or one above
            it) or an RLE CSV.
        rle_order, image_dir, val_csv: as for :func:`open_split`.

    Returns:
        ``'sample'``, ``'cells'``, ``'voc'`` or ``'csv'``.

    Raises:
        FileNotFoundError: the folder or file is missing, a folder holds no VOC
            layout, or ``image_dir`` / ``val_csv`` is missing (each named).
        ValueError: a CSV whose pixel order is neither given nor detected
            from its header.
    """
    if not isinstance(data, (str, os.PathLike)) or not str(data):
        raise ValueError(f"data must be 'sample', 'cells', a folder or a CSV, got {data!r}")
    if data in NAMED_DATA:
        return data
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data {str(path)!r} not found (expected 'sample', 'cells', a VOC folder or a CSV)")
    if path.is_dir():
        find_voc_root(path)
        return "voc"
    for name, value in (("image_dir", image_dir), ("val_csv", val_csv)):
        if value is not None and not Path(value).expanduser().exists():
            raise FileNotFoundError(f"{name} {str(value)!r} not found")
    if csv_options(path, rle_order=rle_order).order is None:
        raise ValueError(f"data {str(path)!r} is a CSV: give the pixel order of its RLE strings, "
                         "'C' or 'F' (rle_order, --rle-order); only the Sartorius header (id, "
                         "annotation, cell_type) says it (row-major)")
    return "csv"


def open_split(data, split: str, *, rle_order=None, image_dir=None, val_csv=None,
               val_fraction: float = 0.1, seed: int = 0, class_column=None,
               overlap: str = DEFAULT_OVERLAP, class_names=None,
               classes=None) -> SegmentationDataset:
    """The dataset that ``data`` and ``split`` name.

    Args:
        data: ``'sample'`` (the generated sample data), ``'cells'`` (the
            generated Sartorius-layout cell images, :func:`segnet_lib.cells.cells_root`),
            a VOC-layout folder (or one above it) or a Kaggle-style RLE CSV.
        split: a VOC split list (``'train'``, ``'val'``, ...); for a CSV one
            of :data:`CSV_SPLITS`.
        rle_order: a CSV's pixel order, ``'C'`` or ``'F'`` (needed unless its
            header says it; see :func:`csv_options`).
        image_dir: a CSV's images (default: see :func:`csv_options`).
        val_csv: a second CSV holding split ``'val'``, read with the classes
            of the first; without it ``'val'`` is ``val_fraction`` of the CSV's
            images, drawn with ``seed``, and ``'train'`` the rest.
        val_fraction: share of a CSV's images held out (at least one).
        seed: seed of that draw.
        class_column: a CSV's class column (default: see :func:`csv_options`).
        overlap: a CSV's overlap policy (default :data:`DEFAULT_OVERLAP`).
        class_names: a CSV's class names by id (default: from the data; see
            :class:`CSVSegmentation`).
        classes: class ids to keep, renumbered 0..K-1 in this order, the
            others void (:class:`ClassSubset`); None: every class.

    Returns:
        A :class:`VOCSegmentation` or :class:`CSVSegmentation` (in a
        :class:`ClassSubset` when ``classes`` is given).

    Raises:
        FileNotFoundError: the folder, CSV, an image or a split is missing (named).
        ValueError: a CSV without a pixel order, an unknown CSV split, a CSV
            with fewer than two images to split, or a bad row (named).
    """
    check_options(rle_order, val_fraction, overlap, classes)
    return keep_classes(_open(data, split, rle_order, image_dir, val_csv, val_fraction, seed,
                              class_column, overlap, class_names), classes)


def _open(data, split, rle_order, image_dir, val_csv, val_fraction, seed, class_column, overlap,
          class_names) -> SegmentationDataset:
    kind = check_data(data, rle_order=rle_order, image_dir=image_dir, val_csv=val_csv)
    if kind == "sample":
        return VOCSegmentation(sample_data.sample_root(), split)
    if kind == "voc":
        return VOCSegmentation(Path(data).expanduser(), split)
    if split not in CSV_SPLITS:
        raise ValueError(f"a CSV dataset has the splits {CSV_SPLITS} ('val' is the held-out "
                         f"part), got {split!r}")
    path = cells.cells_root() / cells.CSV_NAME if kind == "cells" else Path(data).expanduser()
    found = csv_options(path, rle_order=rle_order, image_dir=image_dir, class_column=class_column,
                        class_names=class_names)

    def read(csv, names):
        return CSVSegmentation(found.image_dir, csv, found.order, class_names=names,
                               class_column=found.class_column, overlap=overlap)

    full = read(path, found.class_names)
    if val_csv:
        return read(Path(val_csv).expanduser(), full.class_names) if split == "val" else full
    ids = full.ids
    if len(ids) < 2:
        raise ValueError(f"{path} has {len(ids)} image(s); need 2 or more to hold out validation images")
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = max(1, int(round(len(ids) * val_fraction)))
    val_ids = sorted(ids[i] for i in order[:n_val])
    if split == "val":
        return full.subset(val_ids)
    held = set(val_ids)
    return full.subset([i for i in ids if i not in held])


def open_datasets(config):
    """The training and validation datasets of a run.

    Args:
        config: a :class:`~segnet_lib.config.TrainConfig` (its ``data``,
            ``train_split``, ``val_split``, ``rle_order``, ``image_dir``,
            ``val_csv``, ``val_fraction``, ``seed``, ``class_column``,
            ``overlap`` and ``classes``).

    Returns:
        ``(train_set, val_set)``, each from :func:`open_split`.
    """
    options = dict(rle_order=config.rle_order, image_dir=config.image_dir,
                   val_csv=config.val_csv, val_fraction=config.val_fraction, seed=config.seed,
                   class_column=config.class_column, overlap=config.overlap,
                   classes=config.classes)
    return (open_split(config.data, config.train_split, **options),
            open_split(config.data, config.val_split, **options))


def book_dataset(split: str = "train") -> SegmentationDataset:
    """The book's data: VOC 2012 if ``$SEGNET_VOC_ROOT`` is set, else the sample data.

    Args:
        split: ``'train'`` or ``'val'`` (VOC also has ``'trainval'``).

    Returns:
        A :class:`VOCSegmentation`.
    """
    return open_split(os.environ.get(VOC_ROOT_ENV) or "sample", split)


def data_version(data) -> str | None:
    """The version of generated data a ``data`` value names, e.g. ``'sample-v4'``, ``'cells-v1'``.

    A model trained on generated data is stale once the generator changes;
    this names what it was trained on. Files on disk (VOC, a CSV) have no
    version: None.
    """
    if data == "sample":
        return f"sample-v{sample_data.SAMPLE_VERSION}"
    if data == "cells":
        return f"cells-v{cells.CELLS_VERSION}"
    return None
