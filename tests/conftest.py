"""Shared fixtures. Importing segnet_lib first keeps TF's C++ start-up quiet."""
import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segnet_lib
from segnet_lib import config as config_module
from segnet_lib import rle, train, voc
from segnet_lib._tf import tf


def pytest_configure(config):
    # Graph mode for every test, as in the notebooks.
    segnet_lib.setup(seed=0, verbose=False)


@pytest.fixture
def rng():
    """A seeded NumPy generator, fresh for each test."""
    return np.random.default_rng(0)


def save_palette_png(path, mask, palette=voc.VOC_COLORMAP):
    """Writes ``mask`` as a palette PNG (index = class), as VOC stores its masks."""
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
def palette_png():
    """``save_palette_png(path, mask, palette=VOC_COLORMAP)``."""
    return save_palette_png


@pytest.fixture
def write_voc():
    """``make_voc(root, {split: ids}, rng, size=(20, 30)) -> {id: (image, mask)}``."""
    return make_voc


@pytest.fixture
def voc_root(tmp_path, rng):
    """A tiny VOC layout under ``VOCdevkit/VOC2012``: 3 train ids, 1 val id."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    pairs = make_voc(root, {"train": ["2007_000001", "2007_000002", "2007_000003"],
                            "val": ["2008_000001"]}, rng)
    return root, pairs


# A miniature Sartorius download: the real header, ids, sizes and metadata
# formats; one image per row of this table, its cells as (centre row, centre
# column, radius). Image 0's second and third cells overlap, as real
# annotations do.
SARTORIUS_HEADER = ("id,annotation,width,height,cell_type,plate_time,sample_date,sample_id,"
                    "elapsed_timedelta")
SARTORIUS_IMAGES = (
    ("0a6ecc5fe78a", "shsy5y", "shsy5y[diff]_E10-4_Vessel-714_Ph_3", "11h30m00s",
     ((100, 120, 20), (300, 400, 30), (320, 440, 25))),
    ("0ba181d412da", "astro", "astros[cereb]_F3-1_Vessel-361_Ph_1", "09h00m00s",
     ((250, 350, 60),)),
    ("1395c3f12b7c", "cort", "cort[density]_B4-2_Vessel-451_Ph_2", "13h30m00s",
     ((50, 50, 9), (60, 600, 10), (480, 100, 8), (500, 690, 12))),
    ("1d9cea58d9a9", "astro", "astro[hippo]_A2-3_Vessel-102_Ph_4", "21h00m00s",
     ((400, 200, 45), (120, 560, 50))),
)


def make_sartorius(root, rng):
    """Writes ``root/train.csv`` and greyscale ``root/train/<id>.png`` in the exact Sartorius
    layout (520x704, row-major RLE, one row per cell); returns ``{id: (image, label map)}``
    with the label maps painted row by row (the later row wins)."""
    root = Path(root)
    (root / "train").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:520, :704]
    lines, out = [SARTORIUS_HEADER], {}
    for image_id, cell_type, sample_id, plate_time, discs in SARTORIUS_IMAGES:
        image = rng.integers(90, 170, (520, 704), dtype=np.uint8)
        Image.fromarray(image, "L").save(root / "train" / f"{image_id}.png")
        labels = np.zeros((520, 704), np.uint8)
        for cy, cx, r in discs:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            labels[mask] = ("shsy5y", "astro", "cort").index(cell_type) + 1
            hours, minutes = int(plate_time[:2]), int(plate_time[3:5])
            lines.append(f"{image_id},{rle.encode(mask, 'C')},704,520,{cell_type},{plate_time},"
                         f"2019-06-16,{sample_id},0 days {hours:02d}:{minutes:02d}:00")
        out[image_id] = (image, labels)
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture
def sartorius_copy(tmp_path, rng):
    """A miniature Sartorius download in ``tmp_path/sartorius``: ``(root, {id: (image, labels)})``."""
    root = tmp_path / "sartorius"
    return root, make_sartorius(root, rng)


def make_tiny_config(**changes):
    """A run that takes seconds: width 1/8, 32x32 crops, batch 2, 3 val images."""
    config = config_module.TrainConfig(
        data="sample", variant="segnet", width_multiplier=0.125, crop_size=(32, 32),
        batch_size=2, optimizer="adam", learning_rate=1e-3, steps=6, log_every=1, val_every=3,
        val_images=3, checkpoint_every=2, keep_last=2, summary_every=2, seed=0,
        deterministic=True)
    return config.replace(**changes)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(**changes) -> TrainConfig``: a run that trains in seconds."""
    return make_tiny_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_config):
    """One tiny run (sample data, 6 steps), trained once per test module: ``(folder, history)``."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    history = train.train(tiny_config(), out, progress=False, log=None)
    return out, history


@contextlib.contextmanager
def another_process_holding_the_lock(run_dir):
    """A child process holds ``run_dir``'s run lock while the block runs."""
    hold = ("import sys, time; from segnet_lib import checkpoints\n"
            "with checkpoints.run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", hold, str(run_dir)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        yield
    finally:
        other.kill()
        other.wait()


@pytest.fixture
def lock_held_elsewhere():
    """``with lock_held_elsewhere(run_dir): ...``: another process trains there meanwhile."""
    return another_process_holding_the_lock


def fit_loss(images, logits, x, labels, steps=20, learning_rate=0.05):
    """Mean cross-entropy of ``logits`` on ``x`` before and after ``steps`` of momentum SGD.

    Builds the loss and the update (with the batch-norm updates) in the
    current graph; returns ``(first, last)``.
    """
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        step = tf.train.MomentumOptimizer(learning_rate, 0.9).minimize(loss)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        first = sess.run(loss, {images: x})
        for _ in range(steps):
            sess.run(step, {images: x})
        return first, sess.run(loss, {images: x})


@pytest.fixture
def loss_falls():
    """``loss_falls(images, logits, x, labels) -> (first, last)`` (see :func:`fit_loss`)."""
    return fit_loss
