"""Is the input pipeline fast enough? Pipeline images/s next to a training step's images/s.

Two settings, each measured side by side in one run on this machine:

1. The book's CPU recipe: the sample data (<= 128x128), 128x128 crops,
   batch 8, and a narrow SegNet (width multiplier 0.25).
2. VOC-sized images (500x375 JPEGs drawn by the sample generator, or the real
   VOC 2012 train split when $SEGNET_VOC_ROOT is set), 224x224 crops with scale
   jitter 0.5..2, batch 4, and the full SegNet (29.5M parameters).

For each, the pipeline is timed alone (iterating the tf.data batches, with
``cache`` off and on), and the training step alone (forward + backward +
update on a fixed batch held in a variable, so no input cost is included).
The pipeline keeps up when its ratio to the training step is above 1.

Usage: python benchmarks/bench_data.py [--quick]
"""
import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import segnet_lib

segnet_lib.setup(seed=0, verbose=False)

from segnet_lib import data, datasets, sample_data, voc  # noqa: E402
from segnet_lib._tf import tf  # noqa: E402


def pipeline_rate(dataset, config, batches):
    """Images per second of the training pipeline, in its steady state.

    With ``cache=True`` the warm-up is one whole epoch: the first pass reads
    every file (and the shuffle buffer fills) before the cache serves batches.
    """
    warm_up = 3 + (len(dataset) // config.batch_size if config.cache else 0)
    with tf.Graph().as_default():
        images, _ = tf.data.make_one_shot_iterator(
            data.make_dataset(dataset, config, training=True)).get_next()
        with tf.Session() as sess:
            for _ in range(warm_up):
                sess.run(images)
            start = time.perf_counter()
            for _ in range(batches):
                sess.run(images)
            return batches * config.batch_size / (time.perf_counter() - start)


def train_step_rate(crop, batch, width, steps, warm_up=2):
    """Images per second of a SegNet training step on a constant batch, or None."""
    try:
        from segnet_lib import model
    except ImportError:
        return None
    with tf.Graph().as_default():
        rng = np.random.default_rng(0)
        images = tf.constant(rng.normal(0, 50, (batch, *crop, 3)).astype(np.float32))
        labels = tf.constant(rng.integers(0, 21, (batch, *crop)).astype(np.int32))
        logits, _ = model.build(images, 21, is_training=True,
                                config=model.SegNetConfig(width_multiplier=width))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits))
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
            train = tf.train.MomentumOptimizer(1e-3, 0.9).minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(warm_up):
                sess.run(train)
            start = time.perf_counter()
            for _ in range(steps):
                sess.run(train)
            return steps * batch / (time.perf_counter() - start)


def voc_sized_dataset(tmp: Path, n: int):
    """VOC 2012 train if $SEGNET_VOC_ROOT is set, else n generated 375x500 images."""
    if os.environ.get(voc.VOC_ROOT_ENV):
        return datasets.book_dataset("train"), "VOC 2012 train"
    from PIL import Image

    root = tmp / "voc_sized"
    for sub in (voc.IMAGE_DIR, voc.MASK_DIR, voc.SPLIT_DIR):
        (root / sub).mkdir(parents=True, exist_ok=True)
    ids = []
    for k in range(n):
        image, labels, _ = sample_data.render_scene(np.random.default_rng([0, k]), 375, 500)
        Image.fromarray(image).save(root / voc.IMAGE_DIR / f"big_{k}.jpg", quality=90)
        mask = Image.frombytes("P", (500, 375), sample_data.add_void_band(labels, 2).tobytes())
        mask.putpalette(voc.VOC_COLORMAP.tobytes())
        mask.save(root / voc.MASK_DIR / f"big_{k}.png")
        ids.append(f"big_{k}")
    (root / voc.SPLIT_DIR / "train.txt").write_text("\n".join(ids) + "\n")
    return datasets.VOCSegmentation(root, "train"), f"{n} generated 375x500 JPEGs"


def report(name, config, dataset, batches, crop, width, steps, warm_up=2):
    print(f"\n== {name}: crop {crop[0]}x{crop[1]}, batch {config.batch_size}, "
          f"{config.num_parallel_calls} parallel reads")
    rows = []
    for cache in (False, True):
        rate = pipeline_rate(dataset, dataclasses.replace(config, cache=cache), batches)
        rows.append((f"pipeline (cache={cache})", rate))
    step = train_step_rate(crop, config.batch_size, width, steps, warm_up)
    for label, rate in rows:
        print(f"  {label:<28} {rate:8.1f} img/s")
    if step is None:
        print("  training step: segnet_lib.model not available; pipeline alone reported")
        return
    print(f"  {'SegNet train step (x%.2f)' % width:<28} {step:8.1f} img/s")
    for label, rate in rows:
        print(f"  ratio {label} / train step: {rate / step:.1f}x")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches and steps")
    args = parser.parse_args(argv)
    quick = args.quick
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores visible, "
          f"{'GPU' if segnet_lib.setup(verbose=False).gpus else 'CPU only'}")
    small = datasets.VOCSegmentation(sample_data.sample_root(), "train")
    config = data.InputConfig(crop_size=(128, 128), batch_size=8,
                              num_parallel_calls=min(4, os.cpu_count() or 1))
    report("sample data, CPU recipe", config, small, 10 if quick else 40, (128, 128), 0.25,
           3 if quick else 10)
    with tempfile.TemporaryDirectory() as tmp:
        big, what = voc_sized_dataset(Path(tmp), 24 if quick else 64)
        print(f"\n(VOC-sized data: {what})")
        config = dataclasses.replace(config, crop_size=(224, 224), batch_size=4,
                                     min_scale=0.5, max_scale=2.0)
        # The full model takes seconds per step on a CPU: one warm-up, one or two timed.
        report("VOC-sized, full SegNet", config, big, 6 if quick else 20, (224, 224), 1.0,
               1 if quick else 2, warm_up=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
