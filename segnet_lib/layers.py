"""The layers every graph builder is made of: convolution, batch norm, dropout, up-convolution.

:func:`segnet_lib.model.build` assembles SegNet, its decoder variants and
U-Net from an architecture table of :class:`LayerSpec` rows; each row becomes
one :func:`conv` here. Only ``tf.get_variable`` and ``tf.nn`` ops are used (no
Keras), so the code reads like, and runs on, TensorFlow 1.15.

The functions take the model's config for the options they share: any object
with ``weight_decay``, ``batch_norm_decay`` and ``batch_norm_epsilon`` (both
:class:`segnet_lib.model.SegNetConfig` and :class:`segnet_lib.unet.UNetConfig`
have them, with the same meaning, and check them with
:func:`check_layer_options`).

Variables of one layer live under ``<scope>/<layer>/``: ``weights``, ``biases``
and ``BatchNorm/{gamma,beta,moving_mean,moving_variance}``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from segnet_lib._tf import lean_memory, tf
from segnet_lib.unpool import max_unpool

__all__ = [
    "LayerSpec", "WEIGHTS_NAME", "BIASES_NAME", "BATCH_NORM_SCOPE", "check_layer_options",
    "static_bool",
    "as_bool_tensor", "smart_cond", "batch_norm", "weight_decay_regularizer", "conv",
    "transposed_conv", "dropout",
]

# Variable names, as module constants (tf-slim style).
WEIGHTS_NAME = "weights"
BIASES_NAME = "biases"
BATCH_NORM_SCOPE = "BatchNorm"


class LayerSpec(NamedTuple):
    """One convolution of an architecture table.

    Attributes:
        name: layer (and variable scope) name, e.g. ``'conv3_2'``.
        features: output features; ``None`` means ``num_classes``.
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


def check_layer_options(config) -> None:
    """Checks a model config's layer options (the one home of these rules).

    Raises:
        ValueError: naming the config's class and the field, for a negative
            ``weight_decay``, a ``batch_norm_decay`` outside [0, 1) or a
            ``batch_norm_epsilon`` below 1.001e-5.
    """
    name = type(config).__name__
    if not config.weight_decay >= 0:
        raise ValueError(f"{name}.weight_decay={config.weight_decay!r} must be >= 0")
    if not 0 <= config.batch_norm_decay < 1:
        raise ValueError(f"{name}.batch_norm_decay={config.batch_norm_decay!r} must be in [0, 1)")
    if not config.batch_norm_epsilon >= 1.001e-5:
        raise ValueError(
            f"{name}.batch_norm_epsilon={config.batch_norm_epsilon!r} must be >= 1.001e-5 "
            "(fused batch norm raises smaller values without telling)")


def static_bool(value):
    """``value`` as a Python bool if it is one (or a NumPy bool), else ``None``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return None


def as_bool_tensor(value, what):
    """A scalar bool tensor from a Python bool or a scalar bool tensor.

    Raises:
        ValueError: naming ``what``, for anything else.
    """
    if static_bool(value) is not None:
        return tf.constant(bool(value))
    value = tf.convert_to_tensor(value)
    if value.dtype != tf.bool or value.shape.ndims not in (None, 0):
        raise ValueError(f"{what} must be a Python bool or a scalar bool tensor, got {value}")
    return value


def smart_cond(pred, true_fn, false_fn):
    """``tf.cond`` that builds only one branch when ``pred`` is a Python bool."""
    static = static_bool(pred)
    if static is not None:
        return true_fn() if static else false_fn()
    return tf.cond(pred, true_fn, false_fn)


def batch_norm(x, is_training, config):
    """Batch norm with moving statistics updated through ``UPDATE_OPS``.

    Args:
        x: float32 ``[batch, height, width, channels]``, channels known.
        is_training: Python bool or scalar bool tensor: batch statistics (and
            moving-average updates) or the moving statistics.
        config: gives ``batch_norm_decay`` and ``batch_norm_epsilon``.

    Returns:
        float32, the shape of ``x``.
    """
    channels = tf.dimension_value(x.shape[-1])
    with tf.variable_scope(BATCH_NORM_SCOPE):
        gamma = tf.get_variable("gamma", [channels], initializer=tf.ones_initializer())
        beta = tf.get_variable("beta", [channels], initializer=tf.zeros_initializer())
        stat_collections = [tf.GraphKeys.GLOBAL_VARIABLES, tf.GraphKeys.MOVING_AVERAGE_VARIABLES]
        # MEAN: under a tf.distribute strategy each replica's update is averaged
        # over the replicas (segnet_lib.distribute: batch norm per replica).
        mean_over_replicas = tf.VariableAggregation.MEAN
        moving_mean = tf.get_variable("moving_mean", [channels], initializer=tf.zeros_initializer(),
                                      trainable=False, collections=stat_collections,
                                      aggregation=mean_over_replicas)
        moving_var = tf.get_variable("moving_variance", [channels], initializer=tf.ones_initializer(),
                                     trainable=False, collections=stat_collections,
                                     aggregation=mean_over_replicas)

        def training():
            return tf.nn.fused_batch_norm(x, gamma, beta, epsilon=config.batch_norm_epsilon,
                                          is_training=True)

        def inference():
            y, _, _ = tf.nn.fused_batch_norm(x, gamma, beta, mean=moving_mean, variance=moving_var,
                                             epsilon=config.batch_norm_epsilon, is_training=False)
            # Returning the moving statistics as the "batch" ones makes the update
            # below a no-op when a bool tensor selects inference.
            return y, tf.identity(moving_mean), tf.identity(moving_var)

        y, mean, var = smart_cond(is_training, training, inference)
        if static_bool(is_training) is not False:
            momentum = 1.0 - config.batch_norm_decay
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS,
                                 tf.assign_sub(moving_mean, (moving_mean - mean) * momentum))
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS,
                                 tf.assign_sub(moving_var, (moving_var - var) * momentum))
        y.set_shape(x.shape)
        return y


def weight_decay_regularizer(config):
    """The L2 regularizer of every learned kernel, or None without weight decay.

    Args:
        config: gives ``weight_decay``.

    Returns:
        ``fn(w)`` -> ``weight_decay * sum(w ** 2) / 2``, or None.
    """
    if not config.weight_decay > 0:
        return None

    def regularizer(w):
        # tf.nn.l2_loss is sum(w**2) / 2, so the gradient is weight_decay * w,
        # the same as Caffe's weight_decay.
        return tf.multiply(config.weight_decay, tf.nn.l2_loss(w), name="l2_weight_decay")
    return regularizer


def conv(net, spec, features, is_training, config):
    """Convolution (+ bias) (+ batch norm) (+ ReLU) in variable scope ``spec.name``.

    When ``net`` is the ReLU of a batch norm with batch statistics (the
    previous layer in training), or that ReLU unpooled, the backward pass
    recomputes it instead of keeping it (see :func:`_conv_recomputing_input`;
    ``$SEGNET_LEAN_MEMORY=0`` turns this off).

    Args:
        net: float32 ``[batch, height, width, in]``, ``in`` known.
        spec: the :class:`LayerSpec` (kernel, bias, batch norm, ReLU).
        features: output channels (``spec.features`` resolved).
        is_training: for batch norm (see :func:`batch_norm`).
        config: gives the weight decay and batch-norm options.

    Returns:
        float32 ``[batch, height, width, features]`` ('SAME' padding, stride 1).
    """
    in_features = tf.dimension_value(net.shape[-1])
    if in_features is None:
        raise ValueError(f"{spec.name}: the input's channel dimension must be known, got {net.shape}")
    with tf.variable_scope(spec.name):
        kernel = tf.get_variable(
            WEIGHTS_NAME, [spec.kernel, spec.kernel, in_features, features],
            # The Caffe model's 'msra' filler: He et al. (2015) for ReLU networks.
            initializer=tf.variance_scaling_initializer(scale=2.0, mode="fan_in"),
            regularizer=weight_decay_regularizer(config))
        recipe = _recomputable(net) if lean_memory() else None
        if recipe is None:
            net = tf.nn.conv2d(net, kernel, strides=[1, 1, 1, 1], padding="SAME")
        else:
            net = _conv_recomputing_input(net, kernel, recipe)
        if spec.bias:
            biases = tf.get_variable(BIASES_NAME, [features], initializer=tf.zeros_initializer())
            net = tf.nn.bias_add(net, biases)
        if spec.batch_norm:
            net = batch_norm(net, is_training, config)
        if spec.relu:
            net = tf.nn.relu(net)
    return net


class _Recomputable(NamedTuple):
    """How a convolution's input can be made again from a batch norm's input."""

    c: object          # the batch norm's input, kept for its own gradient anyway
    gamma: object
    beta: object
    epsilon: float
    argmax: object     # None, or the indices of an unpooling after the ReLU
    shape: object      # None, or the unpooling's output shape (int tensor [4])


def _bn_relu_source(h):
    """``(c, gamma, beta, epsilon)`` if ``h`` is ``relu(batch_norm(c))`` with batch statistics, else None."""
    if h.op.type != "Relu":
        return None
    bn = h.op.inputs[0].op
    if not bn.type.startswith("FusedBatchNorm") or not bn.get_attr("is_training"):
        return None
    return bn.inputs[0], bn.inputs[1], bn.inputs[2], bn.get_attr("epsilon")


def _recomputable(net):
    """How to make ``net`` again in the backward pass, or None.

    Two patterns match: ``relu(batch_norm(c))`` (a convolution after a
    convolution) and ``max_unpool(relu(batch_norm(c)), argmax)`` (a SegNet
    decoder stage's first convolution: ``segnet_lib.unpool``'s fused
    unpooling, whose first input is an ``Empty`` of the output shape). Only
    the op pattern that :func:`batch_norm` builds for a Python ``True``
    ``is_training`` matches; under a bool tensor (a ``tf.cond``) nothing does.
    """
    argmax = shape = None
    if net.op.type == "MaxPoolGradWithArgmax" and net.op.inputs[0].op.type == "Empty":
        argmax, shape = net.op.inputs[2], net.op.inputs[0].op.inputs[0]
        net = net.op.inputs[1]
    source = _bn_relu_source(net)
    return None if source is None else _Recomputable(*source, argmax, shape)


def _conv_recomputing_input(net, kernel, recipe):
    """``conv2d(net, kernel)``, keeping for the backward pass only what ``net`` is made from.

    By default the backward pass of conv -> batch norm -> ReLU -> conv holds two
    full-size tensors per layer: ``c`` (for batch norm's gradient) and ``h =
    relu(batch_norm(c))`` (for ReLU's gradient and the next kernel's). Here
    ``net`` (``h``, or ``h`` unpooled to four times its size in SegNet's
    decoder) is freed once the forward convolution has read it; the gradient
    makes it again from ``c`` (batch norm, ReLU and unpooling cost a small
    fraction of a convolution) and returns the gradients of ``c``, ``gamma``,
    ``beta`` and ``kernel`` through the recomputed ops. The values are the same
    ops on the same inputs, so the gradients equal the plain graph's (a test
    checks this). Anything else that reads ``net`` still gets its gradient
    through the original ops, and the two contributions add up at ``c``, as
    they should.

    Args:
        net: float ``[batch, height, width, in]``.
        kernel: ``[k, k, in, out]``.
        recipe: a :class:`_Recomputable` that makes ``net``.

    Returns:
        float ``[batch, height, width, out]``.
    """
    def convolve(x, w):
        return tf.nn.conv2d(x, w, strides=[1, 1, 1, 1], padding="SAME")

    @tf.custom_gradient
    def block(net, c, gamma, beta, kernel):
        def gradient(grad_out):
            # The control dependency makes this a new computation at backward
            # time: without it, the graph optimiser would merge it with the
            # forward batch norm, and net would be kept after all.
            with tf.control_dependencies([grad_out]):
                c_again = tf.identity(c)
            y, _, _ = tf.nn.fused_batch_norm(c_again, gamma, beta, epsilon=recipe.epsilon,
                                             is_training=True)
            again = tf.nn.relu(y)
            if recipe.argmax is not None:
                again = max_unpool(again, recipe.argmax, recipe.shape, checked=False)
            # The kernel's gradient first, then the input's: the remade input
            # is freed before the input's gradient, of the same size, exists
            # (TensorFlow's own gradient computes both at once).
            kernel_grad = tf.nn.conv2d_backprop_filter(again, tf.shape(kernel), grad_out,
                                                       strides=[1, 1, 1, 1], padding="SAME")
            with tf.control_dependencies([kernel_grad]):
                input_grad = tf.nn.conv2d_backprop_input(tf.shape(again), kernel, grad_out,
                                                         strides=[1, 1, 1, 1], padding="SAME")
            grads = tf.gradients(again, [c_again, gamma, beta], input_grad)
            return [None, *grads, kernel_grad]
        return convolve(net, kernel), gradient

    return block(net, recipe.c, recipe.gamma, recipe.beta, kernel)


def transposed_conv(net, features, output_shape, kernel_size, config, initializer=None,
                    bias=False, relu=False):
    """A learned 2x upsampling: stride-2 transposed convolution to an exact size.

    Builds its variables in the current variable scope. With 'SAME' padding
    and an explicit ``output_shape``, input pixel ``i`` lands on the output
    window that a 2x2, stride-2 'SAME' pool of that size gathered into ``i``,
    so odd sizes (45 -> 23 -> 45) come back exactly.

    Args:
        net: float32 ``[batch, h, w, in]``, ``in`` known.
        features: output channels.
        output_shape: int tensor ``[4]`` (or list) ``[batch, H, W, any]`` with
            ``h = ceil(H / 2)``, ``w = ceil(W / 2)``; its channel entry is
            replaced by ``features``.
        kernel_size: square kernel size (U-Net: 2; FCN: 8).
        config: gives the weight decay.
        initializer: of the kernel (``[k, k, features, in]``, the layout of
            ``conv2d_transpose``); default He et al.'s for ReLU networks
            (variance 2 / fan-in), with the fan-in an output pixel really has
            at stride 2: ``(k / 2)**2 * in``.
        bias: add a bias vector.
        relu: apply ReLU.

    Returns:
        float32 ``[batch, H, W, features]``.
    """
    in_features = tf.dimension_value(net.shape[-1])
    if in_features is None:
        raise ValueError(f"transposed_conv: the input's channel dimension must be known, "
                         f"got {net.shape}")
    if initializer is None:
        # variance_scaling reads k * k * features as the fan-in off this layout,
        # but at stride 2 each output pixel receives (k / 2)**2 taps per input
        # channel: scale so the variance is 2 / fan_in for the real fan-in.
        real_fan_in = max(1, (kernel_size // 2) ** 2) * in_features
        initializer = tf.variance_scaling_initializer(
            scale=2.0 * kernel_size * kernel_size * features / real_fan_in, mode="fan_in")
    kernel = tf.get_variable(WEIGHTS_NAME, [kernel_size, kernel_size, features, in_features],
                             initializer=initializer, regularizer=weight_decay_regularizer(config))
    shape = tf.concat([tf.cast(output_shape[:3], tf.int32), [features]], axis=0)
    net = tf.nn.conv2d_transpose(net, kernel, shape, strides=[1, 2, 2, 1], padding="SAME")
    if bias:
        biases = tf.get_variable(BIASES_NAME, [features], initializer=tf.zeros_initializer())
        net = tf.nn.bias_add(net, biases)
    if relu:
        net = tf.nn.relu(net)
    return net


def dropout(net, active, rate, name):
    """Dropout when ``active`` (Python bool or bool tensor), identity otherwise."""
    with tf.name_scope(name):
        return smart_cond(active, lambda: tf.nn.dropout(net, rate=rate), lambda: tf.identity(net))
