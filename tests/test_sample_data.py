"""Tests of segnet_lib.sample_data: the generated VOC-layout sample dataset."""
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from segnet_lib import datasets, files, metrics, sample_data, voc
from segnet_lib.cli import main


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    return sample_data.generate(tmp_path_factory.mktemp("sample"), seed=0, num_train=8,
                                num_val=4)


def test_layout_and_splits(small_root):
    train = datasets.VOCSegmentation(small_root, "train")
    val = datasets.VOCSegmentation(small_root, "val")
    assert len(train) == 8 and len(val) == 4 and not set(train.ids) & set(val.ids)
    assert voc.read_split_ids(small_root, "trainval") == train.ids + val.ids
    for ds in (train, val):
        for i in range(len(ds)):
            image, mask = ds[i]
            assert image.dtype == np.uint8 and image.shape[2] == 3
            assert max(image.shape[:2]) <= 128
            assert set(np.unique(mask)) <= set(sample_data.SAMPLE_CLASS_IDS) | {255}
    with Image.open(train.mask_path(0)) as img:
        assert img.mode == "P"  # palette PNG, like VOC's
        assert np.array_equal(np.asarray(img.getpalette(), np.uint8).reshape(-1, 3),
                              voc.VOC_COLORMAP)


def test_every_object_outline_is_void(small_root):
    ds = datasets.VOCSegmentation(small_root, "train")
    for i in range(len(ds)):
        mask = ds[i][1]
        # Two 4-neighbours with different non-void classes would be an
        # outline without its void band.
        for a, b in ((mask[1:], mask[:-1]), (mask[:, 1:], mask[:, :-1])):
            assert not np.any((a != b) & (a != 255) & (b != 255))
    assert any((ds[i][1] == 255).any() and (ds[i][1] > 0).any() for i in range(len(ds)))


def test_add_void_band_marks_boundaries_and_tiny_fragments():
    label = np.zeros((12, 12), np.uint8)
    label[2:10, 2:10] = 8
    label[0, 11] = 15  # a 1-pixel fragment: too small to label
    out = sample_data.add_void_band(label, width=1, min_area=4)
    assert out[5, 5] == 8 and out[5, 0] == 0  # interiors kept
    assert out[2, 5] == 255 and out[1, 5] == 0  # the object's rim, not the background's
    assert out[2, 2] == 255 and out[3, 3] == 8  # 4-connected: the corner's inner pixel stays
    assert out[0, 11] == 255
    assert (sample_data.add_void_band(label, width=2, min_area=4)[3, 5]) == 255


def test_a_prediction_along_the_true_outline_scores_a_perfect_boundary_f1():
    """The band is narrower than the BF tolerance (as VOC's is), so BF measures outlines."""
    labels, clean = [], []
    for k in range(20):
        rng = np.random.default_rng([0, k])
        _, label, _ = sample_data.render_scene(rng, 96, 128)
        labels.append(sample_data.add_void_band(label))
        clean.append(label)
    assert metrics.boundary_f1(labels, clean, voc.NUM_CLASSES) > 0.95


def test_deterministic_per_seed(tmp_path, small_root):
    again = sample_data.generate(tmp_path / "again", seed=0, num_train=8, num_val=4)
    other = sample_data.generate(tmp_path / "other", seed=1, num_train=8, num_val=4)
    for sub in ("JPEGImages/sample_00003.jpg", "SegmentationClass/sample_00010.png"):
        assert (again / sub).read_bytes() == (small_root / sub).read_bytes()
        assert (other / sub).read_bytes() != (small_root / sub).read_bytes()


def test_generation_needs_no_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    sample_data.clear_caches()  # re-read the bundled files under the ban
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    root = sample_data.generate(tmp_path / "offline", seed=2, num_train=3, num_val=1)
    assert len(datasets.VOCSegmentation(root, "train")) == 3


def test_sample_root_caches_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))
    calls = []
    real = sample_data.generate

    def small(out_dir, seed=0, **kwargs):
        calls.append(seed)
        return real(out_dir, seed=seed, num_train=2, num_val=1)

    monkeypatch.setattr(sample_data, "generate", small)
    root = sample_data.sample_root(seed=3)
    assert root.parent == tmp_path / "cache" and f"seed3" in root.name
    assert len(datasets.VOCSegmentation(root, "train")) == 2
    assert sample_data.sample_root(seed=3) == root and calls == [3]  # cached

    def crash(out_dir, seed=0, **kwargs):
        (out_dir / "JPEGImages").mkdir()
        raise KeyboardInterrupt  # e.g. Ctrl-C half way

    monkeypatch.setattr(sample_data, "generate", crash)
    with pytest.raises(KeyboardInterrupt):
        sample_data.sample_root(seed=4)
    # No half dataset left behind: neither the final folder nor the temporary one.
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [root.name]


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["sample-data", "--out", str(out), "--seed", "1",
                 "--num-train", "2", "--num-val", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("cli")
    assert voc.read_split_ids(out, "val") == ["sample_00002"]


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample-data", "--out", str(tmp_path), "--num-train", "0"])
    assert exc.value.code == 2 and "--num-train" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["sample-data", "--num-val", "3"])
    assert exc.value.code == 2 and "need --out" in capsys.readouterr().err


def test_csv_matches_the_png_masks(small_root):
    train = datasets.VOCSegmentation(small_root, "train")
    csv = datasets.CSVSegmentation(small_root / "JPEGImages", small_root / "train.csv",
                              order=sample_data.CSV_ORDER, ids=train.ids)
    assert csv.ids == train.ids
    for i in range(len(train)):
        image, png_mask = train[i]
        csv_image, csv_mask = csv[i]
        assert np.array_equal(image, csv_image)
        # The CSV has no void band (Kaggle CSVs do not); elsewhere they agree.
        known = png_mask != 255
        assert np.array_equal(csv_mask[known], png_mask[known])
        assert (csv_mask[~known] != 255).all()


def test_csv_dataset_feeds_the_pipeline(small_root):
    """The seed's workflow end to end: image folder + RLE CSV -> tf.data batches."""
    from segnet_lib import data
    from segnet_lib._tf import tf

    csv = datasets.CSVSegmentation(small_root / "JPEGImages", small_root / "val.csv",
                              order=sample_data.CSV_ORDER)
    assert csv.ids == voc.read_split_ids(small_root, "val")
    config = data.InputConfig(crop_size=(64, 64), batch_size=2)
    with tf.Graph().as_default():
        images, labels = tf.data.make_one_shot_iterator(
            data.make_dataset(csv, config)).get_next()
        with tf.Session() as sess:
            x, y = sess.run([images, labels])
    assert x.shape == (2, 64, 64, 3) and y.shape == (2, 64, 64)
    assert set(np.unique(y)) <= set(sample_data.SAMPLE_CLASS_IDS) | {255}


def test_scenes_do_not_depend_on_the_cpu_instruction_set():
    """The same bytes with NumPy's SIMD kernels limited to the x86-64 baseline.

    NumPy picks vectorised kernels (SVML, AVX-512) at run time, and some
    (``tanh``, ``exp``) differ in the last bit between them; one such bit
    after rounding to uint8 would change the training data, and with it every
    trained number, from one machine to another.
    """
    script = ("import hashlib, numpy as np\n"
              "from segnet_lib import sample_data\n"
              "h = hashlib.sha256()\n"
              "for k in range(12):\n"
              "    rng = np.random.default_rng([0, k])\n"
              "    image, labels, _ = sample_data.render_scene(rng, 96, 128)\n"
              "    h.update(image.tobytes()); h.update(labels.tobytes())\n"
              "print(h.hexdigest())\n")
    # NumPy's own table of the kernels it dispatches at run time, and which this CPU has.
    from numpy._core import _multiarray_umath as umath

    dispatched = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    if not dispatched:
        pytest.skip("this CPU runs NumPy's baseline kernels only")
    env = dict(os.environ)
    plain = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True).stdout
    env["NPY_DISABLE_CPU_FEATURES"] = " ".join(dispatched)
    baseline = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, check=True).stdout
    assert plain == baseline and len(plain.strip()) == 64
