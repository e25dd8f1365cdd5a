"""Tests of segnet_lib.voc: palette, layout reader, datasets, download helper."""
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segnet_lib import voc


# --- helpers ---------------------------------------------------------------

def save_palette_png(path, mask, palette=voc.VOC_COLORMAP):
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask).tobytes())
    img.putpalette(np.asarray(palette, np.uint8).tobytes())
    img.save(path)


def make_voc(root, ids_by_split, rng, size=(20, 30)):
    """Writes a tiny VOC layout; returns {id: (image, mask)}."""
    root = Path(root)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    pairs = {}
    for split, ids in ids_by_split.items():
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            mask = rng.choice(np.array([0, 3, 15, 20, 255], np.uint8), size)
            Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg",
                                        quality=100, subsampling=0)
            save_palette_png(root / "SegmentationClass" / f"{image_id}.png", mask)
            pairs[image_id] = (image, mask)
    return pairs


@pytest.fixture
def voc_root(tmp_path, rng):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    pairs = make_voc(root, {"train": ["2007_000001", "2007_000002", "2007_000003"],
                            "val": ["2008_000001"]}, rng)
    return root, pairs


# --- classes and palette ---------------------------------------------------

def test_classes():
    assert voc.NUM_CLASSES == len(voc.VOC_CLASSES) == 21
    assert voc.VOC_CLASSES[0] == "background" and voc.VOC_CLASSES[15] == "person"
    assert voc.VOC_CLASSES[20] == "tvmonitor"


def test_colormap_known_entries():
    cmap = voc.VOC_COLORMAP
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    # Values from the devkit's VOClabelcolormap.m.
    assert tuple(cmap[0]) == (0, 0, 0)
    assert tuple(cmap[1]) == (128, 0, 0)
    assert tuple(cmap[2]) == (0, 128, 0)
    assert tuple(cmap[7]) == (128, 128, 128)
    assert tuple(cmap[15]) == (192, 128, 128)
    assert tuple(cmap[20]) == (0, 64, 128)
    assert tuple(cmap[255]) == (224, 224, 192)
    assert len({tuple(c) for c in cmap}) == 256  # a bijection: invertible
    with pytest.raises(ValueError):
        cmap[0, 0] = 1  # read-only, so nobody recolours it by accident


def test_colorize_and_back_round_trip(rng):
    labels = rng.integers(0, 256, (17, 23)).astype(np.uint8)
    rgb = voc.colorize(labels)
    assert rgb.shape == (17, 23, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[3, 4], voc.VOC_COLORMAP[labels[3, 4]])
    assert np.array_equal(voc.voc_label_indices(rgb), labels)


def test_colorize_rejects_out_of_range():
    with pytest.raises(ValueError, match="0..255"):
        voc.colorize(np.array([[0, 256]]))
    with pytest.raises(ValueError, match="0..255"):
        voc.colorize(np.array([[-1, 0]]))


def test_voc_label_indices_names_unknown_colours():
    rgb = voc.colorize(np.zeros((4, 4), np.uint8))
    rgb[0, 0] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\) x1"):
        voc.voc_label_indices(rgb)
    with pytest.raises(ValueError, match="shape"):
        voc.voc_label_indices(np.zeros((4, 4), np.uint8))


# --- layout ----------------------------------------------------------------

def test_find_voc_root_direct_and_nested(voc_root, tmp_path):
    root, _ = voc_root
    assert voc.find_voc_root(root) == root
    assert voc.find_voc_root(root.parent) == root  # VOCdevkit/
    assert voc.find_voc_root(tmp_path) == root


def test_find_voc_root_kaggle_nesting(tmp_path, rng):
    # Kaggle's pascal-voc-2012 download: two folders of the same name.
    deep = tmp_path / "pascal-voc-2012" / "VOC2012_train_val" / "VOC2012_train_val"
    make_voc(deep, {"train": ["a"]}, rng)
    (tmp_path / "pascal-voc-2012" / "aaa_unrelated").mkdir()
    assert voc.find_voc_root(tmp_path / "pascal-voc-2012") == deep


def test_find_voc_root_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        voc.find_voc_root(tmp_path / "missing")
    (tmp_path / "JPEGImages").mkdir()  # half a layout is not a layout
    with pytest.raises(FileNotFoundError, match="JPEGImages/, SegmentationClass/"):
        voc.find_voc_root(tmp_path)


def test_read_split_ids(voc_root):
    root, _ = voc_root
    assert voc.read_split_ids(root, "train") == ["2007_000001", "2007_000002", "2007_000003"]
    with pytest.raises(FileNotFoundError, match=r"splits there: \['train', 'val'\]"):
        voc.read_split_ids(root, "test")
    (root / "ImageSets/Segmentation/dup.txt").write_text("a\n\nb\na\n")
    with pytest.raises(ValueError, match="'a' more than once"):
        voc.read_split_ids(root, "dup")
    (root / "ImageSets/Segmentation/empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no ids"):
        voc.read_split_ids(root, "empty")


# --- files -----------------------------------------------------------------

def test_read_mask_keeps_indices_whatever_the_palette(tmp_path, rng):
    mask = rng.choice(np.array([0, 1, 14, 255], np.uint8), (9, 11))
    # A palette that paints every index the same colour: any RGB round trip
    # would lose the classes; reading indices does not.
    save_palette_png(tmp_path / "m.png", mask, palette=np.full((256, 3), 7, np.uint8))
    assert np.array_equal(voc.read_mask(tmp_path / "m.png"), mask)


def test_read_mask_grayscale_and_rgb(tmp_path, rng):
    mask = rng.choice(np.array([0, 5, 255], np.uint8), (6, 7))
    Image.fromarray(mask, "L").save(tmp_path / "l.png")
    Image.fromarray(voc.colorize(mask)).save(tmp_path / "rgb.png")
    assert np.array_equal(voc.read_mask(tmp_path / "l.png"), mask)
    assert np.array_equal(voc.read_mask(tmp_path / "rgb.png"), mask)


def test_read_mask_value_check_names_the_file(tmp_path):
    mask = np.array([[0, 21], [255, 40]], np.uint8)
    save_palette_png(tmp_path / "bad.png", mask)
    assert voc.read_mask(tmp_path / "bad.png").max() == 255  # unchecked read is fine
    with pytest.raises(ValueError, match=r"bad.png.*\[21, 40\] outside 0..20"):
        voc.read_mask(tmp_path / "bad.png", num_classes=21)


def test_truncated_and_missing_files_are_named(tmp_path, rng):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="cut.jpg"):
        voc.read_image(tmp_path / "cut.jpg")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 20, (64, 64), dtype=np.uint8), "L").save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:100])
    with pytest.raises(ValueError, match="cut.png"):
        voc.read_mask(tmp_path / "cut.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="junk.png"):
        voc.read_mask(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        voc.read_image(tmp_path / "nope.jpg")


def test_read_image_converts_grayscale(tmp_path):
    Image.fromarray(np.full((5, 6), 80, np.uint8), "L").save(tmp_path / "g.png")
    image = voc.read_image(tmp_path / "g.png")
    assert image.shape == (5, 6, 3) and (image == 80).all()


# --- VOCSegmentation ---------------------------------------------------------

def test_voc_segmentation_reads_pairs(voc_root):
    root, pairs = voc_root
    ds = voc.VOCSegmentation(root.parent.parent, "train")
    assert len(ds) == 3 and ds.ids[0] == "2007_000001"
    assert ds.num_classes == 21 and ds.class_names[8] == "cat"
    image, mask = ds[1]
    assert image.dtype == np.uint8 and image.shape == (20, 30, 3)
    assert np.array_equal(mask, pairs["2007_000002"][1])
    # JPEG is lossy: close, not equal.
    assert np.abs(image.astype(int) - pairs["2007_000002"][0]).mean() < 8
    assert np.array_equal(ds[-1][1], pairs["2007_000003"][1])
    assert ds.mask_path(0).name == "2007_000001.png"
    assert len(list(ds)) == 3
    with pytest.raises(IndexError):
        ds[3]


def test_voc_segmentation_missing_files_fail_early(voc_root):
    root, _ = voc_root
    (root / "JPEGImages" / "2007_000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"'2007_000002'.*train.txt.*2007_000002.jpg"):
        voc.VOCSegmentation(root, "train")
    (root / "SegmentationClass" / "2008_000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="2008_000001.png"):
        voc.VOCSegmentation(root, "val")


def test_voc_segmentation_size_mismatch_and_bad_values(voc_root):
    root, _ = voc_root
    save_palette_png(root / "SegmentationClass" / "2007_000001.png", np.zeros((5, 5), np.uint8))
    save_palette_png(root / "SegmentationClass" / "2007_000002.png",
                     np.full((20, 30), 22, np.uint8))
    ds = voc.VOCSegmentation(root, "train")
    with pytest.raises(ValueError, match=r"20x30 but its mask is 5x5.*2007_000001.png"):
        ds[0]
    with pytest.raises(ValueError, match=r"2007_000002.png.*\[22\]"):
        ds[1]


# --- CSVSegmentation ---------------------------------------------------------

def test_csv_segmentation_matches_label_maps(tmp_path, rng):
    from segnet_lib import rle

    images = tmp_path / "images"
    images.mkdir()
    maps = {}
    for k, size in enumerate([(12, 16), (10, 9), (7, 7)]):
        label_map = rng.choice(np.array([0, 0, 2, 9], np.uint8), size)
        if k == 2:
            label_map[:] = 0  # an image with no object
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            images / f"img{k}.png")
        maps[f"img{k}"] = label_map
    for order in ("C", "F"):
        rle.write_csv(tmp_path / f"{order}.csv", maps, order=order)
        ds = voc.CSVSegmentation(images, tmp_path / f"{order}.csv", order=order,
                                 ids=list(maps))
        assert ds.ids == list(maps) and len(ds) == 3
        for i, (image_id, label_map) in enumerate(maps.items()):
            image, mask = ds[i]
            assert image.shape == (*label_map.shape, 3)
            assert np.array_equal(mask, label_map), (order, image_id)


def test_csv_segmentation_errors(tmp_path, rng):
    from segnet_lib import rle

    images = tmp_path / "images"
    images.mkdir()
    label_map = np.zeros((6, 8), np.uint8)
    label_map[2:4, 2:5] = 3
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(images / "a.jpg")
    rle.write_csv(tmp_path / "t.csv", {"a": label_map, "b": label_map}, order="C")
    with pytest.raises(FileNotFoundError, match="'b'"):
        voc.CSVSegmentation(images, tmp_path / "t.csv", order="C")
    with pytest.raises(ValueError, match="'zz'"):
        voc.CSVSegmentation(images, tmp_path / "t.csv", order="C", ids=["zz"])
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        voc.CSVSegmentation(images, tmp_path / "missing.csv", order="C")
    # The CSV says 6x8; an image of another size is an error, not a crop.
    Image.fromarray(np.zeros((5, 8, 3), np.uint8)).save(images / "a.jpg")
    ds = voc.CSVSegmentation(images, tmp_path / "t.csv", order="C", ids=["a"])
    with pytest.raises(ValueError, match="height"):
        ds[0]


# --- dataset_from_env --------------------------------------------------------

def test_dataset_from_env_uses_voc_root(voc_root, monkeypatch):
    root, _ = voc_root
    monkeypatch.setenv(voc.VOC_ROOT_ENV, str(root.parent))
    ds = voc.dataset_from_env("val")
    assert ds.root == root and ds.ids == ["2008_000001"]


def test_dataset_from_env_falls_back_to_sample(voc_root, monkeypatch):
    from segnet_lib import sample_data

    root, _ = voc_root
    monkeypatch.delenv(voc.VOC_ROOT_ENV, raising=False)
    monkeypatch.setattr(sample_data, "sample_root", lambda: root)
    assert voc.dataset_from_env("train").root == root


# --- download_voc ------------------------------------------------------------

class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one in-memory file, honouring ``Range: bytes=N-``; logs requests."""

    payload = b""
    log = []

    def do_GET(self):  # noqa: N802 (http.server API)
        ranged = self.headers.get("Range")
        self.log.append((self.path, ranged))
        start = int(ranged.split("=")[1].rstrip("-")) if ranged else 0
        if start >= len(self.payload) and ranged:
            self.send_response(416)
            self.end_headers()
            return
        body = self.payload[start:]
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def voc_server(tmp_path, rng):
    """A tar of a tiny VOCdevkit served on 127.0.0.1; yields (url, md5, handler class)."""
    src = tmp_path / "src"
    make_voc(src / "VOCdevkit" / "VOC2012", {"train": ["x1", "x2"], "val": ["x3"]}, rng)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(src / "VOCdevkit", arcname="VOCdevkit")
    handler = type("Handler", (_RangeHandler,), {"payload": buf.getvalue(), "log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/VOCtrainval.tar"
        yield url, hashlib.md5(handler.payload).hexdigest(), handler
    finally:
        server.shutdown()
        server.server_close()


def test_download_verifies_extracts_and_skips(voc_server, tmp_path):
    url, md5, handler = voc_server
    dest = tmp_path / "dest"
    root = voc.download_voc(dest, url=url, md5=md5, progress=False)
    assert root == dest / "VOCdevkit" / "VOC2012"
    assert len(voc.VOCSegmentation(root, "train")) == 2
    assert (dest / "VOCtrainval.tar").exists() and not (dest / "VOCtrainval.tar.part").exists()
    assert len(handler.log) == 1
    assert voc.download_voc(dest, url=url, md5=md5, progress=False) == root
    assert len(handler.log) == 1  # skipped: no second request


def test_download_resumes_a_partial_file(voc_server, tmp_path):
    url, md5, handler = voc_server
    dest = tmp_path / "dest"
    dest.mkdir()
    half = len(handler.payload) // 2
    (dest / "VOCtrainval.tar.part").write_bytes(handler.payload[:half])
    root = voc.download_voc(dest, url=url, md5=md5, progress=False)
    assert handler.log == [("/VOCtrainval.tar", f"bytes={half}-")]
    assert hashlib.md5((dest / "VOCtrainval.tar").read_bytes()).hexdigest() == md5
    assert len(voc.VOCSegmentation(root, "val")) == 1


def test_download_checksum_mismatch_deletes_and_raises(voc_server, tmp_path):
    url, md5, _ = voc_server
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match=f"expected md5 {'0' * 32}, got {md5}"):
        voc.download_voc(dest, url=url, md5="0" * 32, progress=False)
    assert not list(dest.glob("VOCtrainval.tar*"))
    assert not (dest / "VOCdevkit").exists()


def test_download_uses_a_local_archive_without_network(voc_server, tmp_path):
    url, md5, handler = voc_server
    archive = tmp_path / "mine.tar"
    archive.write_bytes(handler.payload)
    dead = "http://127.0.0.1:9/never.tar"  # discard port: nothing listens
    root = voc.download_voc(tmp_path / "d", archive=archive, url=dead, md5=md5, progress=False)
    assert len(voc.VOCSegmentation(root, "train")) == 2 and handler.log == []
    with pytest.raises(ValueError, match="checksum mismatch.*mine.tar"):
        voc.download_voc(tmp_path / "e", archive=archive, md5="1" * 32, progress=False)
    with pytest.raises(FileNotFoundError, match="other.tar"):
        voc.download_voc(tmp_path / "e", archive=tmp_path / "other.tar", progress=False)
    with pytest.raises(ConnectionError, match="never.tar"):
        voc.download_voc(tmp_path / "f", url=dead, md5=md5, progress=False, timeout=5)


def test_download_rejects_an_archive_without_voc(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (tmp_path / "a.tar").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="holds no VOC layout"):
        voc.download_voc(tmp_path / "d", archive=tmp_path / "a.tar", md5=None, progress=False)
    assert not (tmp_path / "d" / ".segnet_voc_extracted").exists()
