"""Max pooling that remembers where each maximum was, and the unpooling that uses it.

SegNet's decoder upsamples by putting every value back where the encoder's
2x2 max pool found it (:func:`max_unpool`), zeros elsewhere. The forward pass
reuses TensorFlow's fused ``MaxPoolGradWithArgmax`` kernel (which routes each
incoming value to the position its argmax names, exactly unpooling, on CPU and
GPU), with a gather-based gradient registered here; ``'scatter_nd'`` is the
formulation of most SegNet ports, kept for comparison (``benchmarks/
bench_unpool.py``). Indices stay int64 and each unpooling receives the exact
pre-pool shape, so odd sizes such as VOC's 500x375 round-trip.

That fused kernel checks its indices with a C++ CHECK, which *aborts the
process* on an index outside the output; :func:`max_unpool` therefore checks
them first (``checked=True``, the default) and raises a Python error instead.

:func:`max_pool` is the same pooling without the indices, for decoders that
do not read them (FCN, U-Net).
"""
from __future__ import annotations

from segnet_lib._tf import lean_memory, tf

__all__ = ["UNPOOL_METHODS", "max_pool", "max_pool_with_argmax", "max_unpool"]

UNPOOL_METHODS = ("fused", "scatter_nd")

# Pooling is always 2x2 with stride 2, 'SAME' padding: for an odd size the last
# window is cut by the border, like Caffe's ceil-mode pooling, so 375 -> 188.
_POOL_KSIZE = (1, 2, 2, 1)
_POOL_STRIDES = (1, 2, 2, 1)
_POOL_PADDING = "SAME"


def max_pool_with_argmax(x, name=None, lean_gradient=False):
    """2x2, stride-2 max pooling that also returns where each maximum was.

    'SAME' padding: an odd size ``n`` pools to ``ceil(n / 2)``.

    Args:
        x: float tensor ``[batch, height, width, channels]``.
        name: optional op name.
        lean_gradient: when ``x`` is the output of a ReLU, compute the
            gradient of ReLU and pool together from the pooled values and the
            indices, so that the backward pass does not keep ``x`` (see
            :func:`_pool_of_relu`). The same values as the plain gradient.

    Returns:
        ``(pooled, argmax)``: ``pooled`` is ``[batch, ceil(height/2), ceil(width/2),
        channels]``; ``argmax`` (int64, same shape) holds, per image, the flat index
        ``(y * width + x) * channels + c`` of each maximum in ``x`` (the batch is
        not part of the index). Ties: TensorFlow picks one of the equal values.
    """
    if lean_gradient and x.op.type == "Relu":
        return _pool_of_relu(x.op.inputs[0], x, name)
    return _pool_with_argmax(x, name)


def _pool_with_argmax(x, name):
    return tf.nn.max_pool_with_argmax(
        x, ksize=_POOL_KSIZE, strides=_POOL_STRIDES, padding=_POOL_PADDING,
        Targmax=tf.int64, include_batch_in_index=False, name=name)


def _pool_of_relu(y, h, name):
    """``max_pool_with_argmax(h)`` for ``h = relu(y)``, with a gradient that does not keep ``h``.

    TensorFlow's gradients of the two ops keep ``h`` (the ReLU's gradient
    reads its output; the pool's reads its input's shape) until the backward
    pass reaches them: the largest map of each encoder stage. Together they
    need less: the pool sends each pooled gradient to the position its index
    names, where ``h`` is the pooled value itself, and the ReLU passes it on
    where that value is positive. So the gradient with respect to ``y`` is
    the pooled gradient, masked by ``pooled > 0``, unpooled at the indices:
    the pooled map and the indices are kept anyway (the next layer's input,
    the decoder's indices).

    Args:
        y: the ReLU's input, float ``[batch, height, width, channels]``.
        h: ``relu(y)``.
        name: optional op name of the pool.

    Returns:
        ``(pooled, argmax)`` as :func:`max_pool_with_argmax` returns them.
    """
    @tf.custom_gradient
    def relu_then_pool(y, h):
        pooled, argmax = _pool_with_argmax(h, name)
        shape = tf.shape(h, out_type=tf.int64)

        def gradient(grad_pooled, grad_argmax):
            del grad_argmax  # integer indices carry no gradient
            # Under the control dependency, the mask and the unpooling's
            # buffer are made when the gradient arrives, not as soon as their
            # inputs exist (the start of the backward pass), where they would
            # wait, full size, until it does.
            with tf.control_dependencies([grad_pooled]):
                masked = grad_pooled * tf.cast(pooled > 0, grad_pooled.dtype)
                return [_unpool_fused(masked, argmax, shape), None]
        return (pooled, argmax), gradient

    return relu_then_pool(y, h)


def max_pool(x, name=None):
    """2x2, stride-2, 'SAME' max pooling without indices: the windows of :func:`max_pool_with_argmax`.

    Args:
        x: float tensor ``[batch, height, width, channels]``.
        name: optional op name.

    Returns:
        ``[batch, ceil(height/2), ceil(width/2), channels]``, equal to the
        pooled output of :func:`max_pool_with_argmax`.
    """
    return tf.nn.max_pool(x, ksize=_POOL_KSIZE, strides=_POOL_STRIDES, padding=_POOL_PADDING,
                          name=name)


_UNPOOL_GRADIENT = "SegNetMaxUnpoolGrad"


def _gather_at_argmax(values, argmax, include_batch_in_index):
    """``values`` (the shape the indices point into) read at ``argmax``.

    This is the gradient of unpooling (and the same as reading the pooled value
    back): each pooled position receives the gradient of the one output pixel
    it was written to.
    """
    if include_batch_in_index:
        flat = tf.gather(tf.reshape(values, [-1]), tf.reshape(argmax, [-1]))
    else:
        batch = tf.shape(values)[0]
        flat = tf.gather(tf.reshape(values, tf.stack([batch, -1])),
                         tf.reshape(argmax, tf.stack([batch, -1])), batch_dims=1)
    return tf.reshape(flat, tf.shape(argmax))


def _unpool_gradient(op, grad):
    # Inputs of MaxPoolGradWithArgmax: (input [only its shape is used], grad, argmax).
    # TensorFlow's own gradient of this op (MaxPoolGradGradWithArgmax) has no CPU
    # kernel; a gather at the indices is exact and runs everywhere.
    argmax = op.inputs[2]
    pooled_grad = _gather_at_argmax(grad, argmax, op.get_attr("include_batch_in_index"))
    return [None, pooled_grad, None]


try:
    tf.RegisterGradient(_UNPOOL_GRADIENT)(_unpool_gradient)
except KeyError:  # module re-imported (e.g. importlib.reload in a notebook)
    pass


def _unpool_fused(pooled, argmax, output_shape):
    # MaxPoolGradWithArgmax routes each incoming value to the position its
    # argmax names, which is exactly unpooling, in one fused kernel on CPU and
    # GPU. Its first input only provides the output shape (the kernel zeroes
    # its output itself): an uninitialised tensor of that shape, made from the
    # shape vector so the encoder's feature map need not be kept. Not
    # tf.zeros: with a static shape the graph optimiser folds zeros into a
    # constant, which the session then keeps for good (93 MB for SegNet's five
    # unpoolings at batch 4, 224x224); an Empty tensor lives only until the
    # kernel reuses its buffer for the output.
    if lean_memory():
        # Made once pooled exists, for the same reason as the gradient's mask.
        with tf.control_dependencies([pooled]):
            shape = tf.raw_ops.Empty(shape=tf.cast(output_shape, tf.int32), dtype=pooled.dtype,
                                     init=False)
    else:
        shape = tf.zeros(output_shape, dtype=pooled.dtype)
    with tf.get_default_graph().gradient_override_map({"MaxPoolGradWithArgmax": _UNPOOL_GRADIENT}):
        return tf.raw_ops.MaxPoolGradWithArgmax(
            input=shape, grad=pooled, argmax=argmax, ksize=list(_POOL_KSIZE),
            strides=list(_POOL_STRIDES), padding=_POOL_PADDING, include_batch_in_index=False)


def _unpool_scatter_nd(pooled, argmax, output_shape):
    # The formulation found in most SegNet ports: make the per-image index global
    # by adding batch * (H * W * C), scatter into a flat zero vector, reshape.
    output_shape = tf.cast(output_shape, tf.int64)
    per_image = tf.reduce_prod(output_shape[1:])
    batch = tf.shape(pooled, out_type=tf.int64)[0]
    offsets = tf.reshape(tf.range(batch, dtype=tf.int64) * per_image, [-1, 1, 1, 1])
    indices = tf.reshape(argmax + offsets, [-1, 1])
    flat = tf.scatter_nd(indices, tf.reshape(pooled, [-1]), tf.reshape(batch * per_image, [1]))
    return tf.reshape(flat, output_shape)


_UNPOOL_IMPLEMENTATIONS = {"fused": _unpool_fused, "scatter_nd": _unpool_scatter_nd}


def _checked_indices(pooled, argmax, output_shape, op_name):
    """``argmax`` behind run-time checks of its range and of ``pooled``'s size.

    The indices handed on are also clipped into range: when all inputs are
    constants, TensorFlow's graph optimiser runs the fused kernel while
    folding constants, before any assertion, and an index out of range would
    abort the process there. The assertions still run, and fail the step.
    """
    limit = tf.reduce_prod(output_shape[1:])
    low, high = tf.reduce_min(argmax), tf.reduce_max(argmax)
    in_range = tf.debugging.Assert(
        tf.logical_or(tf.equal(tf.size(argmax), 0),
                      tf.logical_and(low >= 0, high < limit)),
        [f"{op_name}: argmax holds indices from", low, "to", high, "but per-image indices "
         "(include_batch_in_index=False) into an output of height * width * channels =",
         limit, "values must lie in [0,", limit, ")"], name="check_argmax_range")
    pooled_hw = tf.shape(pooled, out_type=tf.int64)[1:3]
    expected_hw = (output_shape[1:3] + 1) // 2
    sizes_match = tf.debugging.Assert(
        tf.reduce_all(tf.equal(pooled_hw, expected_hw)),
        [f"{op_name}: pooled is (h, w) =", pooled_hw, "but output_shape", output_shape,
         "pools to ceil(H / 2), ceil(W / 2) =", expected_hw], name="check_pooled_size")
    with tf.control_dependencies([in_range, sizes_match]):
        return tf.clip_by_value(argmax, 0, tf.maximum(limit - 1, 0))


def max_unpool(pooled, argmax, output_shape, method="fused", name=None, checked=True):
    """Puts every pooled value back where its maximum came from; zeros elsewhere.

    Args:
        pooled: float tensor ``[batch, h, w, channels]``.
        argmax: int64 (or int32) tensor, same shape: per-image flat indices
            ``(y * width + x) * channels + c`` into the output, as returned by
            :func:`max_pool_with_argmax`. Never pass them through float32, which
            is exact only up to 2**24.
        output_shape: ``[batch, height, width, channels]`` of the map before pooling,
            as a list of ints or an int tensor (``tf.shape(x)``). Passing it
            explicitly is what makes odd sizes and a dynamic batch work:
            ``h = ceil(height / 2)`` cannot tell 375 from 376.
        method: ``'fused'`` (TensorFlow's MaxPoolGradWithArgmax kernel; ``h, w``
            must equal ``ceil(height / 2), ceil(width / 2)``) or ``'scatter_nd'``.
        name: optional name scope.
        checked: check at run time that every index lies in ``[0, height *
            width * channels)`` and that ``h, w`` are ``ceil(height / 2),
            ceil(width / 2)``, so that bad indices (e.g. TensorFlow's
            ``include_batch_in_index=True`` ones, or another pool's) raise an
            error naming this op and the range found, instead of failing a
            CHECK inside the fused kernel, which aborts the whole process (a
            notebook's kernel dies without a message). It costs two reductions
            and a clip over ``argmax`` (``benchmarks/bench_unpool.py`` prints
            the time against the unchecked op); the model builder turns it
            off because its indices come from its own pools.

    Returns:
        A tensor ``[batch, height, width, channels]`` of ``pooled``'s dtype. The
        gradient with respect to ``pooled`` is the output gradient read at
        ``argmax``; ``argmax`` has none.

    Raises:
        ValueError: for float indices, mismatched ranks or an unknown method.
        tf.errors.InvalidArgumentError (when run, with ``checked``): indices
            outside the output, or ``pooled`` of the wrong size.
    """
    if method not in _UNPOOL_IMPLEMENTATIONS:
        raise ValueError(f"max_unpool method={method!r}; expected one of {UNPOOL_METHODS}")
    with tf.name_scope(name, "max_unpool", [pooled, argmax]) as scope:
        pooled = tf.convert_to_tensor(pooled)
        argmax = tf.convert_to_tensor(argmax)
        if not argmax.dtype.is_integer:
            raise ValueError(
                f"max_unpool: argmax has dtype {argmax.dtype.name}; expected int64 or int32 "
                "(float indices lose exactness above 2**24)")
        if pooled.shape.ndims is not None and pooled.shape.ndims != 4:
            raise ValueError(f"max_unpool: pooled must be [batch, h, w, channels], got {pooled.shape}")
        pooled.shape.assert_is_compatible_with(argmax.shape)
        static = None
        if isinstance(output_shape, (list, tuple)):
            if len(output_shape) != 4:
                raise ValueError(f"max_unpool: output_shape {output_shape} must have 4 entries")
            static = [None if d is None else int(d) for d in output_shape]
            if None in static:
                raise ValueError(f"max_unpool: output_shape {output_shape} has an unknown entry; "
                                 "pass tf.shape(x) for dynamic sizes")
        output_shape = tf.cast(output_shape, tf.int64)
        argmax = tf.cast(argmax, tf.int64)  # int -> int: exact
        if checked:
            argmax = _checked_indices(pooled, argmax, output_shape, scope.rstrip("/"))
        out = _UNPOOL_IMPLEMENTATIONS[method](pooled, argmax, output_shape)
        out.set_shape(static if static else [pooled.shape[0], None, None, pooled.shape[-1]])
        return out
