"""Tests of segnet_lib.voc: palette, layout, file readers, download helper."""
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest
from PIL import Image

from segnet_lib import datasets, voc


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


def test_find_voc_root_kaggle_nesting(tmp_path, rng, write_voc):
    # Kaggle's pascal-voc-2012 download: two folders of the same name.
    deep = tmp_path / "pascal-voc-2012" / "VOC2012_train_val" / "VOC2012_train_val"
    write_voc(deep, {"train": ["a"]}, rng)
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

def test_read_mask_keeps_indices_whatever_the_palette(tmp_path, rng, palette_png):
    mask = rng.choice(np.array([0, 1, 14, 255], np.uint8), (9, 11))
    # A palette that paints every index the same colour: any RGB round trip
    # would lose the classes; reading indices does not.
    palette_png(tmp_path / "m.png", mask, palette=np.full((256, 3), 7, np.uint8))
    assert np.array_equal(voc.read_mask(tmp_path / "m.png"), mask)


def test_read_mask_grayscale_and_rgb(tmp_path, rng):
    mask = rng.choice(np.array([0, 5, 255], np.uint8), (6, 7))
    Image.fromarray(mask, "L").save(tmp_path / "l.png")
    Image.fromarray(voc.colorize(mask)).save(tmp_path / "rgb.png")
    assert np.array_equal(voc.read_mask(tmp_path / "l.png"), mask)
    assert np.array_equal(voc.read_mask(tmp_path / "rgb.png"), mask)


def test_read_mask_value_check_names_the_file(tmp_path, palette_png):
    mask = np.array([[0, 21], [255, 40]], np.uint8)
    palette_png(tmp_path / "bad.png", mask)
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
def voc_server(tmp_path, rng, write_voc):
    """A tar of a tiny VOCdevkit served on 127.0.0.1; yields (url, md5, handler class)."""
    src = tmp_path / "src"
    write_voc(src / "VOCdevkit" / "VOC2012", {"train": ["x1", "x2"], "val": ["x3"]}, rng)
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
    assert len(datasets.VOCSegmentation(root, "train")) == 2
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
    assert len(datasets.VOCSegmentation(root, "val")) == 1


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
    assert len(datasets.VOCSegmentation(root, "train")) == 2 and handler.log == []
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
