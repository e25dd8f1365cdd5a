"""CSV files of run-length encoded masks (Kaggle style): reading, grouping, writing.

A CSV has one row per mask: the image id, the RLE string (see
:mod:`segnet_lib.rle` for the format and the pixel order) and, depending on the
competition, a class and the image's ``width`` and ``height``. Several rows of
one image combine into one label map.

* :func:`read_csv` reads a file into a DataFrame with normalised column names
  (``id``, ``rle``, ``class``, ``width``, ``height``), checking ids, classes
  and sizes and naming the file, line and id of a bad value. A class column
  may hold ids or names; names become ids 1, 2, ... (background is 0), in the
  order given or, by default, sorted, and the frame records them
  (``frame.attrs['class_names']``). :func:`read_header` reads only the header.
* :class:`RLETable` groups those rows by image once (``pd.factorize`` and a
  stable sort: iterating a pandas ``groupby`` would build a DataFrame per
  image) and decodes one image's label map on demand, checking the stated
  size against the one given and naming file, line and id in every error.
* :func:`iter_label_maps` decodes a whole file lazily, image by image;
  :func:`write_csv` writes label maps back as a submission-style file.

:class:`segnet_lib.datasets.CSVSegmentation` reads training data through
:class:`RLETable`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from segnet_lib import rle
from segnet_lib.files import atomic_write_text

__all__ = ["ID_COLUMNS", "RLE_COLUMNS", "CLASS_COLUMNS", "KINDS", "BACKGROUND", "read_header",
           "read_csv", "RLETable", "iter_label_maps", "write_csv"]

# Column names that read_csv recognises, in order of preference (compared
# case-insensitively). Seed project: id, annotation; Kaggle: ImageId,
# EncodedPixels, ClassId.
ID_COLUMNS = ("id", "image_id", "imageid", "img_id", "image", "filename", "file_name")
RLE_COLUMNS = ("rle", "annotation", "encodedpixels", "encoded_pixels", "rle_mask",
               "segmentation", "predicted")
CLASS_COLUMNS = ("class", "class_id", "classid", "category_id", "label")

#: How the rows of one image become label values: ``'semantic'`` (each row's
#: ``class``), ``'instance'`` (the rows with runs numbered 1, 2, ... in file
#: order) or ``'binary'`` (every row 1: foreground against background).
KINDS = ("semantic", "instance", "binary")
#: The name of class 0 when a class column's names are numbered (see :func:`read_csv`).
BACKGROUND = "background"


# ----------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------

def _find_column(columns, wanted, candidates, path, role: str, required: bool):
    if wanted is not None:
        if wanted not in columns:
            raise ValueError(f"{path}: no column {wanted!r} for the {role}; columns are {list(columns)}")
        return wanted
    lower = {str(c).lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    if required:
        raise ValueError(
            f"{path}: no {role} column (looked for {', '.join(candidates)}; case-insensitive); "
            f"columns are {list(columns)}; pass {role}_column=")
    return None


def _line(df: pd.DataFrame, index) -> str:
    """Where a row came from: 'train.csv, line 7' for files read by read_csv."""
    source = df.attrs.get("source")
    return f"{source}, line {index + 2}" if source else f"row {index}"


def _row(df: pd.DataFrame, index) -> str:
    """:func:`_line` and, once the ids are known, the row's id: "train.csv, line 7 (id 'a')"."""
    if "id" in df and not pd.isna(df.at[index, "id"]):
        return f"{_line(df, index)} (id {str(df.at[index, 'id'])!r})"
    return _line(df, index)


def _integer_column(df, column, what: str, positive: bool, required=None) -> pd.Series:
    """The column as int64; a value that is not an integer (or a missing one
    where ``required``, default everywhere) raises ValueError naming the line."""
    numbers = pd.to_numeric(df[column], errors="coerce")
    missing = df[column].isna()
    bad = (~missing & (numbers.isna() | (numbers != numbers.round())))
    if positive:
        bad |= numbers < 1
    bad |= missing & (True if required is None else required)
    if bad.any():
        i = bad.idxmax()
        value = df.at[i, column]
        if pd.isna(value):
            raise ValueError(f"{_row(df, i)}: {what} is missing")
        kind = "a positive integer" if positive else "an integer"
        raise ValueError(f"{_row(df, i)}: {what} {value!r} is not {kind}")
    return numbers.fillna(0).astype(np.int64)


def read_header(path) -> list[str]:
    """The column names of a CSV file, reading nothing else.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty or not a CSV (naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RLE CSV {str(path)!r} not found")
    try:
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read a CSV header: {err}") from None


def read_csv(path, *, id_column: str | None = None, rle_column: str | None = None,
             class_column: str | None | bool = None,
             classes: Sequence[str] | Mapping[str, int] | None = None,
             **read_csv_kwargs) -> pd.DataFrame:
    """Reads an RLE CSV (one row per mask) into a DataFrame with normalised columns.

    Recognised columns (case-insensitive; the ``*_column`` arguments override):
    the image id (``id``, ``ImageId``, ``image_id``, ...), the RLE
    (``rle``, ``annotation`` as in the seed's train.csv, ``EncodedPixels``, ...),
    optionally a class (``class``, ``ClassId``, ``category_id``, ``label``) and
    ``width``/``height``. Other columns are kept unchanged.

    The class column may hold ids (``3``) or names (``'cat'``, Sartorius'
    ``'astro'``). Names become ids by ``classes`` when given, else by their
    sorted order: 1 for the first, 2 for the next, with 0 the background.

    Args:
        path: the CSV file.
        id_column, rle_column: names of those columns, if not recognised.
        class_column: name of the class column; None finds one if present;
            False ignores any (every row is then an instance).
        classes: the class names, for a class column holding names (and to
            check a column of ids against): a sequence whose index is the
            class id (such as ``voc.VOC_CLASSES``, or background followed by
            a documented list) or a mapping ``name -> id``. A column of plain
            ids passes through it unchanged.
        **read_csv_kwargs: passed to :func:`pandas.read_csv`.

    Returns:
        DataFrame with ``id`` (str), ``rle`` (str, ``''`` for empty masks) and,
        when present, ``class``, ``width``, ``height`` (int64; class 0 on rows
        with an empty RLE and no class). The index is the 0-based data row
        (file line = index + 2). ``df.attrs``: ``'source'``, the path, so later
        errors can name the file and line; ``'class_column'``, the class
        column's name in the file (None without one); ``'class_names'``, the
        names by class id when the column holds names or ``classes`` is given,
        else None (ids without names).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing id/RLE column, an empty id, a class name not in
            ``classes``, a class id beyond them, or a class, width or height
            that is not an integer (naming the file, line and id).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RLE CSV {str(path)!r} not found")
    # Everything as text, and only empty fields missing: ids such as 'NA' or
    # 'None' must stay ids.
    options = dict(dtype=str, keep_default_na=False, na_values=[""])
    options.update(read_csv_kwargs)
    df = pd.read_csv(path, **options)
    df.attrs["source"] = str(path)
    columns = df.columns
    names = {"id": _find_column(columns, id_column, ID_COLUMNS, path, "id", True),
             "rle": _find_column(columns, rle_column, RLE_COLUMNS, path, "rle", True)}
    if class_column is not False:
        found = _find_column(columns, class_column, CLASS_COLUMNS, path, "class", False)
        if found is not None:
            names["class"] = found
    for size in ("width", "height"):
        found = _find_column(columns, None, (size,), path, size, False)
        if found is not None:
            names[size] = found
    df = df.rename(columns={old: new for new, old in names.items() if old != new})
    other = [c for c in df.columns if c not in names]
    df = df[list(names) + other]
    df.attrs.update(class_column=names.get("class"), class_names=None)
    missing_id = df["id"].isna()
    if missing_id.any():
        raise ValueError(f"{_line(df, missing_id.idxmax())}: empty image id")
    df["id"] = df["id"].astype(str)
    df["rle"] = df["rle"].fillna("").astype(str)
    if "class" in df:
        df["class"], df.attrs["class_names"] = _class_ids(df, classes, names["class"])
    for size in ("width", "height"):
        if size in df:
            df[size] = _integer_column(df, size, size, positive=True)
    return df


def _class_names(classes) -> tuple[tuple, dict]:
    """``(names by id, {name: id})`` of a sequence (index = id) or a mapping ``name -> id``."""
    if isinstance(classes, Mapping):
        lookup = {str(n): int(i) for n, i in classes.items()}
        names = [f"class {i}" for i in range(max(lookup.values(), default=0) + 1)]
        names[0] = BACKGROUND
        for n, i in lookup.items():
            names[i] = n
        return tuple(names), lookup
    names = tuple(str(n) for n in classes)
    return names, {n: i for i, n in enumerate(names)}


def _class_ids(df: pd.DataFrame, classes, column: str):
    """``(class ids int64, class names or None)`` of the ``class`` column."""
    raw = df["class"]
    has_runs = df["rle"] != ""
    if classes is None:
        named = raw.notna() & pd.to_numeric(raw, errors="coerce").isna()
        if not named.any():  # plain ids
            return _integer_column(df, "class", "class", positive=False, required=has_runs), None
        # Names, numbered in sorted order after the background.
        classes = (BACKGROUND,) + tuple(sorted(set(raw[raw.notna()].astype(str))))
    names, lookup = _class_names(classes)
    ids = raw.map(lookup)
    ids = ids.where(ids.notna(), pd.to_numeric(raw, errors="coerce"))  # names first, then ids
    unknown = ids.isna() & raw.notna()
    if unknown.any():
        i = unknown.idxmax()
        known = [n for n, k in lookup.items() if k != 0]
        raise ValueError(f"{_row(df, i)}: {column} {raw[i]!r} is not one of the classes "
                         f"({', '.join(known)})")
    ids = _integer_column(df.assign(_class=ids), "_class", "class", positive=False,
                          required=has_runs)
    beyond = (ids >= len(names)) | (ids < 0)
    if beyond.any():
        i = beyond.idxmax()
        raise ValueError(f"{_row(df, i)}: class {int(ids[i])} is outside 0..{len(names) - 1} "
                         f"({', '.join(names)})")
    return ids, names


# ----------------------------------------------------------------------------
# Grouping and decoding
# ----------------------------------------------------------------------------

class RLETable:
    """An RLE CSV read once and grouped by image; label maps decoded on demand.

    Example::

        table = RLETable("train.csv", order="C")
        label_map = table.label_map(table.ids[0])   # uint8 [H, W]

    Args:
        data: a CSV path, or a DataFrame from :func:`read_csv`.
        order: ``'C'`` or ``'F'``, the pixel order of the RLE strings.
        kind: one of :data:`KINDS`; default ``'semantic'`` when there is a
            class column, else ``'instance'``.
        **read_csv_kwargs: passed to :func:`read_csv` when ``data`` is a path.

    Attributes:
        frame: the DataFrame (:func:`read_csv`'s columns).
        order, kind: as given (``kind`` resolved).
        source: the file, for messages (``'the CSV'`` for a bare DataFrame).
        ids: the image ids (str), in order of first appearance.
        class_names: the class names by id when the file's class column
            holds names (``frame.attrs['class_names']``, see :func:`read_csv`),
            else None.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a bad order or kind, missing ``id``/``rle`` columns, or
            what :func:`read_csv` refuses.
    """

    def __init__(self, data, order: str, *, kind: str | None = None, **read_csv_kwargs):
        self.order = rle.check_order(order)
        df = data if isinstance(data, pd.DataFrame) else read_csv(data, **read_csv_kwargs)
        for column in ("id", "rle"):
            if column not in df:
                raise ValueError(f"need columns 'id' and 'rle' (see read_csv), got {list(df.columns)}")
        if kind is None:
            kind = "semantic" if "class" in df else "instance"
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind == "semantic" and "class" not in df:
            raise ValueError(f"kind='semantic' needs a class column, got {list(df.columns)}")
        self.frame, self.kind = df, kind
        self.source = df.attrs.get("source", "the CSV")
        self.class_names = df.attrs.get("class_names")
        codes, uniques = pd.factorize(df["id"].astype(str), sort=False)
        self._by_image = np.argsort(codes, kind="stable")
        self._bounds = np.searchsorted(codes[self._by_image], np.arange(len(uniques) + 1))
        self.ids = [str(i) for i in uniques]
        self._group = {image_id: g for g, image_id in enumerate(self.ids)}
        # Plain arrays: slicing them per image costs nothing, unlike df.iloc.
        self._rles = df["rle"].to_numpy(object)
        self._classes = df["class"].to_numpy() if "class" in df else None
        self._sizes = (df[["height", "width"]].to_numpy(np.int64)
                       if "width" in df and "height" in df else None)
        self._index = df.index.to_numpy()

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, image_id) -> bool:
        return str(image_id) in self._group

    def __repr__(self) -> str:
        return f"RLETable({self.source!r}, {len(self)} images, order={self.order!r}, kind={self.kind!r})"

    def check_ids(self, ids: Iterable) -> list[str]:
        """``ids`` as strings; ValueError naming a few that have no row in the file."""
        ids = [str(i) for i in ids]
        missing = [i for i in ids if i not in self._group]
        if missing:
            raise ValueError(f"{len(missing)} id(s) have no row in {self.source}, e.g. {missing[:3]}")
        return ids

    def _rows(self, image_id) -> np.ndarray:
        g = self._group.get(str(image_id))
        if g is None:
            raise KeyError(f"id {image_id!r} has no row in {self.source}")
        return self._by_image[self._bounds[g]:self._bounds[g + 1]]

    def where(self, image_id) -> str:
        """Where an image's first row is, for messages: ``"train.csv, line 7 (id 'a')"``.

        Raises:
            KeyError: an unknown id.
        """
        return self._label(self._rows(image_id)[0], image_id)

    def _label(self, position, image_id) -> str:
        return f"{_line(self.frame, self._index[position])} (id {str(image_id)!r})"

    def stated_shape(self, image_id):
        """``(height, width)`` from the file's width/height columns, or None without them.

        Raises:
            KeyError: an unknown id.
            ValueError: the image's rows state different sizes (naming the
                first row and one that disagrees with it).
        """
        if self._sizes is None:
            return None
        positions = self._rows(image_id)
        sizes = self._sizes[positions]
        differ = np.flatnonzero((sizes != sizes[0]).any(axis=1))
        if differ.size:
            (h0, w0), (h, w) = sizes[0], sizes[differ[0]]
            first = _line(self.frame, self._index[positions[0]])
            other = _line(self.frame, self._index[positions[differ[0]]])
            raise ValueError(f"{self.source}: id {str(image_id)!r} has rows with different sizes "
                             f"(height x width): {h0}x{w0} on {first}, {h}x{w} on {other}")
        return int(sizes[0, 0]), int(sizes[0, 1])

    def label_map(self, image_id, shape=None, *, overlap: str = "error", dtype=np.uint8,
                  shape_name: str | None = None) -> np.ndarray:
        """Decodes the label map of one image from its rows.

        Args:
            image_id: an id of :attr:`ids`.
            shape: ``(height, width)``; default: the file's ``width``/``height``
                (checked against ``shape`` when both are there).
            overlap: overlap policy of :func:`segnet_lib.rle.decode_label_map`.
            dtype: integer dtype of the result (np.uint16 for > 255 instances).
            shape_name: what ``shape`` is the size of, for the message of a
                mismatch (e.g. ``"its image 'a.jpg'"``).

        Returns:
            ``dtype`` ``[height, width]``, 0 where no row paints.

        Raises:
            KeyError: an unknown id.
            ValueError: a malformed row (naming the file, line and id), no size
                at all, or a size that disagrees with the file.
        """
        positions = self._rows(image_id)
        stated = self.stated_shape(image_id)
        if shape is None:
            if stated is None:
                raise ValueError(f"{self.source}: id {image_id!r}: no image size; "
                                 "pass shape= or add width and height columns")
            shape = stated
        shape = rle.check_shape(shape)
        if stated is not None and stated != shape:
            given = (f"shape {shape} was given" if shape_name is None
                     else f"{shape_name} is {shape[0]}x{shape[1]}")
            raise ValueError(f"{self.where(image_id)}: height x width {stated[0]}x{stated[1]} "
                             f"in the file but {given}")
        rles = self._rles[positions]
        if self.kind == "semantic":
            values = self._classes[positions].tolist()
        elif self.kind == "binary":
            values = [1] * len(positions)
        else:  # instances numbered among the rows that have runs
            nonempty = np.array([not rle.is_missing(r) and bool(str(r).strip()) for r in rles])
            values = np.where(nonempty, np.cumsum(nonempty), 0).tolist()
        labels = [self._label(p, image_id) for p in positions]
        return rle.decode_label_map(rles, values, shape, self.order, overlap=overlap, dtype=dtype,
                                    row_labels=labels)


def iter_label_maps(data, order: str, shape=None, *, kind: str | None = None,
                    overlap: str = "error", dtype=np.uint8, ids: Sequence[str] | None = None,
                    **read_csv_kwargs) -> Iterator[tuple[str, np.ndarray]]:
    """Lazily decodes an RLE CSV into one label map per image.

    The file (or DataFrame) is read and grouped at once (an :class:`RLETable`);
    each label map is decoded only when the iterator reaches it, so a CSV of
    tens of thousands of rows costs one mask's memory at a time.

    Args:
        data: a CSV path, or a DataFrame from :func:`read_csv`.
        order: ``'C'`` or ``'F'``, as in :func:`segnet_lib.rle.decode`.
        shape: ``(height, width)`` for every image, a mapping ``id -> shape``,
            or a callable ``id -> shape``; default: the ``width``/``height``
            columns (checked against ``shape`` when both are there).
        kind: one of :data:`KINDS`; default: ``'semantic'`` when there is a
            class column, else ``'instance'``.
        overlap: overlap policy of :func:`segnet_lib.rle.decode_label_map`.
        dtype: dtype of the label maps (np.uint16 for > 255 instances).
        ids: only these images, in this order (default: all, in order of first
            appearance).
        **read_csv_kwargs: passed to :func:`read_csv` when ``data`` is a path.

    Returns:
        An iterator of ``(image_id, label_map)``, label maps ``dtype [H, W]``.

    Raises:
        FileNotFoundError, ValueError: at once for a missing file, unknown ids
            or a bad argument; while iterating for a malformed row (naming the
            file, line and id).
    """
    table = RLETable(data, order, kind=kind, **read_csv_kwargs)
    rle.check_overlap(overlap)
    wanted = table.ids if ids is None else table.check_ids(ids)
    return _label_maps(table, wanted, shape, overlap, dtype)


def _label_maps(table: RLETable, ids, shape, overlap, dtype):
    for image_id in ids:
        if callable(shape):
            given = shape(image_id)
        elif isinstance(shape, Mapping):
            if image_id not in shape:
                raise ValueError(f"shape mapping has no entry for id {image_id!r}")
            given = shape[image_id]
        else:
            given = shape
        yield image_id, table.label_map(image_id, given, overlap=overlap, dtype=dtype)


# ----------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------

def write_csv(path, label_maps: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
              order: str, *, ignore: Iterable[int] = (0, 255), sizes: bool = True) -> Path:
    """Writes label maps as a submission-style RLE CSV: one row per (image, value).

    Columns ``id, class, rle, width, height``. An image with nothing to encode
    gets one row with class 0 and an empty RLE, so every image appears. The
    file is written atomically (:func:`segnet_lib.files.atomic_write_text`).
    ``iter_label_maps(path, order)`` reads the file back (ignored values become 0).

    Args:
        path: the CSV to write (parent folders are created).
        label_maps: ``{image_id: label_map}`` or an iterable of
            ``(image_id, label_map)`` pairs (such as :func:`iter_label_maps`),
            label maps integer ``[H, W]``.
        order: ``'C'`` or ``'F'``.
        ignore: values not written (default: background 0 and void 255).
        sizes: write the ``width`` and ``height`` columns.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    rle.check_order(order)
    ignore = tuple(ignore)
    items = label_maps.items() if isinstance(label_maps, Mapping) else label_maps
    records = []
    for image_id, label_map in items:
        label_map = np.asarray(label_map)
        encoded = rle.encode_label_map(label_map, order, ignore=ignore) or {0: ""}
        height, width = label_map.shape
        for value, text in encoded.items():
            records.append((str(image_id), value, text, width, height))
    df = pd.DataFrame.from_records(records, columns=["id", "class", "rle", "width", "height"])
    if not sizes:
        df = df.drop(columns=["width", "height"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, df.to_csv(index=False))
