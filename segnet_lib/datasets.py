"""The one dataset opener: what ``--data`` means, for every command and notebook.

A *dataset* is a sequence of ``(image, mask)`` pairs, read from files on demand,
like ``torchvision.datasets.VOCSegmentation`` (but NumPy arrays, not PIL
images): ``ds[i] -> (image uint8 [H, W, 3], mask uint8 [H, W])``, with class ids
in the mask and 255 for void. The ``tf.data`` pipeline (:mod:`segnet_lib.data`)
reads any of them.

* :class:`VOCSegmentation`: one split of a VOC-layout folder (PASCAL VOC 2012,
  or the generated sample data, which uses the same layout).
* :class:`CSVSegmentation`: an image folder plus a Kaggle-style RLE CSV
  (:mod:`segnet_lib.rle_csv`).
* :class:`ClassSubset` (:func:`keep_classes`): any of them with only some
  classes kept, renumbered 0..K-1 in the order given, the others void (what
  ``TrainConfig.classes`` asks for).
* :func:`open_split` turns a ``data`` value (``'sample'``, a VOC folder or a
  CSV) and a split name into one of them; :func:`open_datasets` does it for
  the training and validation splits of a
  :class:`~segnet_lib.config.TrainConfig`; :func:`book_dataset` is the book's
  data (VOC 2012 if ``$SEGNET_VOC_ROOT`` is set, else the sample data).

A CSV has no split lists, so :func:`open_split` holds out ``val_fraction`` of
its images (chosen with ``seed``) as split ``'val'`` and keeps the rest as
``'train'``, or reads split ``'val'`` from a second CSV (``val_csv``). The same
arguments give the same split in ``train``, ``evaluate`` and ``study``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from segnet_lib import rle, rle_csv, sample_data
from segnet_lib.voc import (IMAGE_DIR, MASK_DIR, SPLIT_DIR, VOC_CLASSES, VOC_ROOT_ENV,
                            check_mask_values, find_voc_root, read_image, read_mask,
                            read_split_ids)

__all__ = ["SegmentationDataset", "VOCSegmentation", "CSVSegmentation", "ClassSubset",
           "CSV_SPLITS", "IMAGE_EXTENSIONS", "check_classes", "keep_classes", "check_options", "check_data", "open_split", "open_datasets",
           "book_dataset", "data_version"]

#: The splits of a CSV dataset: the held-out images are ``'val'``, the rest ``'train'``.
CSV_SPLITS = ("train", "val")
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


class CSVSegmentation(SegmentationDataset):
    """An image folder plus a Kaggle-style RLE CSV, with the VOC dataset's interface.

    Each CSV row is one mask of one image (``id``, the RLE string and, if
    present, ``class``, ``width``, ``height``; see
    :func:`segnet_lib.rle_csv.read_csv` for the accepted column names). The file
    is read and grouped once (:class:`segnet_lib.rle_csv.RLETable`); the rows of
    an image are combined into its label map when ``ds[i]`` is read. Without a
    class column every mask gets class 1 (foreground vs background).

    Args:
        image_dir: folder of images named ``<id>.<ext>`` (or exactly ``<id>``
            when the ids carry their extension).
        csv_path: the CSV file.
        order: ``'C'`` (row-major) or ``'F'`` (column-major); see
            :mod:`segnet_lib.rle` for which competition uses which.
        ids: restrict to (and order by) these ids, e.g. a VOC split list;
            default: every id in the CSV, in order of first appearance.
        class_names: names of the classes, index = class id (default: VOC's).
        **read_csv_kwargs: passed to :func:`segnet_lib.rle_csv.read_csv`.

    Attributes:
        image_dir, csv_path, order: as given.
        table: the grouped CSV (:class:`~segnet_lib.rle_csv.RLETable`).

    Raises:
        FileNotFoundError: the folder, the CSV or an image is missing (named).
        ValueError: a requested id has no row in the CSV, or (when reading
            ``ds[i]``) the CSV's width/height disagree with the image, or a
            class id is out of range.
    """

    def __init__(self, image_dir, csv_path, order: str, ids=None,
                 class_names: Sequence[str] = VOC_CLASSES, **read_csv_kwargs):
        self.image_dir = Path(image_dir)
        self.csv_path = Path(csv_path)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder {str(self.image_dir)!r} not found")
        if not self.csv_path.is_file():
            raise FileNotFoundError(f"RLE CSV {str(self.csv_path)!r} not found")
        self.order = rle.check_order(order)
        self.class_names = tuple(class_names)
        frame = rle_csv.read_csv(self.csv_path, **read_csv_kwargs)
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
                    f"id {image_id!r} from {str(self.csv_path)!r} has no image in "
                    f"{str(self.image_dir)!r} (looked for {image_id}.jpg/.png/...)")
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
        mask = self.table.label_map(self.ids[i], shape, shape_name=f"its image {str(path)!r}")
        check_mask_values(mask, self.num_classes,
                          where=f"{str(self.csv_path)!r} (id {self.ids[i]!r})")
        return np.ascontiguousarray(mask, dtype=np.uint8)

    def __getitem__(self, i):
        i = self._index(i)
        image = self.read_image(i)
        return image, self.read_mask(i, shape=image.shape[:2])

    def __repr__(self) -> str:
        return f"CSVSegmentation({str(self.csv_path)!r}, {len(self)} images)"


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

def check_options(rle_order=None, val_fraction: float = 0.1, classes=None) -> None:
    """Checks the options of :func:`open_split` that need no file.

    :class:`~segnet_lib.config.TrainConfig` calls it too, so a config with a
    bad value fails when it is made, not when its data is opened.

    Raises:
        ValueError: ``rle_order`` is not None, ``'C'`` or ``'F'``, or
            ``val_fraction`` is not in (0, 1), or ``classes`` is neither None
            nor a valid list (:func:`check_classes`).
    """
    if classes is not None:
        check_classes(classes)
    if rle_order is not None:
        try:
            rle.check_order(rle_order)
        except ValueError as err:
            raise ValueError(f"rle_order: {err}") from None
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")


def check_data(data, *, rle_order=None, image_dir=None, val_csv=None) -> str:
    """Says what ``data`` names, checking its files without reading the data.

    Args:
        data: ``'sample'``, a VOC-layout folder (or one above it) or an RLE CSV.
        rle_order, image_dir, val_csv: as for :func:`open_split`.

    Returns:
        ``'sample'``, ``'voc'`` or ``'csv'``.

    Raises:
        FileNotFoundError: the folder or file is missing, a folder holds no VOC
            layout, or ``image_dir`` / ``val_csv`` is missing (each named).
        ValueError: a CSV without ``rle_order``.
    """
    if not isinstance(data, (str, os.PathLike)) or not str(data):
        raise ValueError(f"data must be 'sample', a folder or a CSV, got {data!r}")
    if data == "sample":
        return "sample"
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"data {str(path)!r} not found (expected 'sample', a VOC folder or a CSV)")
    if path.is_dir():
        find_voc_root(path)
        return "voc"
    if rle_order is None:
        raise ValueError(f"data {str(path)!r} is a CSV: give the pixel order of its RLE strings, "
                         "'C' or 'F' (rle_order, --rle-order)")
    for name, value in (("image_dir", image_dir), ("val_csv", val_csv)):
        if value is not None and not Path(value).expanduser().exists():
            raise FileNotFoundError(f"{name} {str(value)!r} not found")
    return "csv"


def open_split(data, split: str, *, rle_order=None, image_dir=None, val_csv=None,
               val_fraction: float = 0.1, seed: int = 0, classes=None) -> SegmentationDataset:
    """The dataset that ``data`` and ``split`` name.

    Args:
        data: ``'sample'`` (the generated sample data), a VOC-layout folder
            (or one above it) or a Kaggle-style RLE CSV.
        split: a VOC split list (``'train'``, ``'val'``, ...); for a CSV one
            of :data:`CSV_SPLITS`.
        rle_order: a CSV's pixel order, ``'C'`` or ``'F'`` (required for a CSV).
        image_dir: a CSV's images (default: ``JPEGImages`` next to the CSV if
            it exists, else the CSV's folder).
        val_csv: a second CSV holding split ``'val'``; without it ``'val'`` is
            ``val_fraction`` of the CSV's images, drawn with ``seed``, and
            ``'train'`` the rest.
        val_fraction: share of a CSV's images held out (at least one).
        seed: seed of that draw.
        classes: class ids to keep, renumbered 0..K-1 in this order, the
            others void (:class:`ClassSubset`); None: every class.

    Returns:
        A :class:`VOCSegmentation` or :class:`CSVSegmentation` (in a
        :class:`ClassSubset` when ``classes`` is given).

    Raises:
        FileNotFoundError: the folder, CSV, an image or a split is missing (named).
        ValueError: a CSV without ``rle_order``, an unknown CSV split, or a
            CSV with fewer than two images to split.
    """
    check_options(rle_order, val_fraction, classes)
    return keep_classes(_open(data, split, rle_order, image_dir, val_csv, val_fraction, seed),
                        classes)


def _open(data, split, rle_order, image_dir, val_csv, val_fraction, seed) -> SegmentationDataset:
    kind = check_data(data, rle_order=rle_order, image_dir=image_dir, val_csv=val_csv)
    if kind == "sample":
        return VOCSegmentation(sample_data.sample_root(), split)
    path = Path(data).expanduser()
    if kind == "voc":
        return VOCSegmentation(path, split)
    if split not in CSV_SPLITS:
        raise ValueError(f"a CSV dataset has the splits {CSV_SPLITS} ('val' is the held-out "
                         f"part), got {split!r}")
    if image_dir:
        images = Path(image_dir).expanduser()
    else:
        images = path.parent / IMAGE_DIR if (path.parent / IMAGE_DIR).is_dir() else path.parent
    if val_csv:
        return CSVSegmentation(images, Path(val_csv).expanduser() if split == "val" else path,
                               rle_order)
    full = CSVSegmentation(images, path, rle_order)
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
            ``val_csv``, ``val_fraction``, ``seed`` and ``classes``).

    Returns:
        ``(train_set, val_set)``, each from :func:`open_split`.
    """
    options = dict(rle_order=config.rle_order, image_dir=config.image_dir,
                   val_csv=config.val_csv, val_fraction=config.val_fraction, seed=config.seed,
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
    """The version of generated data a ``data`` value names, e.g. ``'sample-v4'``.

    A model trained on generated data is stale once the generator changes;
    this names what it was trained on. Files on disk (VOC, a CSV) have no
    version: None.
    """
    if data == "sample":
        return f"sample-v{sample_data.SAMPLE_VERSION}"
    return None
