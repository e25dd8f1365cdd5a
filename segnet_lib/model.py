"""SegNet, SegNet-Basic and Bayesian SegNet as TF1 graphs.

The builder follows tf-slim's ``nets/vgg.py`` and DeepLab's ``model.py``::

    logits, end_points = segnet(images, num_classes=21, is_training=True)

Only ``tf.get_variable`` and ``tf.nn`` ops are used (no Keras), so the same code
reads like, and runs on, TensorFlow 1.15. Layer names follow the authors' Caffe
model: ``conv1_1`` ... ``conv5_3`` in the encoder, ``conv5_3_D`` ... ``conv1_1_D``
in the decoder, where ``conv1_1_D`` produces the class scores.

Variables of one convolution live under ``<scope>/<layer>/``: ``weights``,
``biases`` and ``BatchNorm/{gamma,beta,moving_mean,moving_variance}``. For 21
classes the full model has 29,455,125 trainable parameters: every convolution
has a bias, every one except the classifier ``conv1_1_D`` is followed by batch
norm (a scale and an offset per channel), as in the Caffe prototxt.

The decoder upsamples with the encoder's max-pooling indices
(:func:`segnet_lib.unpool.max_unpool`, re-exported here with
:func:`~segnet_lib.unpool.max_pool_with_argmax`). That is
``SegNetConfig.decoder='unpool'``. The same
builder also makes the decoders the paper compares SegNet with (its Table 1,
sec. 3.1), on any encoder (see :data:`DECODERS`):

* ``'unpool'``: SegNet (SegNet-Basic with ``variant='segnet_basic'``): index
  unpooling, then the learned decoder convolutions.
* ``'deconv_add'``: FCN-Basic. The deepest encoder output is scored by a 1x1
  convolution into ``num_classes`` maps (the paper's dimensionality reduction);
  each decoder stage upsamples them with a learned transposed convolution
  (``upsample_kernel`` square, initialised to bilinear interpolation) and adds a
  1x1 score of the encoder's pooled map of the same resolution. No decoder
  convolutions.
* ``'deconv'``: FCN-Basic-NoAddition, the same without the additions.
* ``'bilinear'``: Bilinear-Interpolation, the scores upsampled by fixed
  bilinear interpolation: nothing is learned after the encoder but the 1x1
  scoring.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple

import numpy as np
import pandas as pd

from segnet_lib._tf import tf
# Re-exported: the builder's pooling and unpooling, defined with their gradient
# in segnet_lib.unpool.
from segnet_lib.unpool import UNPOOL_METHODS, max_pool_with_argmax, max_unpool

__all__ = [
    "SegNetConfig", "VARIANTS", "DECODERS", "UNPOOL_METHODS", "segnet",
    "max_pool_with_argmax", "max_unpool", "count_parameters", "layer_table",
    "architecture", "LayerSpec", "bilinear_upsample_kernel", "DECODER_FAMILIES",
]

VARIANTS = ("segnet", "segnet_basic", "bayesian")

# Scope names, as module constants (tf-slim style).
DEFAULT_SCOPE = "segnet"
WEIGHTS_NAME = "weights"
BIASES_NAME = "biases"
BATCH_NORM_SCOPE = "BatchNorm"


@dataclasses.dataclass(frozen=True)
class SegNetConfig:
    """Options of the SegNet builder (immutable; change with :meth:`replace`).

    Attributes:
        variant: ``'segnet'`` (VGG16 encoder, 13 + 13 convolutions),
            ``'segnet_basic'`` (4 + 4 convolutions of 64 features, 7x7 kernels) or
            ``'bayesian'`` (``'segnet'`` with dropout in the central encoder and
            decoder stages).
        width_multiplier: scales every layer's number of features (not the
            classes), e.g. 0.25 for a model small enough to train on a CPU.
        dropout_rate: probability of dropping a unit in the Bayesian variant.
        weight_decay: factor of the L2 penalty ``weight_decay * sum(w**2) / 2`` on
            convolution kernels, added to ``tf.GraphKeys.REGULARIZATION_LOSSES``
            (the Caffe solver's 5e-4); 0 adds none.
        batch_norm_decay: momentum of the moving mean and variance.
        batch_norm_epsilon: added to the variance; TF 1.15's fused batch norm
            silently raises anything below 1.001e-5, so smaller values are refused.
        decoder: how a decoder stage upsamples; ``'unpool'`` puts each value back
            where the encoder's max pool found it (SegNet).
        unpool_method: implementation of :func:`max_unpool`, ``'fused'`` or
            ``'scatter_nd'`` (same result; ``'fused'`` is faster).
        upsample_kernel: height and width of the transposed-convolution kernels
            of the ``'deconv'`` and ``'deconv_add'`` decoders (the paper's
            FCN-Basic: 8). Even, so the kernel is centred on the 2x2 window it
            undoes; initialised to 2x bilinear interpolation.
        stages: keep only the first ``stages`` encoder stages and their mirror
            decoder stages (``None``: all of them, 5 for SegNet, 4 for
            SegNet-Basic). A shallower network of the same layer names and
            widths, e.g. the two-stage SegNet that notebook 03 writes by hand.
    """

    variant: str = "segnet"
    width_multiplier: float = 1.0
    dropout_rate: float = 0.5
    weight_decay: float = 5e-4
    batch_norm_decay: float = 0.9
    batch_norm_epsilon: float = 1e-3
    decoder: str = "unpool"
    unpool_method: str = "fused"
    upsample_kernel: int = 8
    stages: int | None = None

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"SegNetConfig.variant={self.variant!r}; expected one of {VARIANTS}")
        try:
            architecture(self.variant, self.stages)
        except ValueError as err:
            raise ValueError(f"SegNetConfig.{err}") from None
        if self.decoder not in DECODERS:
            raise ValueError(f"SegNetConfig.decoder={self.decoder!r}; expected one of {DECODERS}")
        if self.unpool_method not in UNPOOL_METHODS:
            raise ValueError(
                f"SegNetConfig.unpool_method={self.unpool_method!r}; expected one of {UNPOOL_METHODS}")
        if (not isinstance(self.upsample_kernel, (int, np.integer)) or isinstance(self.upsample_kernel, bool)
                or self.upsample_kernel < 4 or self.upsample_kernel % 2):
            raise ValueError(f"SegNetConfig.upsample_kernel={self.upsample_kernel!r} must be an even "
                             "integer >= 4 (2x bilinear interpolation needs 4 taps)")
        if not self.width_multiplier > 0:
            raise ValueError(f"SegNetConfig.width_multiplier={self.width_multiplier!r} must be > 0")
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"SegNetConfig.dropout_rate={self.dropout_rate!r} must be in [0, 1)")
        if not self.weight_decay >= 0:
            raise ValueError(f"SegNetConfig.weight_decay={self.weight_decay!r} must be >= 0")
        if not 0 <= self.batch_norm_decay < 1:
            raise ValueError(
                f"SegNetConfig.batch_norm_decay={self.batch_norm_decay!r} must be in [0, 1)")
        if not self.batch_norm_epsilon >= 1.001e-5:
            raise ValueError(
                f"SegNetConfig.batch_norm_epsilon={self.batch_norm_epsilon!r} must be >= 1.001e-5 "
                "(fused batch norm raises smaller values without telling)")

    def replace(self, **changes) -> "SegNetConfig":
        """Returns a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------
# Architecture tables
# ---------------------------------------------------------------------------

class LayerSpec(NamedTuple):
    """One convolution of the architecture table.

    Attributes:
        name: layer (and variable scope) name, e.g. ``'conv3_2'``.
        features: output features at width 1.0; ``None`` means ``num_classes``.
        kernel: square kernel size.
        batch_norm: followed by batch norm.
        relu: followed by ReLU.
        bias: has a bias vector.
        dropout_after: dropout (Bayesian variant) after this layer's output.
    """

    name: str
    features: int | None
    kernel: int
    batch_norm: bool = True
    relu: bool = True
    bias: bool = True
    dropout_after: bool = False


class _Architecture(NamedTuple):
    encoder: tuple   # stages, each a tuple of LayerSpec, followed by a 2x2 max pool
    decoder: tuple   # stages (deepest first), each starting with an upsampling
    classifier: tuple  # convolutions after the last decoder stage (may be empty)
    pool_dropout: tuple  # encoder stage numbers (1-based) with dropout after the pool


def _vgg_stage(stage, features, n):
    return tuple(LayerSpec(f"conv{stage}_{i}", features, 3) for i in range(1, n + 1))


def _segnet_architecture(bayesian: bool) -> _Architecture:
    encoder = (_vgg_stage(1, 64, 2), _vgg_stage(2, 128, 2), _vgg_stage(3, 256, 3),
               _vgg_stage(4, 512, 3), _vgg_stage(5, 512, 3))
    # The decoder mirrors the encoder: stage s undoes pool s, and its last conv
    # (conv{s}_1_D) outputs what encoder stage s received, so the next unpool's
    # indices (from pool s-1) line up with its features.
    decoder_out = {5: (512, 512, 512), 4: (512, 512, 256), 3: (256, 256, 128),
                   2: (128, 64), 1: (64, None)}
    decoder = []
    for stage in (5, 4, 3, 2, 1):
        outs = decoder_out[stage]
        layers = []
        for j, out in zip(range(len(outs), 0, -1), outs):
            last = stage == 1 and j == 1
            layers.append(LayerSpec(
                f"conv{stage}_{j}_D", out, 3, batch_norm=not last, relu=not last,
                # Bayesian SegNet: dropout after conv5_1_D, conv4_1_D, conv3_1_D
                # (Caffe 'decdrop5/4/3'), i.e. at the end of the central stages.
                dropout_after=bayesian and j == 1 and stage in (5, 4, 3)))
        decoder.append(tuple(layers))
    # 'encdrop3/4/5' in the Caffe model: after pool3, pool4 and pool5.
    return _Architecture(tuple(encoder), tuple(decoder), (), (3, 4, 5) if bayesian else ())


def _segnet_basic_architecture() -> _Architecture:
    # The paper (sec. 4.1): 7x7 kernels, 64 features, batch norm after every
    # conv, no biases, no ReLU in the decoder; a 1x1 classifier on top.
    encoder = tuple((LayerSpec(f"conv{s}", 64, 7, bias=False),) for s in (1, 2, 3, 4))
    decoder = tuple((LayerSpec(f"conv{s}_D", 64, 7, relu=False, bias=False),)
                    for s in (4, 3, 2, 1))
    classifier = (LayerSpec("conv_classifier", None, 1, batch_norm=False, relu=False),)
    return _Architecture(encoder, decoder, classifier, ())


def architecture(variant: str, stages: int | None = None) -> _Architecture:
    """The layer table of a variant (encoder stages, decoder stages, classifier).

    Args:
        variant: one of :data:`VARIANTS`.
        stages: keep the first ``stages`` encoder stages and the last
            ``stages`` decoder stages (their mirrors); ``None`` keeps all.

    Returns:
        A named tuple ``(encoder, decoder, classifier, pool_dropout)`` of
        :class:`LayerSpec` tuples.
    """
    if variant == "segnet":
        arch = _segnet_architecture(bayesian=False)
    elif variant == "bayesian":
        arch = _segnet_architecture(bayesian=True)
    elif variant == "segnet_basic":
        arch = _segnet_basic_architecture()
    else:
        raise ValueError(f"unknown SegNet variant {variant!r}; expected one of {VARIANTS}")
    deepest = len(arch.encoder)
    if stages is None:
        return arch
    if (not isinstance(stages, (int, np.integer)) or isinstance(stages, bool)
            or not 1 <= stages <= deepest):
        raise ValueError(f"stages={stages!r} must be None or an integer from 1 to {deepest} "
                         f"(the stages of {variant!r})")
    # Decoder stage s outputs what encoder stage s received, so cutting both
    # ends at the same depth keeps every unpooling's channels matching.
    return _Architecture(arch.encoder[:stages], arch.decoder[-stages:], arch.classifier,
                         tuple(s for s in arch.pool_dropout if s <= stages))


# ---------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------

def _static_bool(value):
    """``value`` as a Python bool if it is one (or a NumPy bool), else ``None``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return None


def _as_bool_tensor(value, what):
    if _static_bool(value) is not None:
        return tf.constant(bool(value))
    value = tf.convert_to_tensor(value)
    if value.dtype != tf.bool or value.shape.ndims not in (None, 0):
        raise ValueError(f"{what} must be a Python bool or a scalar bool tensor, got {value}")
    return value


def _smart_cond(pred, true_fn, false_fn):
    """``tf.cond`` that builds only one branch when ``pred`` is a Python bool."""
    static = _static_bool(pred)
    if static is not None:
        return true_fn() if static else false_fn()
    return tf.cond(pred, true_fn, false_fn)


def _batch_norm(x, is_training, config):
    """Batch norm with moving statistics updated through ``UPDATE_OPS``."""
    channels = tf.dimension_value(x.shape[-1])
    with tf.variable_scope(BATCH_NORM_SCOPE):
        gamma = tf.get_variable("gamma", [channels], initializer=tf.ones_initializer())
        beta = tf.get_variable("beta", [channels], initializer=tf.zeros_initializer())
        stat_collections = [tf.GraphKeys.GLOBAL_VARIABLES, tf.GraphKeys.MOVING_AVERAGE_VARIABLES]
        moving_mean = tf.get_variable("moving_mean", [channels], initializer=tf.zeros_initializer(),
                                      trainable=False, collections=stat_collections)
        moving_var = tf.get_variable("moving_variance", [channels], initializer=tf.ones_initializer(),
                                     trainable=False, collections=stat_collections)

        def training():
            return tf.nn.fused_batch_norm(x, gamma, beta, epsilon=config.batch_norm_epsilon,
                                          is_training=True)

        def inference():
            y, _, _ = tf.nn.fused_batch_norm(x, gamma, beta, mean=moving_mean, variance=moving_var,
                                             epsilon=config.batch_norm_epsilon, is_training=False)
            # Returning the moving statistics as the "batch" ones makes the update
            # below a no-op when a bool tensor selects inference.
            return y, tf.identity(moving_mean), tf.identity(moving_var)

        y, mean, var = _smart_cond(is_training, training, inference)
        if _static_bool(is_training) is not False:
            momentum = 1.0 - config.batch_norm_decay
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS,
                                 tf.assign_sub(moving_mean, (moving_mean - mean) * momentum))
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS,
                                 tf.assign_sub(moving_var, (moving_var - var) * momentum))
        y.set_shape(x.shape)
        return y


def _weight_decay(config):
    """The L2 regularizer of every learned kernel, or None without weight decay."""
    if not config.weight_decay > 0:
        return None

    def regularizer(w):
        # tf.nn.l2_loss is sum(w**2) / 2, so the gradient is weight_decay * w,
        # the same as Caffe's weight_decay.
        return tf.multiply(config.weight_decay, tf.nn.l2_loss(w), name="l2_weight_decay")
    return regularizer


def _conv(net, spec, features, is_training, config):
    """Convolution (+ batch norm) (+ ReLU) in variable scope ``spec.name``."""
    in_features = tf.dimension_value(net.shape[-1])
    if in_features is None:
        raise ValueError(f"{spec.name}: the input's channel dimension must be known, got {net.shape}")
    with tf.variable_scope(spec.name):
        kernel = tf.get_variable(
            WEIGHTS_NAME, [spec.kernel, spec.kernel, in_features, features],
            # The Caffe model's 'msra' filler: He et al. (2015) for ReLU networks.
            initializer=tf.variance_scaling_initializer(scale=2.0, mode="fan_in"),
            regularizer=_weight_decay(config))
        net = tf.nn.conv2d(net, kernel, strides=[1, 1, 1, 1], padding="SAME")
        if spec.bias:
            biases = tf.get_variable(BIASES_NAME, [features], initializer=tf.zeros_initializer())
            net = tf.nn.bias_add(net, biases)
        if spec.batch_norm:
            net = _batch_norm(net, is_training, config)
        if spec.relu:
            net = tf.nn.relu(net)
    return net


def _dropout(net, active, rate, name):
    """Dropout when ``active`` (Python bool or bool tensor), identity otherwise."""
    with tf.name_scope(name):
        return _smart_cond(active, lambda: tf.nn.dropout(net, rate=rate), lambda: tf.identity(net))


def _features(spec, config, num_classes):
    if spec.features is None:
        return num_classes
    return max(1, int(round(spec.features * config.width_multiplier)))


class _PoolRecord(NamedTuple):
    """What an encoder stage hands to its decoder stage."""

    stage: int
    argmax: object   # int64 [batch, h, w, c]
    shape: object    # int tensor [4]: the pre-pool shape
    static_shape: object  # tf.TensorShape of the pre-pool map
    skip: object     # FCN-Basic: 1x1 class scores of the previous stage's pooled map, or None
    pooled: object   # this stage's pooled output


def _upsample_unpool(net, record, config):
    # Unchecked: the indices come from this model's own pool, sized to match.
    return max_unpool(net, record.argmax, record.shape, method=config.unpool_method,
                      checked=False)


def bilinear_upsample_kernel(size, channels):
    """Transposed-convolution kernel that upsamples 2x by bilinear interpolation.

    Each channel is interpolated on its own (the kernel is diagonal in the
    channels), FCN's initialisation. The 4 taps of 2x interpolation,
    ``[1, 3, 3, 1] / 4`` per axis, sit in the middle of the ``size`` x ``size``
    kernel and the rest is zero, so a kernel larger than 4 (the paper's 8)
    starts as exact bilinear interpolation and may learn a wider footprint.

    With ``tf.nn.conv2d_transpose(..., strides=2, padding='SAME')`` and an even
    ``size``, input pixel ``i`` spreads over output pixels ``2i - 1 .. 2i + 2``,
    centred on ``2i + 0.5``: the centre of the 2x2 window it came from. Away
    from the border that is ``tf.image.resize_bilinear(x, 2 * size,
    half_pixel_centers=True)``; at the border the transposed convolution
    misses the outside neighbour (zero padding) where the resize repeats the
    edge pixel.

    Args:
        size: even kernel height and width, >= 4.
        channels: input and output channels.

    Returns:
        float32 ``[size, size, channels, channels]`` (``[height, width,
        out_channels, in_channels]``, the layout of ``conv2d_transpose``).
    """
    if size < 4 or size % 2:
        raise ValueError(f"bilinear_upsample_kernel: size={size} must be even and >= 4")
    taps = np.zeros(size, np.float32)
    middle = size // 2
    taps[middle - 2:middle + 2] = [0.25, 0.75, 0.75, 0.25]
    kernel = np.zeros((size, size, channels, channels), np.float32)
    for c in range(channels):
        kernel[:, :, c, c] = np.outer(taps, taps)
    return kernel


def _upsample_deconv(net, record, config):
    # Learned upsampling (FCN's "deconvolution"): a stride-2 transposed
    # convolution to the exact pre-pool size, so odd sizes work as for unpooling.
    channels = tf.dimension_value(net.shape[-1])
    kernel = tf.get_variable(
        WEIGHTS_NAME, [config.upsample_kernel, config.upsample_kernel, channels, channels],
        initializer=tf.constant_initializer(bilinear_upsample_kernel(config.upsample_kernel, channels)),
        regularizer=_weight_decay(config))
    output_shape = tf.concat([tf.cast(record.shape[:3], tf.int32), [channels]], axis=0)
    return tf.nn.conv2d_transpose(net, kernel, output_shape, strides=[1, 2, 2, 1], padding="SAME")


def _upsample_deconv_add(net, record, config):
    net = _upsample_deconv(net, record, config)
    if record.skip is not None:
        # FCN's fusion: the coarse scores, upsampled, plus the scores of the
        # encoder map at this resolution (kept from the encoder pass).
        net = tf.add(net, record.skip, name="add_encoder_scores")
    return net


def _upsample_bilinear(net, record, config):
    # Fixed upsampling. half_pixel_centers puts input pixel i at 2i + 0.5, the
    # centre of the 2x2 window it came from (as the deconv's bilinear start).
    # align_corners=True would map the corner pixels onto each other instead,
    # i.e. a scale of (h - 1) / (H - 1), a sub-pixel shift that differs between
    # even and odd sizes; the default (both False) shifts the whole map by half
    # an output pixel towards the origin.
    size = tf.cast(record.shape[1:3], tf.int32)
    return tf.image.resize_bilinear(net, size, align_corners=False, half_pixel_centers=True)


class _Decoder(NamedTuple):
    """How one kind of decoder upsamples (see :data:`DECODERS`).

    Attributes:
        upsample: ``fn(net, record, config)`` -> a map of the record's height
            and width (and ``net``'s channels), built inside the variable scope
            ``upsample<stage>``.
        family: ``'segnet'``: the architecture's decoder convolutions follow
            each upsampling and its classifier comes last. ``'fcn'``: the deepest
            encoder output is scored into ``num_classes`` maps by a 1x1
            convolution (``score_pool<N>``) which the decoder only upsamples.
        skip: add the 1x1 scores of the encoder's pooled map of the same
            resolution (``score_pool<s>``, FCN-Basic) after each upsampling.
    """

    upsample: object
    family: str
    skip: bool = False


# Decoders, by SegNetConfig.decoder. The paper's names for them with the
# SegNet-Basic encoder: SegNet-Basic, FCN-Basic, FCN-Basic-NoAddition and
# Bilinear-Interpolation.
_DECODER_TABLE = {
    "unpool": _Decoder(_upsample_unpool, "segnet"),
    "deconv_add": _Decoder(_upsample_deconv_add, "fcn", skip=True),
    "deconv": _Decoder(_upsample_deconv, "fcn"),
    "bilinear": _Decoder(_upsample_bilinear, "fcn"),
}
DECODERS = tuple(_DECODER_TABLE)
#: Decoder name -> ``'segnet'`` (upsample, then learned convolutions) or
#: ``'fcn'`` (score the classes at the bottleneck, then only upsample).
DECODER_FAMILIES = {name: spec.family for name, spec in _DECODER_TABLE.items()}


def _score_spec(stage):
    # FCN's score layers: a 1x1 convolution to the classes, with a bias and
    # neither batch norm nor ReLU (like a classifier).
    return LayerSpec(f"score_pool{stage}", None, 1, batch_norm=False, relu=False)


def segnet(images, num_classes, is_training, config=SegNetConfig(), scope=DEFAULT_SCOPE,
           reuse=None, mc_dropout=False):
    """Builds SegNet (or a variant) on ``images``.

    Args:
        images: float32 ``[batch, height, width, 3]`` (any batch, including
            ``None``; any height and width, also not multiples of 32).
        num_classes: number of output classes.
        is_training: Python bool or scalar bool tensor. Selects batch statistics
            (and adds moving-average updates to ``tf.GraphKeys.UPDATE_OPS``) and
            turns dropout on.
        config: a :class:`SegNetConfig`.
        scope: variable scope of all variables.
        reuse: ``True`` to share the variables of an earlier call (e.g. an
            evaluation graph next to the training one).
        mc_dropout: Python bool or bool tensor; keeps the Bayesian variant's
            dropout on at test time, for Monte Carlo sampling. Ignored by
            variants without dropout.

    Returns:
        ``(logits, end_points)``: logits float32 ``[batch, height, width,
        num_classes]`` (before softmax) and an ordered dict of every layer's
        output by name (``'conv1_1'``, ``'pool1'``, ``'pool1_argmax'``,
        ``'upsample5'``, ..., ``'logits'``). The FCN-style decoders have no
        decoder convolutions; they add ``'score_pool<s>'`` (1x1 class scores of
        a pooled map: the deepest one, and for ``'deconv_add'`` the shallower
        ones too) and their ``'upsample<s>'`` maps have ``num_classes``
        channels.

    Raises:
        ValueError: for a wrong input rank, unknown channel count or bad
            ``num_classes``.
    """
    if not isinstance(config, SegNetConfig):
        raise ValueError(f"config must be a SegNetConfig, got {type(config).__name__}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    num_classes = int(num_classes)
    arch = architecture(config.variant, config.stages)
    end_points = collections.OrderedDict()
    with tf.variable_scope(scope, DEFAULT_SCOPE, [images], reuse=reuse):
        net = tf.convert_to_tensor(images)
        if net.shape.ndims != 4:
            raise ValueError(f"images must be [batch, height, width, channels], got shape {net.shape}")
        if _static_bool(is_training) is None:
            is_training = _as_bool_tensor(is_training, "is_training")
        dropout_on = _dropout_switch(is_training, mc_dropout)

        decoder = _DECODER_TABLE[config.decoder]
        records = []
        for stage, layers in enumerate(arch.encoder, start=1):
            for spec in layers:
                net = _conv(net, spec, _features(spec, config, num_classes), is_training, config)
                end_points[spec.name] = net
            pre_pool = net
            net, argmax = max_pool_with_argmax(net, name=f"pool{stage}")
            end_points[f"pool{stage}"] = net
            end_points[f"pool{stage}_argmax"] = argmax
            skip = None
            if decoder.skip and records:
                # The previous stage's pooled map is at this stage's pre-pool
                # resolution: score it now, so the decoder stage that returns
                # here finds num_classes maps to add (all the encoder keeps).
                skip = _conv(records[-1].pooled, _score_spec(stage - 1), num_classes,
                             is_training, config)
                end_points[f"score_pool{stage - 1}"] = skip
            records.append(_PoolRecord(stage, argmax, tf.shape(pre_pool, out_type=tf.int64),
                                       pre_pool.shape, skip, net))
            if stage in arch.pool_dropout:
                net = _dropout(net, dropout_on, config.dropout_rate, f"pool{stage}_dropout")
                end_points[f"pool{stage}_dropout"] = net

        if decoder.family == "fcn":
            # Dimensionality reduction of the deepest encoder map to class scores.
            net = _conv(net, _score_spec(len(records)), num_classes, is_training, config)
            end_points[f"score_pool{len(records)}"] = net
        for layers, record in zip(arch.decoder, reversed(records)):
            with tf.variable_scope(f"upsample{record.stage}"):
                net = decoder.upsample(net, record, config)
            # The pre-pool shape fixes height and width (and the channels are net's).
            net.set_shape(record.static_shape[:-1].concatenate(net.shape[-1:]))
            end_points[f"upsample{record.stage}"] = net
            if decoder.family != "segnet":
                continue
            for spec in layers:
                net = _conv(net, spec, _features(spec, config, num_classes), is_training, config)
                end_points[spec.name] = net
                if spec.dropout_after:
                    net = _dropout(net, dropout_on, config.dropout_rate, f"{spec.name}_dropout")
                    end_points[f"{spec.name}_dropout"] = net
        if decoder.family == "segnet":
            for spec in arch.classifier:
                net = _conv(net, spec, _features(spec, config, num_classes), is_training, config)
                end_points[spec.name] = net
        logits = tf.identity(net, name="logits")
        end_points["logits"] = logits
    return logits, end_points


def _dropout_switch(is_training, mc_dropout):
    """Dropout is on while training, or at test time when MC sampling."""
    train, mc = _static_bool(is_training), _static_bool(mc_dropout)
    if train is True or mc is True:
        return True
    if train is False and mc is False:
        return False
    return tf.logical_or(_as_bool_tensor(is_training, "is_training"),
                         _as_bool_tensor(mc_dropout, "mc_dropout"))


# ---------------------------------------------------------------------------
# Inspection
# ---------------------------------------------------------------------------

def count_parameters(scope=None, graph=None):
    """Number of trainable parameters (weights, biases, batch-norm scale/offset).

    Args:
        scope: only variables whose name starts with ``scope + '/'``; all if None.
        graph: the graph to look in (default graph if None).

    Returns:
        An int.
    """
    graph = graph or tf.get_default_graph()
    variables = graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)
    if scope:
        variables = [v for v in variables if v.op.name.startswith(scope.rstrip("/") + "/")]
    return int(sum(np.prod(v.shape.as_list(), dtype=np.int64) for v in variables))


def _layer_kind(name):
    if name.endswith("_argmax"):
        return "argmax"
    if name.endswith("_dropout"):
        return "dropout"
    if name.startswith("pool"):
        return "max pool"
    if name.startswith("upsample"):
        return "upsample"
    if name == "logits":
        return "output"
    return "conv"


def layer_table(end_points, scope=None, graph=None):
    """A table of the layers: name, kind, output shape and parameters.

    Args:
        end_points: the dict returned by :func:`segnet`.
        scope: the builder's variable scope, if several models share the graph.
        graph: graph holding the variables (default graph if None).

    Returns:
        A pandas DataFrame with columns ``name``, ``kind``, ``output_shape``
        (a tuple; ``None`` for a dynamic dimension), ``params`` and ``dtype``, one
        row per end point, in build order.
    """
    graph = graph or tf.get_default_graph()
    variables = graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)
    if scope:
        variables = [v for v in variables if v.op.name.startswith(scope.rstrip("/") + "/")]
    rows = []
    for name, tensor in end_points.items():
        # Layer names are unique path components ('/conv1_1/' never matches
        # '/conv1_1_D/'), so a variable belongs to the layer named in its path.
        params = sum(int(np.prod(v.shape.as_list())) for v in variables
                     if f"/{name}/" in f"/{v.op.name}")
        shape = tuple(tensor.shape.as_list()) if tensor.shape.ndims is not None else None
        rows.append({"name": name, "kind": _layer_kind(name), "output_shape": shape,
                     "params": params, "dtype": tensor.dtype.name})
    return pd.DataFrame(rows, columns=["name", "kind", "output_shape", "params", "dtype"])
