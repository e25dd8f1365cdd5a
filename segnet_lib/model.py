"""SegNet, SegNet-Basic, Bayesian SegNet and their decoder variants as TF1 graphs.

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

One builder, :func:`build`, makes every model from an architecture table
(:class:`Architecture`: encoder stages, an optional bottleneck, decoder
stages, a classifier, each a tuple of :class:`~segnet_lib.layers.LayerSpec`)
and a decoder (how each decoder stage upsamples); :func:`network` gives both
for a model config. :func:`segnet` is :func:`build` for a
:class:`SegNetConfig`; :func:`segnet_lib.unet.unet` is :func:`build` for a
:class:`~segnet_lib.unet.UNetConfig` (its module registers it with
:func:`network`). The layers themselves are in :mod:`segnet_lib.layers`.

The decoder upsamples with the encoder's max-pooling indices
(:func:`segnet_lib.unpool.max_unpool`, re-exported here with
:func:`~segnet_lib.unpool.max_pool_with_argmax`). That is
``SegNetConfig.decoder='unpool'``. The same
builder also makes the decoders the paper compares SegNet with (its Table 1,
sec. 3.1), and U-Net's, on any encoder (see :data:`DECODERS`):

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
* ``'unet'``: U-Net's decoder (Ronneberger et al. 2015). Each stage upsamples
  with a learned 2x2 transposed convolution (``upconv<s>``, to the exact
  pre-pool size), concatenates the encoder's whole pre-pool feature map of
  that resolution (``concat<s>``), then runs the architecture's decoder
  convolutions. With the SegNet-Basic encoder this is the "store everything"
  end of the paper's memory axis: the decoder keeps every encoder map in
  float32 where SegNet keeps only the indices of the maxima.

Only ``'unpool'`` reads the pooling indices, so only it pools with
:func:`~segnet_lib.unpool.max_pool_with_argmax` (end points ``pool<s>_argmax``);
the others pool with :func:`~segnet_lib.unpool.max_pool`, which computes no
indices, as their own papers do.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from typing import NamedTuple

import numpy as np
import pandas as pd

from segnet_lib._tf import lean_memory, tf
from segnet_lib.layers import (LayerSpec, as_bool_tensor, check_layer_options, conv, dropout,
                               static_bool, transposed_conv)
# Re-exported: the builder's pooling and unpooling, defined with their gradient
# in segnet_lib.unpool.
from segnet_lib.unpool import UNPOOL_METHODS, max_pool, max_pool_with_argmax, max_unpool

__all__ = [
    "SegNetConfig", "VARIANTS", "DECODERS", "UNPOOL_METHODS", "segnet", "build", "network",
    "Network", "Architecture", "max_pool_with_argmax", "max_unpool", "count_parameters",
    "layer_table", "architecture", "LayerSpec", "bilinear_upsample_kernel", "DECODER_FAMILIES",
    "UPCONV_KERNEL",
]

VARIANTS = ("segnet", "segnet_basic", "bayesian")

# Scope names, as module constants (tf-slim style).
DEFAULT_SCOPE = "segnet"
#: Kernel size of the ``'unet'`` decoder's up-convolutions (U-Net's "2x2 up-convolution").
UPCONV_KERNEL = 2


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
        decoder: how a decoder stage upsamples (see :data:`DECODERS`);
            ``'unpool'`` puts each value back where the encoder's max pool
            found it (SegNet); ``'unet'`` up-convolves and concatenates the
            encoder's map (U-Net).
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
        check_layer_options(self)

    def replace(self, **changes) -> "SegNetConfig":
        """Returns a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------
# Architecture tables
# ---------------------------------------------------------------------------

class Architecture(NamedTuple):
    """An encoder-decoder as a table of convolutions (:class:`~segnet_lib.layers.LayerSpec`).

    Attributes:
        encoder: stages, each a tuple of layers followed by a 2x2 max pool.
        decoder: stages, deepest first, each starting with an upsampling (and
            for ``'unet'`` a concatenation) that undoes one pool.
        classifier: convolutions after the last decoder stage (may be empty).
        pool_dropout: encoder stage numbers (1-based) with dropout after the pool.
        bottleneck: convolutions after the last pool, before the decoder
            (U-Net's lowest level; empty for SegNet).
    """

    encoder: tuple
    decoder: tuple
    classifier: tuple
    pool_dropout: tuple
    bottleneck: tuple = ()


def _vgg_stage(stage, features, n):
    return tuple(LayerSpec(f"conv{stage}_{i}", features, 3) for i in range(1, n + 1))


def _segnet_architecture(bayesian: bool) -> Architecture:
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
    return Architecture(tuple(encoder), tuple(decoder), (), (3, 4, 5) if bayesian else ())


def _segnet_basic_architecture() -> Architecture:
    # The paper (sec. 4.1): 7x7 kernels, 64 features, batch norm after every
    # conv, no biases, no ReLU in the decoder; a 1x1 classifier on top.
    encoder = tuple((LayerSpec(f"conv{s}", 64, 7, bias=False),) for s in (1, 2, 3, 4))
    decoder = tuple((LayerSpec(f"conv{s}_D", 64, 7, relu=False, bias=False),)
                    for s in (4, 3, 2, 1))
    classifier = (LayerSpec("conv_classifier", None, 1, batch_norm=False, relu=False),)
    return Architecture(encoder, decoder, classifier, ())


def architecture(variant: str, stages: int | None = None) -> Architecture:
    """The layer table of a SegNet variant, at width 1.

    Args:
        variant: one of :data:`VARIANTS`.
        stages: keep the first ``stages`` encoder stages and the last
            ``stages`` decoder stages (their mirrors); ``None`` keeps all.

    Returns:
        An :class:`Architecture` (encoder stages, decoder stages, classifier,
        pool dropout; no bottleneck).
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
    return arch._replace(encoder=arch.encoder[:stages], decoder=arch.decoder[-stages:],
                         pool_dropout=tuple(s for s in arch.pool_dropout if s <= stages))


def _scaled(arch: Architecture, width: float) -> Architecture:
    """``arch`` with every layer's features multiplied by ``width`` (not the classes)."""
    def scale(layers):
        return tuple(spec if spec.features is None
                     else spec._replace(features=max(1, int(round(spec.features * width))))
                     for spec in layers)
    return arch._replace(encoder=tuple(scale(s) for s in arch.encoder),
                         decoder=tuple(scale(s) for s in arch.decoder),
                         classifier=scale(arch.classifier), bottleneck=scale(arch.bottleneck))


# ---------------------------------------------------------------------------
# Decoders
# ---------------------------------------------------------------------------

def _features(spec, num_classes):
    return num_classes if spec.features is None else spec.features


class _PoolRecord(NamedTuple):
    """What an encoder stage hands to its decoder stage."""

    stage: int
    argmax: object   # int64 [batch, h, w, c], or None (a decoder that reads no indices)
    shape: object    # int tensor [4]: the pre-pool shape
    static_shape: object  # tf.TensorShape of the pre-pool map
    skip: object     # FCN-Basic: 1x1 class scores of the previous stage's pooled map, or None
    pooled: object   # this stage's pooled output
    pre_pool: object  # the encoder map before the pool (U-Net concatenates it)


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
    kernel = bilinear_upsample_kernel(config.upsample_kernel, channels)
    return transposed_conv(net, channels, record.shape, config.upsample_kernel, config,
                           initializer=tf.constant_initializer(kernel))


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


def _upsample_upconv(net, record, config):
    # U-Net's up-convolution, with a bias and a ReLU as in ports of the
    # authors' Caffe model (upconv_d4c_u3a, relu_u3a). It outputs as many
    # features as the encoder map it is concatenated with next, so the
    # concatenation is half upsampled, half encoder (U-Net: 1024 -> 512 + 512).
    features = tf.dimension_value(record.static_shape[-1])
    return transposed_conv(net, features, record.shape, UPCONV_KERNEL, config, bias=True,
                           relu=True)


class _Decoder(NamedTuple):
    """How one kind of decoder upsamples (see :data:`DECODERS`).

    Attributes:
        upsample: ``fn(net, record, config)`` -> a map of the record's height
            and width (``net``'s channels; the encoder map's for ``'unet'``),
            built inside the variable scope ``<name><stage>``.
        family: ``'segnet'``: the architecture's decoder convolutions follow
            each upsampling and its classifier comes last. ``'fcn'``: the deepest
            encoder output is scored into ``num_classes`` maps by a 1x1
            convolution (``score_pool<N>``) which the decoder only upsamples.
        skip: add the 1x1 scores of the encoder's pooled map of the same
            resolution (``score_pool<s>``, FCN-Basic) after each upsampling.
        indices: reads the pooling indices, so the encoder pools with
            :func:`max_pool_with_argmax` (else with :func:`max_pool`).
        concat: concatenate the encoder's pre-pool map after each upsampling
            (end point ``concat<s>``, U-Net).
        name: prefix of the upsampling's variable scope and end point
            (``'upsample'``, U-Net's ``'upconv'``).
    """

    upsample: object
    family: str
    skip: bool = False
    indices: bool = False
    concat: bool = False
    name: str = "upsample"


# Decoders, by SegNetConfig.decoder. The paper's names for them with the
# SegNet-Basic encoder: SegNet-Basic, FCN-Basic, FCN-Basic-NoAddition and
# Bilinear-Interpolation; 'unet' is U-Net's.
_DECODER_TABLE = {
    "unpool": _Decoder(_upsample_unpool, "segnet", indices=True),
    "deconv_add": _Decoder(_upsample_deconv_add, "fcn", skip=True),
    "deconv": _Decoder(_upsample_deconv, "fcn"),
    "bilinear": _Decoder(_upsample_bilinear, "fcn"),
    "unet": _Decoder(_upsample_upconv, "segnet", concat=True, name="upconv"),
}
DECODERS = tuple(_DECODER_TABLE)
#: Decoder name -> ``'segnet'`` (upsample, then the architecture's learned
#: decoder convolutions; U-Net's too) or ``'fcn'`` (score the classes at the
#: bottleneck, then only upsample).
DECODER_FAMILIES = {name: spec.family for name, spec in _DECODER_TABLE.items()}


def _score_spec(stage):
    # FCN's score layers: a 1x1 convolution to the classes, with a bias and
    # neither batch norm nor ReLU (like a classifier).
    return LayerSpec(f"score_pool{stage}", None, 1, batch_norm=False, relu=False)


class Network(NamedTuple):
    """What :func:`build` makes of a model config (see :func:`network`).

    Attributes:
        architecture: the :class:`Architecture`, features resolved (a width
            multiplier applied); ``None`` features stay ``num_classes``.
        decoder: a key of :data:`DECODERS`.
        scope: the default variable scope (``'segnet'``, ``'unet'``).
    """

    architecture: Architecture
    decoder: str
    scope: str


@functools.singledispatch
def network(config) -> Network:
    """The architecture table, decoder and scope that :func:`build` uses for a config.

    Dispatches on the config's type: :class:`SegNetConfig` here,
    :class:`segnet_lib.unet.UNetConfig` registered by its module (with
    ``@network.register(UNetConfig)``), so that :func:`build` takes either
    without this module knowing U-Net's.

    Args:
        config: a model config.

    Returns:
        A :class:`Network`.

    Raises:
        ValueError: no model is built from this type of config.
    """
    raise ValueError(f"config must be a model config (SegNetConfig, UNetConfig), got "
                     f"{type(config).__name__}")


@network.register(SegNetConfig)
def _segnet_network(config):
    return Network(_scaled(architecture(config.variant, config.stages), config.width_multiplier),
                   config.decoder, DEFAULT_SCOPE)


def build(images, num_classes, is_training, config, scope=None, reuse=None, mc_dropout=False):
    """Builds the model a config describes: SegNet, a decoder variant or U-Net.

    The one graph builder behind :func:`segnet` and
    :func:`segnet_lib.unet.unet`; training, export, the study and the
    benchmarks call it with the run's model config. It reads the table and
    decoder from :func:`network`, then builds the encoder stages (each
    followed by a 2x2 max pool that keeps, for the decoder, its pre-pool shape
    and, as the decoder needs, its indices, its pre-pool map or the 1x1 scores
    of the pooled map), the bottleneck, and the decoder stages in reverse
    (upsample to the exact pre-pool size, concatenate for ``'unet'``, then
    the decoder convolutions), then the classifier.

    Args:
        images: float32 ``[batch, height, width, channels]`` (any batch,
            including ``None``; any height and width, also not multiples of
            32; channels known).
        num_classes: number of output classes.
        is_training: Python bool or scalar bool tensor. Selects batch statistics
            (and adds moving-average updates to ``tf.GraphKeys.UPDATE_OPS``) and
            turns dropout on.
        config: a model config: :class:`SegNetConfig` or
            :class:`segnet_lib.unet.UNetConfig`.
        scope: variable scope of all variables (default: the config's,
            ``'segnet'`` or ``'unet'``).
        reuse: ``True`` to share the variables of an earlier call (e.g. an
            evaluation graph next to the training one).
        mc_dropout: Python bool or bool tensor; keeps the Bayesian variant's
            dropout on at test time, for Monte Carlo sampling. Ignored by
            models without dropout.

    Returns:
        ``(logits, end_points)``: logits float32 ``[batch, height, width,
        num_classes]`` (before softmax) and an ordered dict of every layer's
        output by name, in build order (see :func:`segnet` and
        :func:`segnet_lib.unet.unet`).

    Raises:
        ValueError: for a config of another type, a wrong input rank, unknown
            channel count or bad ``num_classes``.
    """
    plan = network(config)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    num_classes = int(num_classes)
    arch, decoder = plan.architecture, _DECODER_TABLE[plan.decoder]
    end_points = collections.OrderedDict()
    with tf.variable_scope(scope or plan.scope, plan.scope, [images], reuse=reuse):
        net = tf.convert_to_tensor(images)
        if net.shape.ndims != 4:
            raise ValueError(f"images must be [batch, height, width, channels], got shape {net.shape}")
        if static_bool(is_training) is None:
            is_training = as_bool_tensor(is_training, "is_training")
        dropout_on = _dropout_switch(is_training, mc_dropout)
        # Only a training graph has a backward pass to make lean.
        lean_gradients = static_bool(is_training) is True and lean_memory()

        records = []
        for stage, layers in enumerate(arch.encoder, start=1):
            for spec in layers:
                net = conv(net, spec, _features(spec, num_classes), is_training, config)
                end_points[spec.name] = net
            pre_pool = net
            if decoder.indices:
                net, argmax = max_pool_with_argmax(net, name=f"pool{stage}",
                                                   lean_gradient=lean_gradients)
            else:
                net, argmax = max_pool(net, name=f"pool{stage}"), None
            end_points[f"pool{stage}"] = net
            if argmax is not None:
                end_points[f"pool{stage}_argmax"] = argmax
            skip = None
            if decoder.skip and records:
                # The previous stage's pooled map is at this stage's pre-pool
                # resolution: score it now, so the decoder stage that returns
                # here finds num_classes maps to add (all the encoder keeps).
                skip = conv(records[-1].pooled, _score_spec(stage - 1), num_classes,
                            is_training, config)
                end_points[f"score_pool{stage - 1}"] = skip
            records.append(_PoolRecord(stage, argmax, tf.shape(pre_pool, out_type=tf.int64),
                                       pre_pool.shape, skip, net, pre_pool))
            if stage in arch.pool_dropout:
                net = dropout(net, dropout_on, config.dropout_rate, f"pool{stage}_dropout")
                end_points[f"pool{stage}_dropout"] = net
        for spec in arch.bottleneck:
            net = conv(net, spec, _features(spec, num_classes), is_training, config)
            end_points[spec.name] = net

        if decoder.family == "fcn":
            # Dimensionality reduction of the deepest encoder map to class scores.
            net = conv(net, _score_spec(len(records)), num_classes, is_training, config)
            end_points[f"score_pool{len(records)}"] = net
        for layers, record in zip(arch.decoder, reversed(records)):
            name = f"{decoder.name}{record.stage}"
            with tf.variable_scope(name):
                net = decoder.upsample(net, record, config)
            # The pre-pool shape fixes height and width (and the channels are net's).
            net.set_shape(record.static_shape[:-1].concatenate(net.shape[-1:]))
            end_points[name] = net
            if decoder.concat:
                # U-Net's skip: the upsampled map, then the encoder's whole map
                # (the order of concat_d3cc_u3a-b in the authors' model).
                net = tf.concat([net, record.pre_pool], axis=-1, name=f"concat{record.stage}")
                end_points[f"concat{record.stage}"] = net
            if decoder.family != "segnet":
                continue
            for spec in layers:
                net = conv(net, spec, _features(spec, num_classes), is_training, config)
                end_points[spec.name] = net
                if spec.dropout_after:
                    net = dropout(net, dropout_on, config.dropout_rate, f"{spec.name}_dropout")
                    end_points[f"{spec.name}_dropout"] = net
        if decoder.family == "segnet":
            for spec in arch.classifier:
                net = conv(net, spec, _features(spec, num_classes), is_training, config)
                end_points[spec.name] = net
        logits = tf.identity(net, name="logits")
        end_points["logits"] = logits
    return logits, end_points


def segnet(images, num_classes, is_training, config=SegNetConfig(), scope=DEFAULT_SCOPE,
           reuse=None, mc_dropout=False):
    """Builds SegNet (or a variant, or another decoder) on ``images``.

    :func:`build` for a :class:`SegNetConfig`; the arguments are
    :func:`build`'s (``images`` float32 ``[batch, height, width, 3]``, any
    batch and size), with ``config`` a :class:`SegNetConfig` and ``scope``
    ``'segnet'`` by default.

    Returns:
        ``(logits, end_points)``: logits float32 ``[batch, height, width,
        num_classes]`` (before softmax) and an ordered dict of every layer's
        output by name (``'conv1_1'``, ``'pool1'``, ``'pool1_argmax'``,
        ``'upsample5'``, ..., ``'logits'``). Only ``'unpool'`` has the
        ``'pool<s>_argmax'`` indices. The FCN-style decoders have no
        decoder convolutions; they add ``'score_pool<s>'`` (1x1 class scores of
        a pooled map: the deepest one, and for ``'deconv_add'`` the shallower
        ones too) and their ``'upsample<s>'`` maps have ``num_classes``
        channels. ``'unet'`` has ``'upconv<s>'`` (the up-convolution, as many
        features as the encoder map of that resolution) and ``'concat<s>'``
        (twice that) where the others have ``'upsample<s>'``.

    Raises:
        ValueError: for a wrong input rank, unknown channel count or bad
            ``num_classes``.
    """
    if not isinstance(config, SegNetConfig):
        raise ValueError(f"config must be a SegNetConfig, got {type(config).__name__}")
    return build(images, num_classes, is_training, config, scope=scope, reuse=reuse,
                 mc_dropout=mc_dropout)


def _dropout_switch(is_training, mc_dropout):
    """Dropout is on while training, or at test time when MC sampling."""
    train, mc = static_bool(is_training), static_bool(mc_dropout)
    if train is True or mc is True:
        return True
    if train is False and mc is False:
        return False
    return tf.logical_or(as_bool_tensor(is_training, "is_training"),
                         as_bool_tensor(mc_dropout, "mc_dropout"))


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
    if name.startswith(("upsample", "upconv")):
        return "upsample"
    if name.startswith("concat"):
        return "concat"
    if name == "logits":
        return "output"
    return "conv"


def layer_table(end_points, scope=None, graph=None):
    """A table of the layers: name, kind, output shape and parameters.

    Args:
        end_points: the dict returned by :func:`build` (or :func:`segnet`).
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
