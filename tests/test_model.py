"""segnet_lib.model: the SegNet graph builder and its decoder variants.

Every graph test builds in a fresh ``tf.Graph()`` at a small size (tf-slim's
``vgg_test.py`` style). NumPy references are written here independently.
"""
import dataclasses

import numpy as np
import pytest

from segnet_lib import model
from segnet_lib._tf import tf

TINY = model.SegNetConfig(width_multiplier=0.125)


def _build(config=TINY, shape=(2, 45, 61, 3), num_classes=5, is_training=True, **kwargs):
    images = tf.placeholder(tf.float32, shape, name="images")
    logits, end_points = model.segnet(images, num_classes, is_training, config=config, **kwargs)
    return images, logits, end_points


# --------------------------------------------------------------------------
# Hand counts
# --------------------------------------------------------------------------

def _expected_segnet_params(num_classes, width=1.0):
    f = lambda n: max(1, int(round(n * width)))  # noqa: E731
    enc = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
           (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
    dec = [(512, 512)] * 5 + [(512, 256), (256, 256), (256, 256), (256, 128), (128, 128),
                              (128, 64), (64, 64)]
    total = 0
    for cin, cout in enc + dec:
        cin = 3 if cin == 3 else f(cin)
        cout = f(cout)
        total += 9 * cin * cout + cout + 2 * cout  # kernel, bias, BN gamma and beta
    return total + 9 * f(64) * num_classes + num_classes  # conv1_1_D: no batch norm


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------

def test_config_is_frozen_and_validated():
    config = model.SegNetConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.variant = "bayesian"
    assert config.replace(variant="bayesian").variant == "bayesian"
    assert config.variant == "segnet" and config.decoder == "unpool"
    for bad in [dict(variant="unet"), dict(decoder="deconv2"), dict(width_multiplier=0),
                dict(dropout_rate=1.0), dict(batch_norm_epsilon=1e-6), dict(unpool_method="x"),
                dict(weight_decay=-1.0), dict(batch_norm_decay=1.0)]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            model.SegNetConfig(**bad)


# --------------------------------------------------------------------------
# Full SegNet
# --------------------------------------------------------------------------

def test_full_segnet_has_29455125_parameters_for_21_classes():
    with tf.Graph().as_default():
        _build(model.SegNetConfig(), shape=(None, 64, 64, 3), num_classes=21)
        n = model.count_parameters()
    # The paper's 29.5M; also derived layer by layer above.
    assert n == 29_455_125 == _expected_segnet_params(21)


@pytest.mark.parametrize("num_classes, width", [(2, 0.25), (11, 0.5)])
def test_parameter_count_follows_width_and_classes(num_classes, width):
    with tf.Graph().as_default():
        _build(model.SegNetConfig(width_multiplier=width), shape=(1, 32, 32, 3),
               num_classes=num_classes)
        assert model.count_parameters("segnet") == _expected_segnet_params(num_classes, width)


def test_logits_shape_end_points_and_variable_names_on_odd_size():
    with tf.Graph().as_default():
        images, logits, end_points = _build(shape=(2, 45, 61, 3))
        assert logits.shape.as_list() == [2, 45, 61, 5]
        convs = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                 "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
        decoder = [c + "_D" for c in reversed(convs)]
        names = list(end_points)
        assert [n for n in names if n.startswith("conv")] == convs + decoder
        assert names[-1] == "logits"
        # Every unpooling restores the exact pre-pool size: 45 -> 23 -> 12 -> 6 -> 3 -> 2.
        for stage, size in zip(range(1, 6), [(45, 61), (23, 31), (12, 16), (6, 8), (3, 4)]):
            assert end_points[f"upsample{stage}"].shape.as_list()[1:3] == list(size)
            assert end_points[f"pool{stage}_argmax"].dtype == tf.int64
        assert end_points["pool5"].shape.as_list()[1:3] == [2, 2]
        variables = {v.op.name for v in tf.global_variables()}
        for name in ["segnet/conv1_1/weights", "segnet/conv1_1/biases",
                     "segnet/conv1_1/BatchNorm/gamma", "segnet/conv1_1/BatchNorm/beta",
                     "segnet/conv1_1/BatchNorm/moving_mean",
                     "segnet/conv1_1/BatchNorm/moving_variance", "segnet/conv1_1_D/weights",
                     "segnet/conv1_1_D/biases"]:
            assert name in variables
        assert not any(v.startswith("segnet/conv1_1_D/BatchNorm") for v in variables)
        moving = {v.op.name for v in tf.moving_average_variables()}
        assert "segnet/conv5_3_D/BatchNorm/moving_mean" in moving
        assert not any("moving" in v.op.name for v in tf.trainable_variables())
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out = sess.run(logits, {images: np.random.default_rng(0).random((2, 45, 61, 3))})
        assert out.shape == (2, 45, 61, 5) and np.isfinite(out).all()


def test_dynamic_batch_and_size_and_reuse_adds_nothing():
    with tf.Graph().as_default():
        images, logits, _ = _build(shape=(None, None, None, 3), is_training=True)
        counts = lambda: (len(tf.global_variables()), len(tf.get_collection(  # noqa: E731
            tf.GraphKeys.UPDATE_OPS)), len(tf.losses.get_regularization_losses()))
        before = counts()
        eval_logits, _ = model.segnet(images, 5, is_training=False, config=TINY, reuse=True)
        assert counts() == before
        assert logits.shape.as_list() == [None, None, None, 5]
        rng = np.random.default_rng(1)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for shape in [(1, 33, 47, 3), (3, 32, 32, 3), (2, 7, 5, 3)]:
                out = sess.run(eval_logits, {images: rng.random(shape)})
                assert out.shape == shape[:3] + (5,)


def test_wrong_inputs_raise():
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match="images must be"):
            model.segnet(tf.zeros([4, 32, 3]), 5, True, config=TINY)
        with pytest.raises(ValueError, match="channel"):
            model.segnet(tf.placeholder(tf.float32, [1, 32, 32, None]), 5, True, config=TINY)
        with pytest.raises(ValueError, match="num_classes"):
            model.segnet(tf.zeros([1, 32, 32, 3]), 0, True, config=TINY)
        with pytest.raises(ValueError, match="is_training"):
            model.segnet(tf.zeros([1, 32, 32, 3]), 2, tf.constant(1.0), config=TINY)


def test_weight_decay_terms_match_numpy():
    config = TINY.replace(weight_decay=1e-3)
    with tf.Graph().as_default():
        _build(config, shape=(1, 16, 16, 3))
        losses = tf.losses.get_regularization_losses()
        kernels = [v for v in tf.trainable_variables() if v.op.name.endswith("/weights")]
        assert len(losses) == len(kernels) == 26
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            total, values = sess.run([tf.add_n(losses), kernels])
        assert np.isclose(total, 1e-3 * sum((w.astype(np.float64) ** 2).sum() / 2 for w in values),
                          rtol=1e-5)
    with tf.Graph().as_default():
        _build(TINY.replace(weight_decay=0.0), shape=(1, 16, 16, 3))
        assert tf.losses.get_regularization_losses() == []


def test_batch_norm_training_vs_inference_with_a_bool_tensor():
    config = TINY.replace(batch_norm_decay=0.5)
    with tf.Graph().as_default():
        training = tf.placeholder(tf.bool, [])
        images, logits, end_points = _build(config, shape=(4, 16, 16, 3), is_training=training)
        updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        assert len(updates) == 2 * 25  # mean and variance of every batch-normed conv
        moving_mean = tf.global_variables("segnet/conv1_1/BatchNorm/moving_mean")[0]
        kernel = tf.global_variables("segnet/conv1_1/weights")[0]
        bias = tf.global_variables("segnet/conv1_1/biases")[0]
        x = np.random.default_rng(2).normal(3.0, 2.0, (4, 16, 16, 3)).astype(np.float32)
        pre_bn = tf.nn.bias_add(tf.nn.conv2d(images, kernel, [1, 1, 1, 1], "SAME"), bias)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            # Inference: no change to the moving statistics, deterministic output.
            a, _ = sess.run([logits, updates], {images: x, training: False})
            assert np.allclose(sess.run(moving_mean), 0.0)
            b = sess.run(logits, {images: x, training: False})
            assert np.array_equal(a, b)
            # Training: the moving mean moves halfway to the batch mean.
            batch_mean = sess.run(pre_bn, {images: x}).mean(axis=(0, 1, 2))
            sess.run(updates, {images: x, training: True})
            assert np.allclose(sess.run(moving_mean), 0.5 * batch_mean, rtol=1e-4, atol=1e-5)
            # Batch statistics normalise conv1_1 in training: mean 0 before beta (0).
            conv1 = sess.run(end_points["conv1_1"], {images: x, training: True})
            assert not np.allclose(conv1, sess.run(end_points["conv1_1"],
                                                   {images: x, training: False}))


def test_python_bool_is_training_false_adds_no_update_ops():
    with tf.Graph().as_default():
        _build(is_training=False)
        assert tf.get_collection(tf.GraphKeys.UPDATE_OPS) == []


def test_a_training_step_reduces_the_loss(loss_falls):
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        rng = np.random.default_rng(3)
        x = rng.random((2, 32, 32, 3)).astype(np.float32)
        y = (x[..., 0] > 0.5).astype(np.int32)  # a label the net can read off the input
        images, logits, _ = _build(shape=(2, 32, 32, 3), num_classes=2)
        first, last = loss_falls(images, logits, x, y)
    # Every layer gets gradients (unpooling included) and the loss falls.
    assert last < 0.85 * first


# --------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------

def test_segnet_basic_is_four_stages_of_64_features_with_7x7_kernels():
    with tf.Graph().as_default():
        _, logits, end_points = _build(model.SegNetConfig(variant="segnet_basic"),
                                       shape=(1, 45, 61, 3), num_classes=11)
        assert logits.shape.as_list() == [1, 45, 61, 11]
        kernels = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()
                   if v.op.name.endswith("/weights")}
        assert kernels == {
            "segnet/conv1/weights": [7, 7, 3, 64], "segnet/conv2/weights": [7, 7, 64, 64],
            "segnet/conv3/weights": [7, 7, 64, 64], "segnet/conv4/weights": [7, 7, 64, 64],
            "segnet/conv4_D/weights": [7, 7, 64, 64], "segnet/conv3_D/weights": [7, 7, 64, 64],
            "segnet/conv2_D/weights": [7, 7, 64, 64], "segnet/conv1_D/weights": [7, 7, 64, 64],
            "segnet/conv_classifier/weights": [1, 1, 64, 11]}
        biases = [v.op.name for v in tf.trainable_variables() if v.op.name.endswith("/biases")]
        assert biases == ["segnet/conv_classifier/biases"]
        assert [k for k in end_points if k.startswith("pool") and "_" not in k] == [
            "pool1", "pool2", "pool3", "pool4"]
        # 7*7*3*64 + 7 convs of 7*7*64*64, batch norm on 8, a 1x1 classifier with bias.
        expected = 49 * 3 * 64 + 7 * 49 * 64 * 64 + 8 * 2 * 64 + 64 * 11 + 11
        assert model.count_parameters() == expected  # about 1.42M, the paper's 1.425M


def test_segnet_basic_decoder_has_no_relu():
    with tf.Graph().as_default():
        _, _, end_points = _build(model.SegNetConfig(variant="segnet_basic", width_multiplier=0.25),
                                  shape=(1, 16, 16, 3), is_training=False)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            enc, dec = sess.run([end_points["conv1"], end_points["conv4_D"]],
                                {"images:0": np.random.default_rng(4).random((1, 16, 16, 3))})
        assert enc.min() >= 0 and dec.min() < 0


def test_bayesian_dropout_places_and_monte_carlo_switch():
    config = TINY.replace(variant="bayesian")
    with tf.Graph().as_default():
        images, logits, end_points = _build(config, shape=(1, 32, 32, 3), is_training=False)
        mc_logits, _ = model.segnet(images, 5, False, config=config, reuse=True, mc_dropout=True)
        assert [k for k in end_points if k.endswith("_dropout")] == [
            "pool3_dropout", "pool4_dropout", "pool5_dropout",
            "conv5_1_D_dropout", "conv4_1_D_dropout", "conv3_1_D_dropout"]
        # The dropout in the decoder comes right before the next unpooling.
        names = list(end_points)
        assert names[names.index("conv5_1_D_dropout") + 1] == "upsample4"
        x = np.random.default_rng(5).random((1, 32, 32, 3))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            a, b = (sess.run(logits, {images: x}) for _ in range(2))
            c, d = (sess.run(mc_logits, {images: x}) for _ in range(2))
        assert np.array_equal(a, b)          # test time: deterministic
        assert not np.allclose(c, d)         # MC dropout: a new sample each run
    with tf.Graph().as_default():
        _, _, end_points = _build(TINY, shape=(1, 32, 32, 3), mc_dropout=True)
        assert not any(k.endswith("_dropout") for k in end_points)


def test_bayesian_has_the_same_parameters_as_segnet():
    with tf.Graph().as_default():
        _build(model.SegNetConfig(variant="bayesian"), shape=(1, 32, 32, 3), num_classes=21)
        assert model.count_parameters() == _expected_segnet_params(21)


def test_layer_table_lists_shapes_and_parameters():
    with tf.Graph().as_default():
        _, _, end_points = _build(model.SegNetConfig(), shape=(None, 64, 96, 3), num_classes=21)
        table = model.layer_table(end_points)
    assert list(table.columns) == ["name", "kind", "output_shape", "params", "dtype"]
    assert table["params"].sum() == 29_455_125
    row = table.set_index("name").loc["conv1_1"]
    assert row["output_shape"] == (None, 64, 96, 64)
    assert row["params"] == 3 * 3 * 3 * 64 + 64 + 2 * 64
    assert table.set_index("name").loc["pool5", "output_shape"] == (None, 2, 3, 512)
    assert table.set_index("name").loc["pool5_argmax", "dtype"] == "int64"


# --------------------------------------------------------------------------
# Decoder variants (the paper's Table 1): SegNet-Basic, FCN-Basic,
# FCN-Basic-NoAddition, Bilinear-Interpolation
# --------------------------------------------------------------------------

def np_bilinear_2x(x):
    """2x bilinear upsampling, half-pixel centres, edge pixels repeated.

    Output pixel p sits at input coordinate (p + 0.5) / 2 - 0.5.
    """
    def along(a, axis):
        n = a.shape[axis]
        pos = (np.arange(2 * n) + 0.5) / 2 - 0.5
        lo = np.clip(np.floor(pos).astype(int), 0, n - 1)
        hi = np.clip(lo + 1, 0, n - 1)
        frac = np.clip(pos - np.floor(pos), 0, 1)
        frac = np.where(pos < 0, 0.0, frac)  # left of the first centre: the edge value
        shape = [1] * a.ndim
        shape[axis] = -1
        frac = frac.reshape(shape)
        return np.take(a, lo, axis) * (1 - frac) + np.take(a, hi, axis) * frac
    return along(along(x, 1), 2)


def _expected_basic_params(decoder, num_classes, features=64, upsample_kernel=8):
    """SegNet-Basic's encoder (no biases, batch norm) plus each decoder, by hand."""
    f, k = features, num_classes
    encoder = 49 * 3 * f + 3 * 49 * f * f + 4 * 2 * f
    score = f * k + k  # a 1x1 convolution to the classes, with a bias
    deconv = upsample_kernel ** 2 * k * k  # one transposed convolution, no bias
    upconv = 2 * 2 * f * f + f  # U-Net's 2x2 up-convolution, with a bias
    return encoder + {
        "unpool": 4 * (49 * f * f + 2 * f) + score,  # 7x7 decoder convs + BN, classifier
        "deconv_add": 4 * score + 4 * deconv,        # score_pool4..1, 4 upsamplings
        "deconv": score + 4 * deconv,
        "bilinear": score,
        # Each decoder conv reads the concatenation: 2f features in, f out.
        "unet": 4 * upconv + 4 * (49 * 2 * f * f + 2 * f) + score,
    }[decoder]


# Table 1 of the paper (CamVid, 11 classes), millions of parameters.
PAPER_PARAMS = {"unpool": 1.425, "deconv_add": 0.65, "deconv": 0.65, "bilinear": 0.625}


def test_decoders_are_the_four_of_the_study():
    assert set(model.DECODERS) >= {"unpool", "deconv_add", "deconv", "bilinear"}
    assert model.DECODER_FAMILIES["unpool"] == "segnet"
    assert {model.DECODER_FAMILIES[d] for d in ("deconv_add", "deconv", "bilinear")} == {"fcn"}
    for bad in (3, 5, 2, 4.0, True):
        with pytest.raises(ValueError, match="upsample_kernel"):
            model.SegNetConfig(upsample_kernel=bad)


@pytest.mark.parametrize("decoder", ["unpool", "deconv_add", "deconv", "bilinear"])
def test_decoder_parameter_counts_match_hand_count_and_paper(decoder):
    config = model.SegNetConfig(variant="segnet_basic", decoder=decoder)
    with tf.Graph().as_default():
        _build(config, shape=(1, 32, 32, 3), num_classes=11)
        n = model.count_parameters()
    assert n == _expected_basic_params(decoder, 11)
    # The paper's counts (Caffe, rounded) agree within 2%.
    assert abs(n / 1e6 - PAPER_PARAMS[decoder]) / PAPER_PARAMS[decoder] < 0.02


@pytest.mark.parametrize("decoder", ["deconv_add", "deconv", "bilinear"])
@pytest.mark.parametrize("width, num_classes, kernel", [(0.25, 5, 4), (0.5, 21, 8)])
def test_fcn_parameter_counts_follow_width_classes_and_kernel(decoder, width, num_classes, kernel):
    config = model.SegNetConfig(variant="segnet_basic", decoder=decoder, width_multiplier=width,
                                upsample_kernel=kernel)
    with tf.Graph().as_default():
        _build(config, shape=(1, 32, 32, 3), num_classes=num_classes)
        n = model.count_parameters()
    assert n == _expected_basic_params(decoder, num_classes, int(64 * width), kernel)


@pytest.mark.parametrize("decoder", ["deconv_add", "deconv", "bilinear"])
def test_fcn_decoders_shapes_names_on_odd_size(decoder):
    config = TINY.replace(variant="segnet_basic", decoder=decoder)
    with tf.Graph().as_default():
        images, logits, end_points = _build(config, shape=(2, 45, 61, 3), num_classes=5)
        assert logits.shape.as_list() == [2, 45, 61, 5]
        # No decoder convolutions; the classes are scored at the bottleneck.
        assert not any(k.endswith("_D") or k == "conv_classifier" for k in end_points)
        scores = sorted(k for k in end_points if k.startswith("score_pool"))
        assert scores == (["score_pool1", "score_pool2", "score_pool3", "score_pool4"]
                          if decoder == "deconv_add" else ["score_pool4"])
        for stage, size in zip(range(1, 5), [(45, 61), (23, 31), (12, 16), (6, 8)]):
            assert end_points[f"upsample{stage}"].shape.as_list() == [2, *size, 5]
        kernels = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()
                   if "upsample" in v.op.name}
        if decoder == "bilinear":
            assert kernels == {}  # nothing learned in the upsampling
        else:
            assert kernels == {f"segnet/upsample{s}/weights": [8, 8, 5, 5] for s in range(1, 5)}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out = sess.run(logits, {images: np.random.default_rng(6).random((2, 45, 61, 3))})
        assert out.shape == (2, 45, 61, 5) and np.isfinite(out).all()


@pytest.mark.parametrize("decoder", ["deconv_add", "deconv", "bilinear"])
def test_fcn_decoders_dynamic_size_reuse_and_gradients(decoder, rng):
    config = TINY.replace(variant="segnet_basic", decoder=decoder)
    with tf.Graph().as_default():
        images, logits, _ = _build(config, shape=(None, None, None, 3), num_classes=3)
        before = len(tf.global_variables()), len(tf.losses.get_regularization_losses())
        eval_logits, _ = model.segnet(images, 3, False, config=config, reuse=True)
        assert (len(tf.global_variables()), len(tf.losses.get_regularization_losses())) == before
        # Weight decay covers the learned upsampling kernels too.
        decayed = {t.op.name.split("/")[1] for t in tf.losses.get_regularization_losses()}
        assert ("upsample1" in decayed) == (decoder != "bilinear")
        grads = tf.gradients(tf.reduce_sum(logits ** 2), tf.trainable_variables())
        assert all(g is not None for g in grads)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for shape in [(1, 45, 61, 3), (2, 32, 40, 3)]:
                out = sess.run(eval_logits, {images: rng.random(shape)})
                assert out.shape == shape[:3] + (3,)


def test_bilinear_kernel_deconv_and_resize_agree_with_numpy(rng):
    x = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    expected = np_bilinear_2x(x.astype(np.float64))
    kernel = model.bilinear_upsample_kernel(8, 3)
    assert kernel.shape == (8, 8, 3, 3)
    # Diagonal in the channels, and each input pixel's weights sum to 4 (2x2 outputs).
    assert np.count_nonzero(kernel[:, :, 0, 1]) == 0
    assert np.isclose(kernel[:, :, 1, 1].sum(), 4.0)
    with tf.Graph().as_default():
        up = tf.nn.conv2d_transpose(tf.constant(x), tf.constant(kernel), [2, 12, 14, 3],
                                    strides=[1, 2, 2, 1], padding="SAME")
        resized = tf.image.resize_bilinear(tf.constant(x), [12, 14], half_pixel_centers=True)
        with tf.Session() as sess:
            up, resized = sess.run([up, resized])
    np.testing.assert_allclose(resized, expected, atol=1e-5)
    # Away from the border (zero padding there) the deconv is the same interpolation.
    np.testing.assert_allclose(up[:, 1:-1, 1:-1], expected[:, 1:-1, 1:-1], atol=1e-5)
    with pytest.raises(ValueError, match="size"):
        model.bilinear_upsample_kernel(5, 1)


@pytest.mark.parametrize("decoder", ["deconv_add", "deconv", "bilinear"])
def test_fcn_decoder_stages_upsample_bilinearly_at_start_and_deconv_add_adds(decoder, rng):
    config = TINY.replace(variant="segnet_basic", decoder=decoder)
    with tf.Graph().as_default():
        images, _, end_points = _build(config, shape=(1, 32, 48, 3), num_classes=4,
                                       is_training=False)
        names = ["score_pool4", "upsample4", "upsample3"] + (
            ["score_pool3", "score_pool2"] if decoder == "deconv_add" else [])
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            v = dict(zip(names, sess.run([end_points[n] for n in names],
                                         {images: rng.random((1, 32, 48, 3))})))
    skip3 = v["score_pool3"] if decoder == "deconv_add" else 0.0
    skip2 = v["score_pool2"] if decoder == "deconv_add" else 0.0
    inner = (slice(None), slice(1, -1), slice(1, -1))
    np.testing.assert_allclose((v["upsample4"] - skip3)[inner],
                               np_bilinear_2x(v["score_pool4"])[inner], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose((v["upsample3"] - skip2)[inner],
                               np_bilinear_2x(v["upsample4"])[inner], rtol=1e-4, atol=1e-4)
    if decoder == "deconv_add":
        assert np.abs(skip2).max() > 0.1  # the addition is really there


def test_unpool_decoder_is_unchanged_by_the_new_options():
    # upsample_kernel only concerns the transposed convolutions.
    with tf.Graph().as_default():
        _build(model.SegNetConfig(variant="segnet_basic", upsample_kernel=4), shape=(1, 32, 32, 3),
               num_classes=11)
        assert model.count_parameters() == _expected_basic_params("unpool", 11)
        assert not [v for v in tf.trainable_variables() if "upsample" in v.op.name]


# --------------------------------------------------------------------------
# The 'unet' decoder on SegNet's encoders, and the one builder
# --------------------------------------------------------------------------

@pytest.mark.parametrize("width, num_classes", [(1.0, 11), (0.25, 5)])
def test_unet_decoder_on_segnet_basic_has_the_hand_counted_parameters(width, num_classes):
    config = model.SegNetConfig(variant="segnet_basic", decoder="unet", width_multiplier=width)
    with tf.Graph().as_default():
        _build(config, shape=(1, 32, 32, 3), num_classes=num_classes)
        n = model.count_parameters()
    assert n == _expected_basic_params("unet", num_classes, int(64 * width))
    if width == 1.0:
        assert n == 2_284_683  # the paper's SegNet-Basic setting: 64 features, 11 classes


def test_unet_decoder_upconvolves_and_concatenates_on_odd_sizes(rng):
    config = TINY.replace(variant="segnet_basic", decoder="unet")
    with tf.Graph().as_default():
        images, logits, end_points = _build(config, shape=(2, 45, 61, 3), num_classes=5)
        assert logits.shape.as_list() == [2, 45, 61, 5]
        assert list(end_points) == [
            "conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "conv4", "pool4",
            "upconv4", "concat4", "conv4_D", "upconv3", "concat3", "conv3_D", "upconv2", "concat2",
            "conv2_D", "upconv1", "concat1", "conv1_D", "conv_classifier", "logits"]
        for stage, size in zip(range(1, 5), [(45, 61), (23, 31), (12, 16), (6, 8)]):
            assert end_points[f"upconv{stage}"].shape.as_list() == [2, *size, 8]
            assert end_points[f"concat{stage}"].shape.as_list() == [2, *size, 16]
        kernels = {v.op.name: v.shape.as_list() for v in tf.trainable_variables()
                   if "upconv" in v.op.name}
        assert kernels == {**{f"segnet/upconv{s}/weights": [2, 2, 8, 8] for s in range(1, 5)},
                           **{f"segnet/upconv{s}/biases": [8] for s in range(1, 5)}}
        decayed = {t.op.name.split("/")[1] for t in tf.losses.get_regularization_losses()}
        assert {"upconv1", "upconv4"} <= decayed
        grads = tf.gradients(tf.reduce_sum(logits ** 2), tf.trainable_variables())
        assert all(g is not None for g in grads)
        eval_logits, _ = model.segnet(images, 5, False, config=config, reuse=True)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            out = sess.run(eval_logits, {images: rng.random((2, 45, 61, 3))})
        assert out.shape == (2, 45, 61, 5) and np.isfinite(out).all()


def test_unet_decoder_on_full_segnet_builds():
    with tf.Graph().as_default():
        _, logits, end_points = _build(TINY.replace(decoder="unet"), shape=(1, 45, 61, 3))
        assert logits.shape.as_list() == [1, 45, 61, 5]
        # concat5 joins conv5_3 (64 at width 1/8) with as many upsampled features.
        assert end_points["concat5"].shape.as_list() == [1, 3, 4, 128]
        assert end_points["concat1"].shape.as_list() == [1, 45, 61, 16]


@pytest.mark.parametrize("decoder", ["deconv_add", "deconv", "bilinear", "unet"])
def test_only_the_unpooling_decoder_keeps_pooling_indices(decoder, rng):
    config = TINY.replace(variant="segnet_basic")
    with tf.Graph().as_default():
        images, _, with_indices = _build(config, shape=(1, 45, 61, 3), is_training=False)
        _, without = model.segnet(images, 5, False, config.replace(decoder=decoder),
                                  scope="other")
        assert [k for k in with_indices if k.endswith("_argmax")] == [
            f"pool{s}_argmax" for s in range(1, 5)]
        assert not any(k.endswith("_argmax") for k in without)
        assert without["pool1"].op.type == "MaxPool"
        assert with_indices["pool1"].op.type == "MaxPoolWithArgmax"
        # Same windows either way.
        pooled = model.max_pool_with_argmax(with_indices["conv1"])[0]
        plain = tf.nn.max_pool(with_indices["conv1"], [1, 2, 2, 1], [1, 2, 2, 1], "SAME")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            a, b = sess.run([pooled, plain], {images: rng.random((1, 45, 61, 3))})
        np.testing.assert_array_equal(a, b)


def test_build_dispatches_on_the_config_type():
    config = TINY.replace(variant="segnet_basic")
    plan = model.network(config)
    assert plan.decoder == "unpool" and plan.scope == "segnet"
    # The width is applied to the table, not to the classes.
    assert [s[0].features for s in plan.architecture.encoder] == [8, 8, 8, 8]
    assert plan.architecture.classifier[0].features is None
    assert model.architecture("segnet_basic").encoder[0][0].features == 64
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [1, 32, 32, 3])
        a, points_a = model.build(x, 3, False, config)
        b, points_b = model.segnet(x, 3, False, config, reuse=True)
        assert list(points_a) == list(points_b) and a.op.name == "segnet/logits"
        with pytest.raises(ValueError, match="model config"):
            model.build(x, 3, False, {"variant": "segnet"})
        with pytest.raises(ValueError, match="SegNetConfig"):
            model.segnet(x, 3, False, config=object())


# --------------------------------------------------------------------------
# Fewer stages
# --------------------------------------------------------------------------

def test_two_stages_keep_the_outer_encoder_and_decoder_stages():
    config = TINY.replace(stages=2)
    with tf.Graph().as_default():
        _, logits, end_points = _build(config, shape=(2, 45, 61, 3))
        assert logits.shape.as_list() == [2, 45, 61, 5]
        assert list(end_points) == [
            "conv1_1", "conv1_2", "pool1", "pool1_argmax", "conv2_1", "conv2_2", "pool2",
            "pool2_argmax", "upsample2", "conv2_2_D", "conv2_1_D", "upsample1", "conv1_2_D",
            "conv1_1_D", "logits"]
        assert end_points["pool2"].shape.as_list() == [2, 12, 16, 16]
        kernels = {v.op.name.split("/")[1]: v.shape.as_list() for v in tf.trainable_variables()
                   if v.op.name.endswith("/weights")}
        # Width 0.125: 64 -> 8 and 128 -> 16 features; the decoder mirrors the encoder.
        assert kernels == {
            "conv1_1": [3, 3, 3, 8], "conv1_2": [3, 3, 8, 8], "conv2_1": [3, 3, 8, 16],
            "conv2_2": [3, 3, 16, 16], "conv2_2_D": [3, 3, 16, 16], "conv2_1_D": [3, 3, 16, 8],
            "conv1_2_D": [3, 3, 8, 8], "conv1_1_D": [3, 3, 8, 5]}
        # Kernels and biases of all 8, batch norm's gamma and beta on all but the classifier.
        expected = sum(np.prod(k) + k[-1] for k in kernels.values()) + 2 * (8 + 8 + 16 + 16 + 16 + 8 + 8)
        assert model.count_parameters() == expected


def test_all_stages_is_the_default_model():
    def variables(config):
        with tf.Graph().as_default():
            _build(config, shape=(1, 32, 32, 3))
            return [(v.op.name, v.shape.as_list()) for v in tf.global_variables()]

    assert variables(TINY.replace(stages=5)) == variables(TINY)
    assert model.architecture("segnet", 5) == model.architecture("segnet")


def test_fewer_stages_of_the_other_variants_and_decoders():
    with tf.Graph().as_default():
        _, _, end_points = _build(TINY.replace(variant="bayesian", stages=3), shape=(1, 32, 32, 3))
        assert [k for k in end_points if k.endswith("_dropout")] == [
            "pool3_dropout", "conv3_1_D_dropout"]
    with tf.Graph().as_default():
        _, logits, end_points = _build(model.SegNetConfig(variant="segnet_basic", stages=2,
                                                          width_multiplier=0.25),
                                       shape=(1, 30, 34, 3))
        assert logits.shape.as_list() == [1, 30, 34, 5]
        assert [k for k in end_points if k.startswith("conv")] == [
            "conv1", "conv2", "conv2_D", "conv1_D", "conv_classifier"]
    with tf.Graph().as_default():
        _, logits, end_points = _build(TINY.replace(decoder="deconv_add", stages=2),
                                       shape=(1, 30, 34, 3))
        assert logits.shape.as_list() == [1, 30, 34, 5]
        assert [k for k in end_points if k.startswith(("score", "upsample"))] == [
            "score_pool1", "score_pool2", "upsample2", "upsample1"]
    with tf.Graph().as_default():
        _, logits, end_points = _build(TINY.replace(decoder="unet", stages=2), shape=(1, 30, 34, 3))
        assert logits.shape.as_list() == [1, 30, 34, 5]
        assert end_points["concat2"].shape.as_list() == [1, 15, 17, 32]
        assert "upconv3" not in end_points


def test_stages_out_of_range_raise():
    for variant, bad in [("segnet", 0), ("segnet", 6), ("segnet", 2.0), ("segnet", True),
                         ("segnet_basic", 5)]:
        with pytest.raises(ValueError, match=f"stages={bad!r} must be None or an integer"):
            model.SegNetConfig(variant=variant, stages=bad)
    with pytest.raises(ValueError, match="from 1 to 4"):
        model.architecture("segnet_basic", 5)
