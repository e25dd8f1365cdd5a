"""What training minimises, and how: the loss, the accuracy, the learning rate, the optimiser.

:func:`segnet_lib.train.training_step` assembles them into one update; each
is also usable on its own (notebook 04 writes the loss by hand and checks it
against :func:`segmentation_loss`).
"""
from __future__ import annotations

from segnet_lib._tf import lean_memory, tf

__all__ = ["segmentation_loss", "pixel_accuracy", "learning_rate_schedule", "make_optimizer"]


def segmentation_loss(logits, labels, num_classes: int, class_weights=None,
                      ignore_label: int = 255):
    """Pixel-wise softmax cross-entropy, void pixels ignored, optionally class-weighted.

    ``loss = sum_i w[y_i] * xent_i / N`` over the ``N`` non-void pixels ``i``
    of the batch, the normalisation of Caffe's ``SoftmaxWithLoss`` that the
    SegNet authors used with class weights (so the weights change the balance
    between classes *and* the loss's scale). A batch with no labelled pixel
    gives 0.

    Args:
        logits: float32 ``[batch, height, width, num_classes]``.
        labels: int ``[batch, height, width]``: class ids, ``ignore_label`` = void.
        num_classes: ``C``.
        class_weights: None, or float ``[C]`` (e.g. median-frequency weights).
        ignore_label: the void value.

    Returns:
        A float32 scalar tensor.

    Raises:
        tf.errors.InvalidArgumentError (when run): a label that is neither a
            class id nor ``ignore_label``.
    """
    with tf.name_scope("segmentation_loss"):
        logits = tf.convert_to_tensor(logits)
        labels = tf.cast(labels, tf.int32)
        flat_logits = tf.reshape(logits, [-1, num_classes])
        flat_labels = tf.reshape(labels, [-1])
        valid = tf.not_equal(flat_labels, ignore_label)
        safe = tf.where(valid, flat_labels, tf.zeros_like(flat_labels))
        check = tf.debugging.assert_less(
            safe, num_classes,
            message=f"labels must be class ids in [0, {num_classes}) or {ignore_label} (void)")
        check_low = tf.debugging.assert_non_negative(safe, message="labels must not be negative")
        with tf.control_dependencies([check, check_low]):
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=flat_logits)
        weights = tf.cast(valid, tf.float32)
        if class_weights is not None:
            class_weights = tf.convert_to_tensor(class_weights, tf.float32)
            weights *= tf.gather(class_weights, safe)
        count = tf.reduce_sum(tf.cast(valid, tf.float32))
        return tf.reduce_sum(xent * weights) / tf.maximum(count, 1.0)


def pixel_accuracy(logits, labels, ignore_label: int = 255):
    """Share of non-void pixels whose arg-max class is right (a float32 scalar tensor)."""
    with tf.name_scope("pixel_accuracy"):
        labels = tf.cast(labels, tf.int32)
        valid = tf.not_equal(labels, ignore_label)
        right = tf.logical_and(valid, tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels))
        return tf.reduce_sum(tf.cast(right, tf.float32)) / tf.maximum(
            tf.reduce_sum(tf.cast(valid, tf.float32)), 1.0)


def learning_rate_schedule(config, global_step):
    """The learning rate as a tensor of the global step (so resuming restores it).

    Args:
        config: a :class:`~segnet_lib.config.TrainConfig` (``lr_schedule``,
            ``learning_rate``, ``lr_power``, ``steps``).
        global_step: int64 scalar tensor.

    Returns:
        A float32 scalar tensor named ``learning_rate``: ``'constant'``, or
        ``'poly'``: ``learning_rate * (1 - step / steps) ** lr_power``.
    """
    if config.lr_schedule == "constant":
        return tf.constant(config.learning_rate, tf.float32, name="learning_rate")
    return tf.train.polynomial_decay(config.learning_rate, global_step, config.steps,
                                     end_learning_rate=0.0, power=config.lr_power,
                                     name="learning_rate")


def _zeros_at_run_time(shape, dtype=tf.float32, partition_info=None):
    """An initializer: zeros made when the initializer runs (``Empty`` with ``init=True``)."""
    del partition_info
    return tf.raw_ops.Empty(shape=tf.constant(list(shape), tf.int32), dtype=dtype, init=True)


class _ZerosAtRunTime:
    """Optimiser mixin: slots (momentum, Adam's moments) start as zeros made at run time.

    TensorFlow's slots start from ``tf.zeros``, which the graph optimisers fold
    into constants. The session keeps each constant for its whole life, and a
    resource variable assigned a constant shares its buffer until the first
    update copies it, so every slot ends up held twice: for SegNet with
    momentum, 112 MB of zeros kept for nothing (224 MB with Adam's two moments).
    ``Empty(init=True)`` is stateful, so it is not folded: the variable adopts
    the buffer made when the initializer runs, the only one. The slots are the
    same variables, with the same names and values, as ``_zeros_slot`` makes.
    """

    def _zeros_slot(self, var, slot_name, op_name):
        return self._get_or_make_slot_with_initializer(
            var, _zeros_at_run_time, var.shape, var.dtype.base_dtype, slot_name, op_name)


class _MomentumOptimizer(_ZerosAtRunTime, tf.train.MomentumOptimizer):
    pass


class _AdamOptimizer(_ZerosAtRunTime, tf.train.AdamOptimizer):
    pass


def make_optimizer(config, learning_rate):
    """SGD with momentum (the paper) or Adam, as ``config.optimizer`` says.

    With ``config.precision == 'mixed_float16'`` the optimiser is wrapped in
    TensorFlow's loss-scale optimiser with a dynamic scale: the loss is
    multiplied by the scale before the gradients are taken, so that small
    float16 gradients do not flush to zero, and the gradients are divided by it
    before the update; a step whose gradients overflow is skipped and the scale
    halved (it doubles after 2,000 good steps). bfloat16 has float32's exponent
    range and needs none.

    Args:
        config: a :class:`~segnet_lib.config.TrainConfig` (``optimizer``,
            ``momentum``, ``precision``).
        learning_rate: float or scalar tensor.

    Returns:
        A ``tf.train.Optimizer``: TensorFlow's, with the one change of
        :class:`_ZerosAtRunTime` unless ``$SEGNET_LEAN_MEMORY=0``.
    """
    lean = lean_memory()
    if config.optimizer == "sgd":
        optimizer = (_MomentumOptimizer if lean else tf.train.MomentumOptimizer)(
            learning_rate, config.momentum)
    else:
        optimizer = (_AdamOptimizer if lean else tf.train.AdamOptimizer)(learning_rate)
    if config.precision == "mixed_float16":
        optimizer = tf.train.experimental.MixedPrecisionLossScaleOptimizer(optimizer, "dynamic")
    return optimizer
