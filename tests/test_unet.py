"""segnet_lib.unet: U-Net through SegNet's builder.

tf-slim's ``vgg_test.py`` manner: each test builds in a fresh ``tf.Graph()`` at
a small size; the parameter counts are worked out here by hand.
"""
import dataclasses

import numpy as np
import pytest

from segnet_lib import model, unet
from segnet_lib._tf import tf

NARROW = unet.UNetConfig(base_features=8, depth=3)


def _build(config=NARROW, shape=(2, 32, 32, 3), num_classes=5, is_training=True, **kwargs):
    images = tf.placeholder(tf.float32, shape, name="images")
    logits, end_points = unet.unet(images, num_classes, is_training, config=config, **kwargs)
    return images, logits, end_points


def hand_count(in_channels, base, depth, num_classes, batch_norm):
    """U-Net's trainable parameters, layer by layer.

    conv(a, b) = 9ab + b (kernel, bias) without batch norm, 9ab + 2b (kernel,
    scale, offset) with it; up(a, b) = 4ab + b (2x2 up-convolution and bias);
    the 1x1 classifier has a bias and no batch norm.
    """
    def conv(a, b):
        return 9 * a * b + (2 * b if batch_norm else b)

    features = [base * 2 ** i for i in range(depth + 1)]
    total, previous = 0, in_channels
    for f in features[:-1]:                       # contracting path
        total += conv(previous, f) + conv(f, f)
        previous = f
    total += conv(features[-2], features[-1]) + conv(features[-1], features[-1])  # bottleneck
    for lower, f in zip(features[:0:-1], features[-2::-1]):  # expanding path, deepest first
        total += 4 * lower * f + f + conv(2 * f, f) + conv(f, f)
    return total + features[0] * num_classes + num_classes


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------

def test_config_is_frozen_and_validated():
    config = unet.UNetConfig()
    assert (config.depth, config.base_features, config.batch_norm) == (4, 64, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.depth = 3
    assert config.replace(depth=3).depth == 3
    for bad in [dict(depth=0), dict(depth=2.0), dict(base_features=0), dict(base_features=True),
                dict(batch_norm="yes"), dict(weight_decay=-1.0), dict(batch_norm_decay=1.0),
                dict(batch_norm_epsilon=1e-6)]:
        with pytest.raises(ValueError, match=f"UNetConfig.{next(iter(bad))}"):
            unet.UNetConfig(**bad)


# --------------------------------------------------------------------------
# The original U-Net
# --------------------------------------------------------------------------

def test_original_unet_has_31031810_parameters_for_two_classes():
    # 64 base features, 4 pools, no batch norm, RGB input, 2 classes, 'SAME' padding.
    with tf.Graph().as_default():
        _build(unet.UNetConfig(batch_norm=False), shape=(None, 64, 64, 3), num_classes=2)
        n = model.count_parameters("unet")
    assert n == 31_031_810 == hand_count(3, 64, 4, 2, batch_norm=False)
    # A greyscale input (the paper's microscopy) has 2 * 9 * 64 parameters fewer.
    with tf.Graph().as_default():
        _build(unet.UNetConfig(batch_norm=False), shape=(None, 64, 64, 1), num_classes=2)
        assert model.count_parameters() == 31_031_810 - 2 * 9 * 64


@pytest.mark.parametrize("base, depth, num_classes, batch_norm",
                         [(64, 4, 21, True), (8, 2, 5, True), (4, 1, 3, False), (16, 3, 4, False)])
def test_parameter_count_follows_depth_width_classes_and_batch_norm(base, depth, num_classes,
                                                                    batch_norm):
    config = unet.UNetConfig(base_features=base, depth=depth, batch_norm=batch_norm)
    with tf.Graph().as_default():
        _build(config, shape=(1, 32, 32, 3), num_classes=num_classes)
        assert model.count_parameters() == hand_count(3, base, depth, num_classes, batch_norm)


@pytest.mark.parametrize("shape", [(2, 32, 32, 3), (1, 64, 64, 3), (2, 36, 44, 3), (1, 45, 61, 3)])
def test_logits_shape_end_points_and_sizes(shape):
    with tf.Graph().as_default():
        images, logits, end_points = _build(NARROW, shape=shape, num_classes=5)
        assert logits.shape.as_list() == [shape[0], shape[1], shape[2], 5]
        assert list(end_points) == [
            "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "conv3_2",
            "pool3", "conv4_1", "conv4_2",
            "upconv3", "concat3", "conv3_1_D", "conv3_2_D", "upconv2", "concat2", "conv2_1_D",
            "conv2_2_D", "upconv1", "concat1", "conv1_1_D", "conv1_2_D", "conv_classifier",
            "logits"]
        height, width = shape[1:3]
        for stage in (1, 2, 3):
            features = 8 * 2 ** (stage - 1)
            # The up-convolution returns to the exact size of the map it joins.
            pre_pool = end_points[f"conv{stage}_2"].shape.as_list()
            assert pre_pool == [shape[0], height, width, features]
            assert end_points[f"upconv{stage}"].shape.as_list() == pre_pool
            assert end_points[f"concat{stage}"].shape.as_list() == pre_pool[:3] + [2 * features]
            assert end_points[f"conv{stage}_2_D"].shape.as_list() == pre_pool
            height, width = -(-height // 2), -(-width // 2)
        assert end_points["conv4_2"].shape.as_list() == [shape[0], height, width, 64]
        # U-Net pools without keeping indices.
        assert not any(name.endswith("_argmax") for name in end_points)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out = sess.run(logits, {images: np.random.default_rng(0).random(shape)})
        assert out.shape == shape[:3] + (5,) and np.isfinite(out).all()


def test_variable_names_with_and_without_batch_norm():
    with tf.Graph().as_default():
        _build(unet.UNetConfig(base_features=4, depth=2, batch_norm=False), num_classes=3)
        shapes = {v.op.name: v.shape.as_list() for v in tf.global_variables()}
    assert shapes["unet/conv1_1/weights"] == [3, 3, 3, 4]
    assert shapes["unet/conv3_2/weights"] == [3, 3, 16, 16]  # the bottleneck
    # The up-convolution halves the features: [2, 2, out, in], with a bias.
    assert shapes["unet/upconv2/weights"] == [2, 2, 8, 16] and shapes["unet/upconv2/biases"] == [8]
    assert shapes["unet/conv2_1_D/weights"] == [3, 3, 16, 8]  # reads the concatenation
    assert shapes["unet/conv_classifier/weights"] == [1, 1, 4, 3]
    assert not any("BatchNorm" in name for name in shapes)
    with tf.Graph().as_default():
        _build(unet.UNetConfig(base_features=4, depth=2, batch_norm=True), num_classes=3)
        names = {v.op.name for v in tf.global_variables()}
        assert len(tf.get_collection(tf.GraphKeys.UPDATE_OPS)) == 2 * 10  # 10 batch-normed convs
        assert len(tf.losses.get_regularization_losses()) == 10 + 2 + 1  # kernels, upconvs, classifier
    assert "unet/conv1_1/BatchNorm/moving_mean" in names
    assert "unet/conv1_1/biases" not in names  # the batch norm's offset replaces it
    assert "unet/upconv1/biases" in names and "unet/conv_classifier/biases" in names


def test_reuse_adds_no_variables_and_inference_runs_on_any_size(rng):
    with tf.Graph().as_default():
        images, _, _ = _build(NARROW, shape=(None, None, None, 3), is_training=True)
        counts = lambda: (len(tf.global_variables()), len(tf.get_collection(  # noqa: E731
            tf.GraphKeys.UPDATE_OPS)), len(tf.losses.get_regularization_losses()))
        before = counts()
        eval_logits, _ = unet.unet(images, 5, is_training=False, config=NARROW, reuse=True)
        assert counts() == before
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for shape in [(1, 33, 47, 3), (3, 32, 32, 3), (2, 7, 5, 3)]:
                a = sess.run(eval_logits, {images: rng.random(shape)})
                assert a.shape == shape[:3] + (5,)
            x = rng.random((1, 36, 44, 3))
            assert np.array_equal(sess.run(eval_logits, {images: x}),
                                  sess.run(eval_logits, {images: x}))


def test_concatenation_is_the_upsampled_map_then_the_encoder_map(rng):
    with tf.Graph().as_default():
        images, _, end_points = _build(NARROW, shape=(1, 36, 44, 3), is_training=False)
        assert tf.get_collection(tf.GraphKeys.UPDATE_OPS) == []  # is_training=False: none
        names = ["upconv2", "conv2_2", "concat2", "conv3_2"]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            v = dict(zip(names, sess.run([end_points[n] for n in names],
                                         {images: rng.random((1, 36, 44, 3))})))
    np.testing.assert_array_equal(v["concat2"][..., :16], v["upconv2"])
    np.testing.assert_array_equal(v["concat2"][..., 16:], v["conv2_2"])
    assert v["upconv2"].min() >= 0  # the up-convolution's ReLU


def test_a_training_step_reduces_the_loss(loss_falls):
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        rng = np.random.default_rng(3)
        x = rng.random((2, 32, 32, 3)).astype(np.float32)
        y = (x[..., 0] > 0.5).astype(np.int32)
        images, logits, _ = _build(unet.UNetConfig(base_features=4, depth=2), shape=(2, 32, 32, 3),
                                   num_classes=2)
        grads = tf.gradients(tf.reduce_sum(logits), tf.trainable_variables())
        assert all(g is not None for g in grads)  # through every upconv and concatenation
        first, last = loss_falls(images, logits, x, y)
    assert last < 0.85 * first


# --------------------------------------------------------------------------
# One builder
# --------------------------------------------------------------------------

def test_unet_is_the_model_builder_with_a_table_and_the_unet_decoder():
    plan = model.network(NARROW)
    assert plan.decoder == "unet" and plan.scope == unet.DEFAULT_SCOPE == "unet"
    assert plan.architecture == unet.architecture(NARROW)
    assert [s.name for s in plan.architecture.bottleneck] == ["conv4_1", "conv4_2"]
    assert [[s.name for s in stage] for stage in plan.architecture.decoder] == [
        ["conv3_1_D", "conv3_2_D"], ["conv2_1_D", "conv2_2_D"], ["conv1_1_D", "conv1_2_D"]]
    # model.build on a UNetConfig is U-Net, and gives the same graph as unet().
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [1, 32, 32, 3])
        a, points_a = unet.unet(x, 3, False, NARROW)
        b, points_b = model.build(x, 3, False, NARROW, reuse=True)
        assert list(points_a) == list(points_b)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out_a, out_b = sess.run([a, b], {x: np.ones((1, 32, 32, 3))})
    np.testing.assert_array_equal(out_a, out_b)
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="UNetConfig"):
            unet.unet(tf.zeros([1, 8, 8, 3]), 2, True, config=model.SegNetConfig())
        with pytest.raises(ValueError, match="num_classes"):
            unet.unet(tf.zeros([1, 8, 8, 3]), 0, True)


def test_layer_table_counts_the_upconvolutions():
    config = unet.UNetConfig(base_features=4, depth=2, batch_norm=False)
    with tf.Graph().as_default():
        _, _, end_points = _build(config, shape=(None, 16, 16, 3), num_classes=3)
        table = model.layer_table(end_points).set_index("name")
    assert table["params"].sum() == hand_count(3, 4, 2, 3, batch_norm=False)
    assert table.loc["upconv2", "kind"] == "upsample" and table.loc["concat2", "kind"] == "concat"
    assert table.loc["upconv2", "params"] == 2 * 2 * 16 * 8 + 8
    assert table.loc["concat1", "output_shape"] == (None, 16, 16, 8)
