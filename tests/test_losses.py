"""segnet_lib.losses: the loss, pixel accuracy, learning rate schedules and optimisers."""
import numpy as np
import pytest

from segnet_lib import losses
from segnet_lib._tf import LEAN_MEMORY_ENV, tf


def run_graph(fetch, feed=None):
    with tf.Session() as sess:
        return sess.run(fetch, feed)


# ---------------------------------------------------------------------------
# Loss, accuracy, learning rate
# ---------------------------------------------------------------------------

def numpy_loss(logits, labels, weights=None, ignore=255):
    """Reference: weighted cross-entropy summed over non-void pixels / their count."""
    logits = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    labels = labels.reshape(-1)
    valid = labels != ignore
    z = logits[valid] - logits[valid].max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    xent = -log_p[np.arange(valid.sum()), labels[valid]]
    w = np.ones_like(xent) if weights is None else np.asarray(weights)[labels[valid]]
    return (w * xent).sum() / max(valid.sum(), 1)


@pytest.mark.parametrize("weighted", [False, True])
def test_segmentation_loss_matches_numpy(rng, weighted):
    logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 5, 6))
    labels[0, :2] = 255  # void rows
    weights = np.array([0.2, 1.0, 3.0, 0.5], np.float32) if weighted else None
    with tf.Graph().as_default():
        loss = losses.segmentation_loss(tf.constant(logits), tf.constant(labels), 4,
                                       class_weights=weights)
        got = run_graph(loss)
    assert got == pytest.approx(numpy_loss(logits, labels, weights), rel=1e-5)


def test_segmentation_loss_ignores_void_whatever_the_logits(rng):
    labels = np.full((1, 4, 4), 255)
    labels[0, 0, 0] = 2
    a = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    b = a.copy()
    b[0, 1:] = 100 * rng.normal(size=(3, 4, 3))  # changes only void pixels
    with tf.Graph().as_default():
        la = losses.segmentation_loss(tf.constant(a), tf.constant(labels), 3)
        lb = losses.segmentation_loss(tf.constant(b), tf.constant(labels), 3)
        all_void = losses.segmentation_loss(tf.constant(a), tf.constant(np.full((1, 4, 4), 255)), 3)
        va, vb, v0 = run_graph([la, lb, all_void])
    assert va == pytest.approx(vb)
    assert v0 == 0.0


def test_segmentation_loss_rejects_labels_out_of_range():
    with tf.Graph().as_default():
        loss = losses.segmentation_loss(tf.zeros([1, 2, 2, 3]), tf.constant([[[0, 1], [7, 255]]]), 3)
        with pytest.raises(tf.errors.InvalidArgumentError, match="class ids in"):
            run_graph(loss)


def test_pixel_accuracy_counts_non_void_pixels_only():
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[0, 0, 0, 1] = logits[0, 0, 1, 2] = logits[0, 1, 0, 0] = logits[0, 1, 1, 1] = 5
    labels = np.array([[[1, 0], [0, 255]]])  # right, wrong, right, void
    with tf.Graph().as_default():
        acc = run_graph(losses.pixel_accuracy(tf.constant(logits), tf.constant(labels)))
    assert acc == pytest.approx(2 / 3)


def test_learning_rate_schedules(tiny_config):
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        poly = losses.learning_rate_schedule(
            tiny_config(lr_schedule="poly", learning_rate=0.1, lr_power=0.9, steps=100), step)
        const = losses.learning_rate_schedule(tiny_config(learning_rate=0.1), step)
        with tf.Session() as sess:
            values = [sess.run([poly, const], {step: s}) for s in (0, 50, 100)]
    assert values[0] == pytest.approx([0.1, 0.1])
    assert values[1][0] == pytest.approx(0.1 * 0.5 ** 0.9, rel=1e-5)
    assert values[2] == pytest.approx([0.0, 0.1])


def test_optimizers(tiny_config):
    with tf.Graph().as_default():
        assert isinstance(losses.make_optimizer(tiny_config(optimizer="sgd"), 0.1),
                          tf.train.MomentumOptimizer)
        assert isinstance(losses.make_optimizer(tiny_config(optimizer="adam"), 0.1),
                          tf.train.AdamOptimizer)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_slots_start_as_zeros_made_at_run_time_and_are_not_copied(tiny_config, optimizer,
                                                                  monkeypatch):
    """Lean: no slot is a folded constant that the first update copies; plain TensorFlow: each is."""
    copied = {}
    for lean in ("1", "0"):
        monkeypatch.setenv(LEAN_MEMORY_ENV, lean)
        with tf.Graph().as_default():
            w = tf.get_variable("w", [64, 256], initializer=tf.random_normal_initializer(seed=0))
            opt = losses.make_optimizer(tiny_config(optimizer=optimizer), 0.1)
            train = opt.minimize(tf.reduce_sum(w * w))
            slots = [opt.get_slot(w, name) for name in opt.get_slot_names()]
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                assert all(not sess.run(slot).any() for slot in slots)
                metadata = tf.RunMetadata()
                sess.run(train, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                         run_metadata=metadata)
                # Copy-on-write: an update allocates a new buffer for a slot
                # whose buffer something else (a constant) still holds.
                copied[lean] = sum(record.alloc_bytes
                                   for device in metadata.step_stats.dev_stats
                                   for node in device.node_stats if "Apply" in node.node_name
                                   for memory in node.memory
                                   for record in memory.allocation_records)
                assert [s.op.name for s in slots] == [
                    f"w/{'Momentum' if optimizer == 'sgd' else name}"
                    for name in (["Momentum"] if optimizer == "sgd" else ["Adam", "Adam_1"])]
    assert copied["1"] == 0
    assert copied["0"] >= 64 * 256 * 4
