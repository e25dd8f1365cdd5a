"""PASCAL VOC 2012 segmentation: classes, palette, file readers, download.

The layout (the same in the official tar and in Kaggle's "pascal-voc-2012",
where it sits one or two folders deeper)::

    VOC2012/
      JPEGImages/<id>.jpg                RGB photographs
      SegmentationClass/<id>.png         palette PNG: pixel index = class id
      SegmentationObject/<id>.png        palette PNG: pixel index = instance id
      ImageSets/Segmentation/train.txt   one id per line (1464 ids)
      ImageSets/Segmentation/val.txt     (1449 ids)
      ImageSets/Segmentation/trainval.txt

A class mask is a *palette* PNG: each pixel stores an index (0 = background,
1..20 = the classes below, 255 = "void", the band drawn around every object
outline and over ambiguous regions), and the file's palette only says how to
*show* that index. So :func:`read_mask` reads the indices with Pillow and never
converts the image to RGB and back (which would be slow and, with a different
palette, wrong). :func:`voc_label_indices` exists for colour masks saved by
other tools.

Readers return NumPy arrays: :func:`read_image` -> uint8 ``[H, W, 3]``,
:func:`read_mask` -> uint8 ``[H, W]``. This module is a leaf (it imports no
other module of the library); the datasets built on these readers, and the
choice of the book's data, live in :mod:`segnet_lib.datasets`.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
    "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
NUM_CLASSES = len(VOC_CLASSES)
IGNORE_LABEL = 255

#: The official trainval archive (images, class and object masks, splits).
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
#: Its MD5 checksum (the value torchvision checks too); about 2 GB.
VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
#: Environment variable that points the book at a VOC 2012 copy.
VOC_ROOT_ENV = "SEGNET_VOC_ROOT"

IMAGE_DIR = "JPEGImages"
MASK_DIR = "SegmentationClass"
SPLIT_DIR = os.path.join("ImageSets", "Segmentation")
_LAYOUT = (IMAGE_DIR, MASK_DIR, SPLIT_DIR)
# Kaggle's download nests the root (pascal-voc-2012/VOC2012/..., or
# .../VOCdevkit/VOC2012/...); look this many folders below the given path.
_MAX_SEARCH_DEPTH = 4
_EXTRACTED_MARKER = ".segnet_voc_extracted"


def _voc_colormap(n: int = 256) -> np.ndarray:
    # The devkit's VOClabelcolormap.m: the bits of the class index are dealt
    # out in turn to R, G and B, from the most significant bit of each
    # channel down, so small indices get well-separated colours.
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


#: uint8 [256, 3]: the colour of each index, as stored in VOC's PNG palettes.
#: Entry 0 is black (background), 255 is (224, 224, 192) (void).
VOC_COLORMAP = _voc_colormap()
VOC_COLORMAP.setflags(write=False)


def colorize(label_map: np.ndarray, colormap: np.ndarray = VOC_COLORMAP) -> np.ndarray:
    """Colours a label map with the VOC palette.

    Args:
        label_map: integer array ``[H, W]`` (or any shape) of class ids 0..255.
        colormap: uint8 ``[256, 3]`` palette.

    Returns:
        uint8 ``[H, W, 3]`` RGB image.

    Raises:
        ValueError: a value outside 0..255 (it has no colour).
    """
    label_map = np.asarray(label_map)
    if label_map.size and (label_map.min() < 0 or label_map.max() >= len(colormap)):
        raise ValueError(
            f"label values must be in 0..{len(colormap) - 1}, "
            f"found {label_map.min()}..{label_map.max()}")
    return colormap[label_map.astype(np.intp, copy=False)]


# Palette colours packed as 24-bit integers -> index; the palette is a
# bijection (each index gets its own bits), so the inverse is well defined.
_PACKED = (VOC_COLORMAP[:, 0].astype(np.int64) << 16) | (
    VOC_COLORMAP[:, 1].astype(np.int64) << 8) | VOC_COLORMAP[:, 2]
_PACKED_ORDER = np.argsort(_PACKED)
_PACKED_SORTED = _PACKED[_PACKED_ORDER]


def voc_label_indices(colour_mask: np.ndarray) -> np.ndarray:
    """Turns an RGB colour mask back into VOC indices (the inverse of :func:`colorize`).

    Args:
        colour_mask: uint8 ``[H, W, 3]`` RGB mask drawn with :data:`VOC_COLORMAP`
            (or a batch ``[..., H, W, 3]``).

    Returns:
        uint8 ``[H, W]`` label map (``[..., H, W]`` for a batch).

    Raises:
        ValueError: the array is not ``[..., H, W, 3]``, or a colour is not in the
            palette (the message lists a few of them with their pixel counts).
    """
    colour_mask = np.asarray(colour_mask)
    if colour_mask.ndim < 3 or colour_mask.shape[-1] != 3:
        raise ValueError(f"expected an RGB mask [H, W, 3], got shape {colour_mask.shape}")
    c = colour_mask.astype(np.int64)
    packed = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    pos = np.searchsorted(_PACKED_SORTED, packed).clip(0, len(_PACKED_SORTED) - 1)
    known = _PACKED_SORTED[pos] == packed
    if not known.all():
        bad, counts = np.unique(packed[~known], return_counts=True)
        shown = ", ".join(
            f"({v >> 16}, {(v >> 8) & 255}, {v & 255}) x{n}" for v, n in zip(bad[:5], counts[:5]))
        raise ValueError(
            f"{len(bad)} colour(s) not in the VOC palette, e.g. {shown}; "
            "was the mask resized with interpolation or saved as JPEG?")
    return _PACKED_ORDER[pos].astype(np.uint8)


def _has_layout(path: Path) -> bool:
    return all((path / part).is_dir() for part in _LAYOUT)


def find_voc_root(path) -> Path:
    """Finds the VOC root (the folder holding JPEGImages/) at or below ``path``.

    Accepts the root itself, ``VOCdevkit/``, the folder of the official tar or
    the Kaggle download folder, where the root sits one to a few levels deeper
    (e.g. ``pascal-voc-2012/VOC2012/`` or ``.../VOCdevkit/VOC2012/``). The
    shallowest match wins; among equally deep ones, the first in sorted order.

    Args:
        path: a folder.

    Returns:
        The root, a :class:`~pathlib.Path` containing ``JPEGImages/``,
        ``SegmentationClass/`` and ``ImageSets/Segmentation/``.

    Raises:
        FileNotFoundError: ``path`` does not exist, or no folder at most
            4 levels below it has that layout (the message says what was
            looked for).
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"VOC root {str(path)!r} does not exist or is not a folder")
    level = [path]
    for _ in range(_MAX_SEARCH_DEPTH + 1):
        for candidate in level:
            if _has_layout(candidate):
                return candidate
        level = [child for parent in level for child in sorted(parent.iterdir())
                 if child.is_dir() and not child.name.startswith(".")]
        if not level:
            break
    raise FileNotFoundError(
        f"no PASCAL VOC layout found in {str(path)!r} or up to {_MAX_SEARCH_DEPTH} "
        f"folders below it: looked for a folder containing {', '.join(p + '/' for p in _LAYOUT)} "
        "(e.g. VOCdevkit/VOC2012/). Download it with segnet_lib.voc.download_voc(dest), "
        f"or unset {VOC_ROOT_ENV} to use the sample data")


def read_split_ids(root, split: str) -> list[str]:
    """Lists the image ids of a split (``ImageSets/Segmentation/<split>.txt``).

    Args:
        root: the VOC root (see :func:`find_voc_root`).
        split: ``'train'``, ``'val'``, ``'trainval'`` or any other list there.

    Returns:
        The ids in file order.

    Raises:
        FileNotFoundError: no such split file (the message lists those found).
        ValueError: the file is empty or lists an id twice.
    """
    folder = Path(root) / SPLIT_DIR
    path = folder / f"{split}.txt"
    if not path.is_file():
        found = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        raise FileNotFoundError(f"split file {str(path)!r} not found; splits there: {found}")
    # ImageSets/Main files carry a second column ("2008_000008  1"); keep the id.
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"split file {str(path)!r} lists no ids")
    if len(set(ids)) != len(ids):
        seen, dup = set(), None
        for i in ids:
            if i in seen:
                dup = i
                break
            seen.add(i)
        raise ValueError(f"split file {str(path)!r} lists id {dup!r} more than once")
    return ids


def _open_loaded(path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} not found")
    try:
        img = Image.open(path)
        img.load()  # decode now, so a truncated file fails here, named
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from err
    return img


def read_image(path) -> np.ndarray:
    """Reads an image file as RGB.

    Args:
        path: a JPEG/PNG file; grayscale, CMYK and palette images are converted.

    Returns:
        uint8 ``[H, W, 3]``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable or truncated file (named in the message).
    """
    img = _open_loaded(path)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def read_mask(path, num_classes: int | None = None) -> np.ndarray:
    """Reads a class mask as indices, without a round trip through RGB.

    Palette (``'P'``) and grayscale (``'L'``) PNGs store the index directly;
    Pillow gives it back as is. An RGB mask (some re-uploads of VOC are saved
    that way) is mapped back through :data:`VOC_COLORMAP`.

    Args:
        path: a PNG file.
        num_classes: if given, check every value is in ``0..num_classes-1``
            or 255 (void).

    Returns:
        uint8 ``[H, W]`` label map.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable or truncated file, an unsupported image mode,
            or (with ``num_classes``) values out of range; the file is named.
    """
    img = _open_loaded(path)
    if img.mode in ("P", "L"):
        mask = np.array(img, dtype=np.uint8)
    elif img.mode == "RGB":
        try:
            mask = voc_label_indices(np.asarray(img))
        except ValueError as err:
            raise ValueError(f"RGB mask {str(path)!r}: {err}") from err
    else:
        raise ValueError(
            f"mask {str(path)!r} has mode {img.mode!r}; expected a palette ('P') "
            "or grayscale ('L') PNG of class indices")
    if num_classes is not None:
        check_mask_values(mask, num_classes, where=repr(str(path)))
    return mask


def check_mask_values(mask: np.ndarray, num_classes: int, where: str = "mask") -> None:
    """Raises ValueError if ``mask`` holds values outside 0..num_classes-1 and 255.

    Args:
        mask: integer label map.
        num_classes: number of classes (void, 255, is always allowed).
        where: what to call the mask in the message (e.g. its file name).
    """
    values = np.unique(mask)
    bad = values[(values >= num_classes) & (values != IGNORE_LABEL)]
    if bad.size:
        raise ValueError(
            f"{where} has values {bad.tolist()} outside 0..{num_classes - 1} "
            f"and {IGNORE_LABEL} (void)")


def _md5(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Downloads ``url`` into ``part``, resuming from the bytes already there."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # asked past the end: the file is complete
            return
        raise ConnectionError(f"downloading {url}: HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise ConnectionError(
            f"cannot download {url}: {err.reason}. If you already have the archive, "
            "pass it as download_voc(dest, archive=PATH)") from err
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range header: start again
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(part, "ab" if have else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True,
                desc=Path(urllib.request.url2pathname(url)).name, disable=not progress) as bar:
            while block := response.read(1 << 20):
                f.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise ConnectionError(
            f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
            "call download_voc again to resume")


def download_voc(dest, archive=None, url: str = VOC_URL, md5: str | None = VOC_MD5,
                 progress: bool = True, timeout: float = 60.0) -> Path:
    """Downloads (or takes), verifies and extracts the VOC 2012 trainval archive.

    Safe to call again: a finished extraction is detected and skipped; an
    interrupted download resumes where it stopped (HTTP Range request), and an
    interrupted extraction is redone.

    Args:
        dest: folder to extract into (created if needed). The archive is
            downloaded into it too, as ``<name>.part`` while incomplete.
        archive: path of an archive the user already has; nothing is
            downloaded then.
        url: where to download from (the official server by default).
        md5: expected MD5 of the archive; ``None`` skips the check.
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the server.

    Returns:
        The VOC root inside ``dest`` (e.g. ``dest/VOCdevkit/VOC2012``).

    Raises:
        ValueError: checksum mismatch (the bad download is deleted) or an
            archive that does not contain a VOC layout.
        ConnectionError: the download failed (the partial file is kept for resuming).
        FileNotFoundError: ``archive`` does not exist.
    """
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / _EXTRACTED_MARKER
    if marker.exists():
        try:
            return find_voc_root(dest)
        except FileNotFoundError:
            marker.unlink()  # extracted tree was removed since; redo it
    if archive is None:
        name = Path(urllib.request.url2pathname(url.split("?")[0])).name or "voc.tar"
        archive = dest / name
        if not archive.exists():
            part = dest / (name + ".part")
            _fetch(url, part, progress, timeout)
            if md5 is not None and _md5(part) != md5:
                actual = _md5(part)
                part.unlink()
                raise ValueError(
                    f"checksum mismatch for {url}: expected md5 {md5}, got {actual}; "
                    "the download was deleted, call download_voc again")
            part.replace(archive)
    else:
        archive = Path(archive).expanduser()
        if not archive.is_file():
            raise FileNotFoundError(f"archive {str(archive)!r} not found")
        if md5 is not None and (actual := _md5(archive)) != md5:
            raise ValueError(
                f"checksum mismatch for {str(archive)!r}: expected md5 {md5}, got {actual}")
    try:
        with tarfile.open(archive) as tar:
            # filter='data' refuses absolute paths, '..' and links that escape dest.
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"cannot extract {str(archive)!r}: {err}") from err
    try:
        root = find_voc_root(dest)
    except FileNotFoundError as err:
        raise ValueError(f"archive {str(archive)!r} holds no VOC layout: {err}") from err
    marker.write_text(f"{archive.name}\n")
    return root


__all__ = [
    "VOC_CLASSES", "NUM_CLASSES", "IGNORE_LABEL", "VOC_COLORMAP", "VOC_URL", "VOC_MD5",
    "VOC_ROOT_ENV", "colorize", "voc_label_indices", "find_voc_root", "read_split_ids",
    "read_image", "read_mask", "check_mask_values", "download_voc", "IMAGE_DIR", "MASK_DIR",
    "SPLIT_DIR",
]
