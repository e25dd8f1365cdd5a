"""segnet_lib.distribute: data-parallel training on two logical CPU devices and two workers.

Two replicas must give the update one device gives with the whole batch, when
batch norm sees the same images: identical halves (so per-replica and
whole-batch statistics are equal), or distinct halves against one device that
normalises each half on its own ("ghost batch norm", what per-replica batch
norm is). A very narrow SegNet on 32x32 images keeps each test to seconds.
"""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import segnet_lib
from segnet_lib import checkpoints, distribute, step
from segnet_lib._tf import GPUS, tf
from segnet_lib.config import TrainConfig
from segnet_lib.losses import learning_rate_schedule, make_optimizer, segmentation_loss
from segnet_lib.runtime import session_config

NUM_CLASSES = 5
# Tolerances, relative to the largest element of each array: float32 sums in
# another order (per replica, then across) pass through 26 batch norms over a
# few pixels each (2x2 per image at the deepest stage), which amplify rounding.
# Measured on this model: weights after the step 1e-5 (identical halves) and
# 4.4e-3 (distinct halves, whose deep statistics come from 8 pixels), momentum
# slots (the gradients) 1.1e-2. A gradient counted twice or halved moves them by
# tens of percent; a weight decay counted twice (or lost) moves every kernel by
# learning_rate * decay = 2.5e-3 of itself, 12x WEIGHTS_TOL (decay 0.05 makes the
# decay's share large where both sides normalise the same images; the ghost
# comparison keeps the paper's 5e-4).
WEIGHTS_TOL, GHOST_WEIGHTS_TOL, SLOTS_TOL, LOSS_RTOL = 2e-4, 1e-2, 3e-2, 1e-5


def _config(**changes):
    changes = {"weight_decay": 0.05, **changes}
    return TrainConfig(width_multiplier=0.0625, batch_size=4, optimizer="sgd", learning_rate=0.05,
                       momentum=0.9, crop_size=(32, 32), **changes)


def _batch(identical_halves):
    rng = np.random.default_rng(1)
    images = rng.normal(0, 50, (4, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (4, 32, 32)).astype(np.int32)
    if identical_halves:
        images[2:], labels[2:] = images[:2], labels[:2]
    return images, labels


def _values(sess):
    return {v.op.name: sess.run(v) for v in tf.global_variables()}


def _two_replicas(images, labels, **changes):
    """One step of the library's replicated step on 2 logical CPU devices."""
    config = _config(gpus=2, **changes)
    graph = tf.Graph()
    with graph.as_default():
        segnet_lib.set_seed(0)
        cluster = distribute.make_cluster(config)
        dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
        with cluster.strategy.scope():
            train_step, _, _, iterator = step.replicated_training_step(
                cluster.strategy, config, dataset, NUM_CLASSES)
            init = tf.global_variables_initializer()
        with tf.Session(cluster.target, config=cluster.config) as sess:
            sess.run([init, iterator.initializer])
            before = _values(sess)
            loss, _ = sess.run([train_step.loss, train_step.train_op])
            return before, _values(sess), loss


def _one_device(images, labels, halves, **changes):
    """One step on one device: the whole batch, or its halves normalised separately."""
    config = _config(**changes)
    graph = tf.Graph()
    with graph.as_default():
        segnet_lib.set_seed(0)
        if not halves:
            train_step = step.training_step(config, tf.constant(images), tf.constant(labels),
                                            NUM_CLASSES)
            train_op, loss = train_step.train_op, train_step.loss
        else:
            global_step = tf.train.get_or_create_global_step()
            losses = []
            for i, part in enumerate((slice(0, 2), slice(2, 4))):
                logits, _ = segnet_lib.model.segnet(tf.constant(images[part]), NUM_CLASSES, True,
                                                    config.model_config(), reuse=i > 0)
                losses.append(segmentation_loss(logits, tf.constant(labels[part]), NUM_CLASSES))
            loss = tf.add_n(losses) / 2 + tf.add_n(tf.losses.get_regularization_losses())
            optimizer = make_optimizer(config, learning_rate_schedule(config, global_step))
            train_op = optimizer.minimize(loss, global_step=global_step)
        init = tf.global_variables_initializer()
        with tf.Session(config=session_config()) as sess:
            sess.run(init)
            before = _values(sess)
            loss_value, _ = sess.run([loss, train_op])
            return before, _values(sess), loss_value


def _assert_same(a, b, names, weights_tol=WEIGHTS_TOL):
    for name in names:
        scale = float(np.max(np.abs(b[name])))
        tol = SLOTS_TOL if name.endswith("/Momentum") else weights_tol
        # The biases before a batch norm get rounding noise only (their true
        # gradient is 0): an absolute floor.
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=tol * scale + 1e-6, err_msg=name)


@pytest.mark.skipif(bool(GPUS), reason="two logical CPU devices stand in for GPUs only without one")
def test_two_replicas_of_identical_halves_update_as_one_device_with_the_whole_batch():
    images, labels = _batch(identical_halves=True)
    start2, after2, loss2 = _two_replicas(images, labels)
    start1, after1, loss1 = _one_device(images, labels, halves=False)
    assert set(after2) == set(after1)  # same variables, same names: checkpoints unchanged
    _assert_same(start2, start1, start1)  # same seeded start
    moved = [n for n in after1 if not np.array_equal(after1[n], start1[n])]
    # Weights, momentum slots, batch-norm statistics and the global step all moved.
    assert any("moving_mean" in n for n in moved) and any("Momentum" in n for n in moved)
    assert after2["global_step"] == after1["global_step"] == 1
    _assert_same(after2, after1, [n for n in after1 if "moving_variance" not in n])
    # The moving variance takes the unbiased batch variance, m / (m - 1) times the
    # biased one, with m the pixels one replica normalises at that layer: 2 images
    # of (32 / 2 ** (s - 1)) ** 2 pixels in stage s (encoder and decoder), half the
    # whole batch's 2m, whose factor is 2m / (2m - 1). So its step (moving averages
    # start at 1 with decay 0.9) is larger by (2m - 1) / (2m - 2) - 1: 2.4e-4 in
    # stage 1, 7.1e-2 in stage 5 (m = 8).
    for name in (n for n in after1 if "moving_variance" in n):
        m = 2 * (32 >> (int(re.search(r"/conv(\d)_", name).group(1)) - 1)) ** 2
        expected = after1[name] + (after1[name] - 0.9) * ((2 * m - 1) / (2 * m - 2) - 1)
        np.testing.assert_allclose(after2[name], expected, rtol=WEIGHTS_TOL, err_msg=name)
    np.testing.assert_allclose(loss2, loss1, rtol=LOSS_RTOL)


@pytest.mark.skipif(bool(GPUS), reason="two logical CPU devices stand in for GPUs only without one")
def test_two_replicas_of_distinct_halves_update_as_one_device_with_ghost_batch_norm():
    images, labels = _batch(identical_halves=False)
    _, after2, loss2 = _two_replicas(images, labels, weight_decay=5e-4)
    _, after1, loss1 = _one_device(images, labels, halves=True, weight_decay=5e-4)
    trained = [n for n in after1 if "moving_" not in n]  # the ghost emulation updates stats twice
    _assert_same(after2, after1, trained, GHOST_WEIGHTS_TOL)
    np.testing.assert_allclose(loss2, loss1, rtol=LOSS_RTOL)
    # And not the whole-batch update: per-replica batch norm really is per replica.
    _, whole, _ = _one_device(images, labels, halves=False, weight_decay=5e-4)
    slot = "segnet/conv1_1/weights/Momentum"
    assert np.max(np.abs(after2[slot] - whole[slot])) > 3 * SLOTS_TOL * np.max(np.abs(whole[slot]))


def test_cluster_spec_reads_a_list_or_tf_config():
    spec = distribute.cluster_spec("127.0.0.1:2000, 127.0.0.1:2001", 1)
    assert spec == {"cluster": {"worker": ["127.0.0.1:2000", "127.0.0.1:2001"]},
                    "task": {"type": "worker", "index": 1}}
    assert distribute.cluster_spec("env", environ={"TF_CONFIG": json.dumps(spec)}) == spec
    assert distribute.cluster_spec(None) is None
    for bad, index, match in [("host", 0, "HOST:PORT"), ("a:1,b:2", 2, "outside the 2 workers"),
                              ("env", 0, "TF_CONFIG")]:
        with pytest.raises(ValueError, match=match):
            distribute.cluster_spec(bad, index, environ={})


def test_a_batch_that_does_not_split_over_the_replicas_is_refused():
    with pytest.raises(ValueError, match="multiple of gpus=3"):
        _config(gpus=3)
    with pytest.raises(ValueError, match="split evenly over 3"):
        distribute.per_replica_batch(4, 3)


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


WORKER = """
import sys
import segnet_lib
from segnet_lib import train
from segnet_lib.config import TrainConfig
segnet_lib.setup(seed=0, verbose=False)
config = TrainConfig(data="sample", width_multiplier=0.0625, crop_size=(32, 32), batch_size=4,
                     optimizer="sgd", steps=3, log_every=1, val_every=3, val_images=2,
                     checkpoint_every=3, seed=0, workers=sys.argv[2], worker_index=int(sys.argv[3]))
train.train(config, sys.argv[1], progress=False, export=False)
"""


def test_two_workers_on_localhost_train_together_and_the_chief_writes_one_checkpoint(tmp_path):
    ports = _free_ports(2)
    workers = ",".join(f"127.0.0.1:{p}" for p in ports)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(segnet_lib.__file__).parents[1])}
    env.pop("TF_CONFIG", None)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(out), workers, str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
             for i in range(2)]
    outputs = []
    try:
        for p in procs:  # bounded: a stuck all-reduce fails the test instead of hanging it
            outputs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
    sums = [re.search(r"worker (\d) finished at step 3: weights checksum ([\d.]+)", o) for o in outputs]
    assert all(sums), "\n".join(outputs)
    assert [int(m.group(1)) for m in sums] == [0, 1]
    assert sums[0].group(2) == sums[1].group(2)  # the same weights on both workers
    # One run folder, written by the chief only: its checkpoint holds step 3.
    assert [s for s, _ in checkpoints.checkpoint_dirs(out)] == [3]
    reader = tf.train.load_checkpoint(str(out / "ckpt-00000003" / checkpoints.CHECKPOINT_BASENAME))
    assert reader.get_tensor("global_step") == 3
    assert np.isfinite(reader.get_tensor("segnet/conv1_1/weights")).all()
