"""segnet_lib.layers: the convolution, batch norm, up-convolution and dropout of every builder.

Each test builds in a fresh ``tf.Graph()``; the NumPy references are written
here independently of the library.
"""
import numpy as np
import pytest

from segnet_lib import layers, model, unet
from segnet_lib._tf import LEAN_MEMORY_ENV, tf

CONFIG = model.SegNetConfig(weight_decay=1e-3)


def test_conv_variables_follow_the_spec():
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [2, 9, 7, 3])
        y = layers.conv(x, layers.LayerSpec("c", 4, 3), 4, True, CONFIG)
        layers.conv(y, layers.LayerSpec("d", None, 1, batch_norm=False, relu=False, bias=False),
                    5, True, CONFIG)
        names = {v.op.name: v.shape.as_list() for v in tf.global_variables()}
        assert names == {
            "c/weights": [3, 3, 3, 4], "c/biases": [4], "c/BatchNorm/gamma": [4],
            "c/BatchNorm/beta": [4], "c/BatchNorm/moving_mean": [4],
            "c/BatchNorm/moving_variance": [4], "d/weights": [1, 1, 4, 5]}
        assert len(tf.losses.get_regularization_losses()) == 2
        assert len(tf.get_collection(tf.GraphKeys.UPDATE_OPS)) == 2
        with pytest.raises(ValueError, match="channel"):
            layers.conv(tf.placeholder(tf.float32, [1, 4, 4, None]), layers.LayerSpec("e", 2, 3),
                        2, True, CONFIG)


def test_conv_without_batch_norm_matches_numpy(rng):
    x = rng.normal(size=(1, 5, 6, 2)).astype(np.float32)
    with tf.Graph().as_default():
        y = layers.conv(tf.constant(x), layers.LayerSpec("c", 3, 3, batch_norm=False), 3, True,
                        CONFIG)
        kernel, = [v for v in tf.global_variables() if v.op.name == "c/weights"]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            k, out = sess.run([kernel, y])
    padded = np.pad(x[0], ((1, 1), (1, 1), (0, 0)))
    expected = np.zeros((5, 6, 3))
    for i in range(5):
        for j in range(6):
            expected[i, j] = np.einsum("abc,abcd->d", padded[i:i + 3, j:j + 3], k)
    np.testing.assert_allclose(out[0], np.maximum(expected, 0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(45, 61), (36, 44), (7, 5)])
def test_transposed_conv_returns_to_the_exact_pre_pool_size_and_places_like_the_pool(size, rng):
    height, width = size
    small = (-(-height // 2), -(-width // 2))
    x = rng.normal(size=(2, *small, 3)).astype(np.float32)
    with tf.Graph().as_default():
        target = tf.zeros([2, height, width, 8])
        with tf.variable_scope("up"):
            y = layers.transposed_conv(tf.constant(x), 4, tf.shape(target), 2, CONFIG, bias=True)
        kernel, biases = tf.global_variables("up/weights")[0], tf.global_variables("up/biases")[0]
        assert kernel.shape.as_list() == [2, 2, 4, 3]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(biases.assign([0.5, -1.0, 0.0, 2.0]))
            k, b, out = sess.run([kernel, biases, y])
    assert out.shape == (2, height, width, 4)
    # Input pixel (i, j) lands on output (2i + a, 2j + b), the 2x2 window a
    # 'SAME' pool gathered into (i, j); the border window is cut, as the pool's is.
    expected = np.zeros((2, 2 * small[0], 2 * small[1], 4))
    for a in range(2):
        for c in range(2):
            expected[:, a::2, c::2] = np.einsum("nijc,dc->nijd", x, k[a, c])
    np.testing.assert_allclose(out, expected[:, :height, :width] + b, rtol=1e-4, atol=1e-5)


def test_transposed_conv_default_initialiser_uses_the_real_fan_in():
    # At stride 2 with a 2x2 kernel an output pixel sees one tap per input
    # channel: He et al.'s variance 2 / 256 here, not 2 / (2 * 2 * 128).
    with tf.Graph().as_default():
        x = tf.zeros([1, 2, 2, 256])
        layers.transposed_conv(x, 128, [1, 4, 4, 128], 2, CONFIG)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            k = sess.run(tf.global_variables()[0])
    assert k.shape == (2, 2, 128, 256)
    assert k.std() == pytest.approx(np.sqrt(2 / 256), rel=0.03)


def test_weight_decay_regularizer_matches_caffe_and_is_none_without_decay():
    assert layers.weight_decay_regularizer(CONFIG.replace(weight_decay=0.0)) is None
    with tf.Graph().as_default():
        w = tf.constant([[1.0, -2.0], [3.0, 0.5]])
        term = layers.weight_decay_regularizer(unet.UNetConfig(weight_decay=0.1))(w)
        with tf.Session() as sess:
            assert sess.run(term) == pytest.approx(0.1 * (1 + 4 + 9 + 0.25) / 2)


def test_static_and_tensor_switches():
    assert layers.static_bool(np.bool_(True)) is True and layers.static_bool(1) is None
    with tf.Graph().as_default():
        built = []
        out = layers.smart_cond(False, lambda: built.append("t") or tf.constant(1),
                                lambda: built.append("f") or tf.constant(2))
        assert built == ["f"]  # a Python bool builds one branch only
        flag = tf.placeholder(tf.bool, [])
        x = tf.ones([1000])
        dropped = layers.dropout(x, flag, 0.5, "drop")
        with tf.Session() as sess:
            assert sess.run(out) == 2
            assert np.array_equal(sess.run(dropped, {flag: False}), np.ones(1000))
            on = sess.run(dropped, {flag: True})
        assert set(np.unique(on)) == {0.0, 2.0}
        with pytest.raises(ValueError, match="is_training"):
            layers.as_bool_tensor(tf.constant(1.0), "is_training")


def test_batch_norm_at_inference_adds_no_updates():
    with tf.Graph().as_default():
        layers.batch_norm(tf.zeros([1, 3, 3, 2]), False, CONFIG)
        assert tf.get_collection(tf.GraphKeys.UPDATE_OPS) == []
        assert len(tf.moving_average_variables()) == 2


def _segnet_gradients(rng_seed=0):
    """Loss and every gradient of a small SegNet training step, with fixed weights."""
    rng = np.random.default_rng(rng_seed)
    images = rng.normal(0, 1, (2, 32, 48, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 32, 48)).astype(np.int32)
    with tf.Graph().as_default():
        logits, _ = model.segnet(tf.constant(images), 3, is_training=True,
                                 config=model.SegNetConfig(stages=2, width_multiplier=0.125))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits))
        variables = tf.trainable_variables()
        grads = tf.gradients(loss, variables)
        ops = tf.get_default_graph().get_operations()
        # Batch norms, and unpoolings made again in the backward pass.
        recomputed = (sum(op.type == "FusedBatchNormV3" for op in ops),
                      sum(op.type == "MaxPoolGradWithArgmax" and op.name.startswith("gradients")
                          for op in ops))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for v in variables:  # the same weights whatever the graph's op count
                v.load(np.random.default_rng(len(v.op.name)).normal(
                    0.5 if "gamma" in v.op.name else 0, 0.2, v.shape.as_list()), sess)
            values = sess.run([loss, *grads])
    return values, [v.op.name for v in variables], recomputed


def test_lean_backward_gives_the_same_gradients(monkeypatch):
    monkeypatch.setenv(LEAN_MEMORY_ENV, "0")
    kept, names, plain_bn_ops = _segnet_gradients()
    monkeypatch.setenv(LEAN_MEMORY_ENV, "1")
    recomputed, same_names, bn_ops = _segnet_gradients()
    assert names == same_names
    # The backward pass holds extra batch-norm ops only when recomputing: one
    # per convolution that reads a batch norm + ReLU output; and it unpools
    # again for the first convolution of each decoder stage but the deepest
    # (which unpools the encoder's pooled map, not a batch norm + ReLU).
    # Either graph unpools once per encoder pool for the pool's gradient.
    assert bn_ops[0] > plain_bn_ops[0]
    assert bn_ops[1] == plain_bn_ops[1] + 1
    for name, a, b in zip(["loss", *names], kept, recomputed):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6 * (np.abs(a).max() + 1e-12),
                                   err_msg=name)
    assert any(np.abs(g).max() > 0 for g in kept[1:])
