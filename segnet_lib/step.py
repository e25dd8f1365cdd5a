"""One training step: the run's model on a batch, its loss and one optimiser update, on
one or many replicas.

:func:`training_step` is the step :func:`segnet_lib.train.train` runs on one
device (and what ``benchmarks/bench_train.py`` and ``gpu-check`` time);
:func:`replicated_training_step` runs it on every replica of a
``tf.distribute`` strategy (see :mod:`segnet_lib.distribute`).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

from segnet_lib import model
from segnet_lib._tf import lean_memory, tf
from segnet_lib.losses import learning_rate_schedule, make_optimizer, pixel_accuracy, segmentation_loss
from segnet_lib.voc import IGNORE_LABEL

__all__ = ["TrainingStep", "training_step", "replicated_training_step"]


class TrainingStep(NamedTuple):
    """The tensors of one training step (see :func:`training_step`)."""

    logits: Any          # float32 [batch, height, width, num_classes]
    data_loss: Any       # the (weighted) cross-entropy
    reg_loss: Any        # the weight decay term
    loss: Any            # their sum, which the optimiser minimises
    accuracy: Any        # pixel accuracy of the batch
    learning_rate: Any
    global_step: Any
    train_op: Any        # one update (and the batch-norm statistics' update)


def training_step(config, images, labels, num_classes: int, class_weights=None,
                  replicas: int = 1, losses_from: Optional[int] = None) -> TrainingStep:
    """Builds the run's model (SegNet, a decoder variant or U-Net) on a batch, its loss and one
    optimiser update.

    Args:
        config: the :class:`~segnet_lib.config.TrainConfig` (model, optimiser,
            learning rate, precision).
        images: float32 ``[batch, height, width, 3]``, VGG-normalised.
        labels: int ``[batch, height, width]``, 255 = void.
        num_classes: ``C``.
        class_weights: None or float ``[C]``.
        replicas: how many replicas run this step in sync (over all workers)
            when it is called once per replica under a strategy, whose
            optimiser sums the replicas' gradients: each replica minimises its
            loss divided by this, so that the sum is the mean cross-entropy
            plus the weight decay once.
        losses_from: where the model's terms start in
            ``tf.GraphKeys.REGULARIZATION_LOSSES`` (None: where this call
            starts). Under a strategy, the length of that collection before the
            first replica started, see :func:`replicated_training_step`.

    Returns:
        A :class:`TrainingStep` (per replica: its own losses and update).
    """
    global_step = tf.train.get_or_create_global_step()
    # Only what this call adds to UPDATE_OPS is this replica's: under a strategy
    # the graph (and its collections) holds every replica's ops.
    updates_before = len(tf.get_collection(tf.GraphKeys.UPDATE_OPS))
    if losses_from is None:
        losses_from = len(tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES))
    logits, _ = model.build(images, num_classes, is_training=True, config=config.model_config())
    data_loss = segmentation_loss(logits, labels, num_classes, class_weights, IGNORE_LABEL)
    # The builder put weight_decay * sum(w ** 2) / 2 of every kernel it created
    # there. Under a strategy the first replica creates the variables (and
    # their terms) and the others reuse them, all of them having built the
    # whole model by now: each replica takes every term of the model.
    reg = tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)[losses_from:]
    reg_loss = tf.add_n(reg, name="weight_decay") if reg else tf.constant(0.0)
    loss = tf.add(data_loss, reg_loss, name="total_loss")
    accuracy = pixel_accuracy(logits, labels, IGNORE_LABEL)
    learning_rate = learning_rate_schedule(config, global_step)
    optimizer = make_optimizer(config, learning_rate)
    grads_and_vars = _gradients(optimizer, data_loss, reg_loss, replicas)
    # Batch-norm moving averages are updated with every step.
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)[updates_before:]):
        train_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
    return TrainingStep(logits, data_loss, reg_loss, loss, accuracy, learning_rate, global_step,
                        train_op)


def _gradients(optimizer, data_loss, reg_loss, replicas):
    """The gradients of ``(data_loss + reg_loss) / replicas``, each weight-decay term's computed late.

    The gradient of ``weight_decay * sum(w ** 2) / 2`` is ``weight_decay * w``:
    it needs nothing from the backward pass, so TensorFlow computes every
    kernel's at the start of backpropagation and holds it until the kernel's
    data gradient arrives, the encoder's last; on the full SegNet that is a
    copy of every kernel (112 MB) alive at the step's peak. With
    ``segnet_lib._tf.lean_memory()`` (the default) the data loss is
    differentiated first and each kernel's decay gradient is computed only once
    that kernel's data gradient exists, then added to it: the same sum,
    computed later. The optimiser's own ``compute_gradients`` differentiates
    the data loss, so a loss-scaling optimiser still scales it.

    Args:
        optimizer: a ``tf.train.Optimizer``.
        data_loss: scalar, the (weighted) cross-entropy.
        reg_loss: scalar, the sum of the weight-decay terms.
        replicas: both are divided by this (see :func:`training_step`).

    Returns:
        ``[(gradient, variable)]`` for every trainable variable, as
        ``compute_gradients`` gives them.
    """
    data_objective, decay = data_loss, reg_loss
    if replicas != 1:
        data_objective = tf.divide(data_loss, float(replicas), name="replica_data_objective")
        decay = tf.divide(reg_loss, float(replicas), name="replica_decay")
    if not lean_memory():
        return optimizer.compute_gradients(tf.add(data_objective, decay, name="objective"))
    out = []
    for grad, var in optimizer.compute_gradients(data_objective):
        if grad is not None:
            with tf.control_dependencies([grad]):
                decay_grad = tf.gradients(decay, [var])[0]
            if decay_grad is not None:
                grad = tf.add(grad, decay_grad)
        out.append((grad, var))
    return out


def replicated_training_step(strategy, config, dataset, num_classes: int, class_weights=None):
    """:func:`training_step` on every replica of ``strategy``, each on its share of a batch.

    Build it inside ``strategy.scope()``. The reported losses and accuracy are
    means over the replicas (the weight decay is the same on all).

    Args:
        strategy: a ``tf.distribute`` strategy (TF1 graph mode).
        config: the :class:`~segnet_lib.config.TrainConfig`.
        dataset: ``tf.data`` of ``(images, labels)`` batched by the *global*
            batch size; the strategy splits each batch between the replicas.
        num_classes: ``C``.
        class_weights: None or float ``[C]``.

    Returns:
        ``(step, images, labels, iterator)``: a :class:`TrainingStep` of
        cross-replica tensors (``logits`` are the first replica's), the first
        replica's images and labels (for summaries), and the iterator, whose
        ``initializer`` must run before the first step.
    """
    total = strategy.num_replicas_in_sync
    iterator = strategy.make_dataset_iterator(dataset)
    # Replicas build in turns, each pausing at every variable it creates or
    # updates (a merge_call), so the weight-decay terms the first one adds
    # land while the others are building too: each takes them from here on.
    losses_from = len(tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES))

    def replica_step(inputs):
        images, labels = inputs
        step = training_step(config, images, labels, num_classes, class_weights, total,
                             losses_from)
        return step._replace(global_step=tf.identity(step.global_step)), images, labels

    step, images, labels = strategy.experimental_run(replica_step, iterator)
    first = [strategy.experimental_local_results(x)[0]
             for x in (step.logits, step.learning_rate, step.global_step, images, labels,
                       step.reg_loss)]
    mean = tf.distribute.ReduceOp.MEAN
    data_loss = strategy.reduce(mean, step.data_loss)
    reduced = TrainingStep(
        logits=first[0], data_loss=data_loss, reg_loss=first[5],
        loss=tf.add(data_loss, first[5], name="total_loss"),
        accuracy=strategy.reduce(mean, step.accuracy), learning_rate=first[1],
        global_step=first[2], train_op=strategy.group(step.train_op))
    return reduced, first[3], first[4], iterator
