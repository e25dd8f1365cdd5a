"""segnet_lib.losses: the loss, pixel accuracy, learning rate schedules and optimisers."""
import numpy as np
import pytest

from segnet_lib import losses
from segnet_lib._tf import tf


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
