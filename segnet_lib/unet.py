"""U-Net (Ronneberger, Fischer and Brox, MICCAI 2015) as a TF1 graph, through SegNet's builder.

U-Net is an architecture table plus the ``'unet'`` decoder of
:func:`segnet_lib.model.build`, not a second network: the same layers
(:mod:`segnet_lib.layers`), the same pooling and exact-size upsampling, the
same end points and variable layout. Per stage of the contracting path, two
3x3 convolutions with ReLU (and batch norm if on), then a 2x2 max pool; at the
lowest resolution a bottleneck of two 3x3 convolutions with twice the
features; per stage of the expanding path, a 2x2 up-convolution that halves
the features, a concatenation with the contracting path's map of that
resolution, and two 3x3 convolutions; a 1x1 classifier::

    logits, end_points = unet(images, num_classes=2, is_training=True)

'SAME' padding throughout, so the output has the input's size and the
concatenation needs no crop (the paper's valid convolutions shrink the
output, hence its crops and overlap-tile strategy). The paper's dropout at
the end of the contracting path is left out.

Names, for ``depth`` D: ``conv<s>_1``, ``conv<s>_2`` and ``pool<s>`` for the
stages s = 1..D; ``conv<D+1>_1``, ``conv<D+1>_2`` for the bottleneck;
``upconv<s>``, ``concat<s>``, ``conv<s>_1_D``, ``conv<s>_2_D`` from s = D down
to 1; ``conv_classifier``; ``logits``.

Parameters, with input channels c, base features F (``F_s = F * 2**(s-1)``),
K classes, ``conv(a, b) = 9ab + b`` (kernel and bias) and
``up(a, b) = 4ab + b`` (2x2 up-convolution and bias), without batch norm::

    sum over s = 1..D of conv(F_{s-1}, F_s) + conv(F_s, F_s)     (F_0 = c)
    + conv(F_D, F_{D+1}) + conv(F_{D+1}, F_{D+1})                 (bottleneck)
    + sum over s = 1..D of up(F_{s+1}, F_s) + conv(2 F_s, F_s) + conv(F_s, F_s)
    + F_1 K + K                                                    (classifier)

which is 31,031,810 for c = 3, F = 64, D = 4, K = 2 (``tests/test_unet.py``
counts it). With batch norm each 3x3 convolution loses its bias and gains a
scale and an offset per output channel (``9ab + 2b``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from segnet_lib import model
from segnet_lib.layers import LayerSpec, check_layer_options

__all__ = ["UNetConfig", "DEFAULT_SCOPE", "VARIANT", "unet", "architecture"]

DEFAULT_SCOPE = "unet"
#: ``TrainConfig.variant`` of a U-Net run (see :meth:`segnet_lib.config.TrainConfig.model_config`).
VARIANT = "unet"


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Options of the U-Net builder (immutable; change with :meth:`replace`).

    Attributes:
        depth: number of 2x2 max pools (the paper: 4).
        base_features: features of the first stage; each deeper stage doubles
            them (the paper: 64, so 1024 at the bottleneck).
        batch_norm: batch norm after every 3x3 convolution (then without a
            bias, which the batch norm's offset replaces). The paper has none;
            on by default, as in every SegNet of this library.
        weight_decay: factor of the L2 penalty on every kernel, as in
            :class:`segnet_lib.model.SegNetConfig`; 0 adds none.
        batch_norm_decay: momentum of the moving mean and variance.
        batch_norm_epsilon: added to the variance; at least 1.001e-5.
    """

    depth: int = 4
    base_features: int = 64
    batch_norm: bool = True
    weight_decay: float = 5e-4
    batch_norm_decay: float = 0.9
    batch_norm_epsilon: float = 1e-3

    def __post_init__(self):
        if not _positive_int(self.depth):
            raise ValueError(f"UNetConfig.depth={self.depth!r} must be a positive integer")
        if not _positive_int(self.base_features):
            raise ValueError(
                f"UNetConfig.base_features={self.base_features!r} must be a positive integer")
        if not isinstance(self.batch_norm, (bool, np.bool_)):
            raise ValueError(f"UNetConfig.batch_norm={self.batch_norm!r} must be True or False")
        check_layer_options(self)

    def replace(self, **changes) -> "UNetConfig":
        """Returns a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def architecture(config: UNetConfig = UNetConfig()) -> model.Architecture:
    """U-Net's layer table for :func:`segnet_lib.model.build`.

    Args:
        config: a :class:`UNetConfig` (depth, base features, batch norm).

    Returns:
        A :class:`segnet_lib.model.Architecture`: ``depth`` encoder stages
        and as many decoder stages (deepest first) of two 3x3 convolutions,
        a bottleneck of two, a 1x1 classifier.
    """
    bn = bool(config.batch_norm)

    def pair(names, features):
        return tuple(LayerSpec(name, features, 3, batch_norm=bn, bias=not bn) for name in names)

    features = [config.base_features * 2 ** i for i in range(config.depth + 1)]
    encoder = tuple(pair((f"conv{s}_1", f"conv{s}_2"), features[s - 1])
                    for s in range(1, config.depth + 1))
    low = config.depth + 1
    bottleneck = pair((f"conv{low}_1", f"conv{low}_2"), features[-1])
    decoder = tuple(pair((f"conv{s}_1_D", f"conv{s}_2_D"), features[s - 1])
                    for s in range(config.depth, 0, -1))
    classifier = (LayerSpec("conv_classifier", None, 1, batch_norm=False, relu=False),)
    return model.Architecture(encoder, decoder, classifier, (), bottleneck)


@model.network.register(UNetConfig)
def _unet_network(config):
    return model.Network(architecture(config), "unet", DEFAULT_SCOPE)


def unet(images, num_classes, is_training, config=UNetConfig(), scope=DEFAULT_SCOPE, reuse=None):
    """Builds U-Net on ``images``: :func:`segnet_lib.model.build` for a :class:`UNetConfig`.

    Args:
        images: float32 ``[batch, height, width, channels]`` (any batch,
            including ``None``; any height and width, odd ones too: every
            up-convolution returns to its stage's exact pre-pool size;
            channels known).
        num_classes: number of output classes.
        is_training: Python bool or scalar bool tensor: batch statistics (and
            moving-average updates in ``tf.GraphKeys.UPDATE_OPS``) or the
            moving ones.
        config: a :class:`UNetConfig`.
        scope: variable scope of all variables.
        reuse: ``True`` to share the variables of an earlier call.

    Returns:
        ``(logits, end_points)``: logits float32 ``[batch, height, width,
        num_classes]`` and an ordered dict of every layer's output (see the
        module docstring for the names); ``'upconv<s>'`` has the features of
        stage s, ``'concat<s>'`` twice as many.

    Raises:
        ValueError: for a config of another type, a wrong input rank, unknown
            channel count or bad ``num_classes``.
    """
    if not isinstance(config, UNetConfig):
        raise ValueError(f"config must be a UNetConfig, got {type(config).__name__}")
    return model.build(images, num_classes, is_training, config, scope=scope, reuse=reuse)
