"""segnet_lib.unpool: max pooling with indices, unpooling, its gradient and its checks.

NumPy references are written here independently. The checked mode is tested
in a subprocess too: without it, bad indices abort the whole process.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from segnet_lib import model, unpool
from segnet_lib._tf import LEAN_MEMORY_ENV, tf


# --------------------------------------------------------------------------
# NumPy references
# --------------------------------------------------------------------------

def np_unpool(pooled, argmax, output_shape):
    """Scatter each pooled value to its per-image flat index (sums duplicates)."""
    batch = output_shape[0]
    out = np.zeros((batch, int(np.prod(output_shape[1:]))), pooled.dtype)
    for b in range(batch):
        np.add.at(out[b], argmax[b].ravel(), pooled[b].ravel())
    return out.reshape(output_shape)


def np_max_pool(x):
    """2x2/2 'SAME' max pool: the maximum of each (possibly cut) window."""
    b, h, w, c = x.shape
    out = np.full((b, -(-h // 2), -(-w // 2), c), -np.inf, x.dtype)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(1, 2))
    return out



# --------------------------------------------------------------------------
# Pooling with indices and unpooling
# --------------------------------------------------------------------------

@pytest.mark.parametrize("method", unpool.UNPOOL_METHODS)
@pytest.mark.parametrize("shape", [(1, 4, 4, 1), (3, 7, 5, 2), (2, 9, 12, 3), (1, 1, 3, 1)])
def test_pool_then_unpool_matches_numpy_with_ties(method, shape, rng):
    # Small integers make many ties inside a window.
    x = rng.integers(0, 3, shape).astype(np.float32)
    with tf.Graph().as_default():
        xt = tf.placeholder(tf.float32, (None,) + shape[1:])
        pooled, argmax = unpool.max_pool_with_argmax(xt)
        out = unpool.max_unpool(pooled, argmax, tf.shape(xt), method=method)
        with tf.Session() as sess:
            p, a, u = sess.run([pooled, argmax, out], {xt: x})
    assert a.dtype == np.int64
    np.testing.assert_array_equal(p, np_max_pool(x))
    # Each index points at a value equal to the maximum, inside its own window.
    b, h, w, c = shape
    for bi in range(b):
        flat = x[bi].ravel()
        np.testing.assert_array_equal(flat[a[bi]], p[bi])
        y, xx, ch = np.unravel_index(a[bi], (h, w, c))
        i, j, k = np.indices(a[bi].shape)
        assert (y // 2 == i).all() and (xx // 2 == j).all() and (ch == k).all()
    np.testing.assert_array_equal(u, np_unpool(p, a, shape))
    # Exactly one nonzero-capable slot per pooled value: the sum is preserved.
    assert np.isclose(u.sum(), p.sum())


@pytest.mark.parametrize("method", unpool.UNPOOL_METHODS)
def test_unpool_random_values_and_int32_indices(method, rng):
    shape = (2, 5, 7, 3)
    x = rng.normal(size=shape).astype(np.float32)
    with tf.Graph().as_default():
        pooled, argmax = unpool.max_pool_with_argmax(tf.constant(x))
        out64 = unpool.max_unpool(pooled, argmax, list(shape), method=method)
        out32 = unpool.max_unpool(pooled, tf.cast(argmax, tf.int32), list(shape), method=method)
        assert out64.shape.as_list() == list(shape)
        with tf.Session() as sess:
            p, a, u64, u32 = sess.run([pooled, argmax, out64, out32])
    np.testing.assert_array_equal(u64, np_unpool(p, a, shape))
    np.testing.assert_array_equal(u32, u64)


def test_unpool_refuses_float_indices_and_unknown_method():
    with tf.Graph().as_default():
        pooled = tf.zeros([1, 2, 2, 1])
        with pytest.raises(ValueError, match="float32"):
            unpool.max_unpool(pooled, tf.zeros([1, 2, 2, 1]), [1, 4, 4, 1])
        with pytest.raises(ValueError, match="method"):
            unpool.max_unpool(pooled, tf.zeros([1, 2, 2, 1], tf.int64), [1, 4, 4, 1], method="dense")
        with pytest.raises(ValueError, match="unknown entry"):
            unpool.max_unpool(pooled, tf.zeros([1, 2, 2, 1], tf.int64), [None, 4, 4, 1])


@pytest.mark.parametrize("method", unpool.UNPOOL_METHODS)
def test_unpool_indices_beyond_float32_exactness(method):
    # 4097 * 4097 > 2**24: an odd flat index up there is not representable in
    # float32, so an implementation that casts indices puts the value elsewhere.
    size = 4097
    x = np.zeros((1, size, size, 1), np.float32)
    x[0, size - 1, size - 2, 0] = 1.0
    assert (size - 1) * size + size - 2 > 2 ** 24
    with tf.Graph().as_default():
        pooled, argmax = unpool.max_pool_with_argmax(tf.constant(x))
        out = unpool.max_unpool(pooled, argmax, tf.shape(x), method=method)
        with tf.Session() as sess:
            u = sess.run(out)
    assert u[0, size - 1, size - 2, 0] == 1.0 and u.sum() == 1.0


@pytest.mark.parametrize("method", unpool.UNPOOL_METHODS)
def test_unpool_gradient_matches_numerical(method, rng):
    shape = (2, 5, 6, 2)
    x = rng.normal(size=shape)
    with tf.Graph().as_default():
        _, argmax = unpool.max_pool_with_argmax(tf.constant(x))
        pooled = tf.placeholder(tf.float64, [None, 3, 3, 2])
        out = unpool.max_unpool(pooled, argmax, list(shape), method=method)
        with tf.Session():
            p0 = rng.normal(size=(2, 3, 3, 2))
            theoretical, numerical = tf.test.compute_gradient(
                pooled, [2, 3, 3, 2], out, list(shape), x_init_value=p0)
    np.testing.assert_allclose(theoretical, numerical, atol=1e-6)
    # Each pooled value feeds exactly one output: one 1 per row of the Jacobian.
    assert np.array_equal(theoretical.sum(axis=1), np.ones(theoretical.shape[0]))


def test_unpool_gradient_through_pooling_on_dynamic_batch(rng):
    # d/dx sum(w * unpool(pool(x))) = w where x is its window's maximum, else 0.
    x = rng.normal(size=(3, 7, 9, 2)).astype(np.float32)
    w = rng.normal(size=x.shape).astype(np.float32)
    grads = []
    for method in unpool.UNPOOL_METHODS:
        with tf.Graph().as_default():
            xt = tf.placeholder(tf.float32, [None, 7, 9, 2])
            pooled, argmax = unpool.max_pool_with_argmax(xt)
            out = unpool.max_unpool(pooled, argmax, tf.shape(xt), method=method)
            (g,) = tf.gradients(tf.reduce_sum(out * w), [xt])
            with tf.Session() as sess:
                gv, u = sess.run([g, out], {xt: x})
        mask = u != 0
        np.testing.assert_allclose(gv[mask], w[mask], rtol=1e-6)
        assert (gv[~mask] == 0).all()
        grads.append(gv)
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 45, 61, 2), (3, 7, 5, 1)])
def test_max_pool_without_indices_has_the_same_windows(shape, rng):
    x = rng.normal(size=shape).astype(np.float32)
    with tf.Graph().as_default():
        plain = unpool.max_pool(tf.constant(x), name="p")
        with_indices, _ = unpool.max_pool_with_argmax(tf.constant(x))
        assert plain.op.type == "MaxPool" and plain.op.name == "p"
        with tf.Session() as sess:
            a, b = sess.run([plain, with_indices])
    np.testing.assert_array_equal(a, np_max_pool(x))
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------
# Checked mode: bad indices raise instead of aborting the process
# --------------------------------------------------------------------------

def batch_indices(shape, rng):
    """Pooled values and TensorFlow's include_batch_in_index=True indices (out of range)."""
    x = rng.normal(size=shape).astype(np.float32)
    with tf.Graph().as_default(), tf.Session() as sess:
        pooled, argmax = sess.run(tf.nn.max_pool_with_argmax(
            x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME", Targmax=tf.int64, include_batch_in_index=True))
    return pooled, argmax


@pytest.mark.parametrize("method", unpool.UNPOOL_METHODS)
@pytest.mark.parametrize("constant", [False, True])
def test_checked_unpool_names_the_op_and_the_range(method, constant, rng):
    pooled, argmax = batch_indices((2, 4, 4, 3), rng)
    assert argmax.max() >= 4 * 4 * 3  # the second image's indices lie past the first's
    with tf.Graph().as_default():
        if constant:  # constants are folded by the graph optimiser before any assertion runs
            inputs = (tf.constant(pooled), tf.constant(argmax))
        else:
            inputs = (tf.placeholder(tf.float32, [None, 2, 2, 3]), tf.placeholder(tf.int64))
        out = unpool.max_unpool(*inputs, [2, 4, 4, 3], method=method, name="my_unpool")
        feed = {} if constant else dict(zip(inputs, (pooled, argmax)))
        with tf.Session() as sess, pytest.raises(tf.errors.InvalidArgumentError) as err:
            sess.run(out, feed)
    message = err.value.message
    assert "my_unpool: argmax holds indices from" in message
    assert f"[{argmax.min()}] [to] [{argmax.max()}]" in message and "[48]" in message


def test_checked_unpool_refuses_a_pooled_map_of_the_wrong_size():
    with tf.Graph().as_default():
        pooled = tf.placeholder(tf.float32, [1, None, None, 1])
        argmax = tf.zeros_like(pooled, tf.int64)
        out = unpool.max_unpool(pooled, argmax, [1, 8, 8, 1])
        with tf.Session() as sess:
            with pytest.raises(tf.errors.InvalidArgumentError, match=r"max_unpool: pooled is \(h, w\) ="):
                sess.run(out, {pooled: np.ones((1, 3, 3, 1), np.float32)})
            assert sess.run(out, {pooled: np.ones((1, 4, 4, 1))}).sum() == 16


def test_unchecked_unpool_adds_no_ops_and_the_model_uses_it():
    def ops_of(checked):
        with tf.Graph().as_default() as graph:
            pooled, argmax = unpool.max_pool_with_argmax(tf.zeros([1, 4, 4, 1]))
            before = len(graph.get_operations())
            unpool.max_unpool(pooled, argmax, [1, 4, 4, 1], checked=checked)
            return [op.name for op in graph.get_operations()[before:]]

    checks = ("check_argmax_range", "check_pooled_size")
    assert all(any(c in name for name in ops_of(True)) for c in checks)
    assert not any(c in name for name in ops_of(False) for c in checks)
    assert len(ops_of(False)) < len(ops_of(True))
    with tf.Graph().as_default() as graph:
        model.segnet(tf.zeros([1, 32, 32, 3]), 3, False, model.SegNetConfig(width_multiplier=0.125))
        assert not [op for op in graph.get_operations() if "check_" in op.name]


BAD_UNPOOL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import segnet_lib
    from segnet_lib import unpool
    from segnet_lib._tf import tf

    segnet_lib.setup(verbose=False)
    x = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    pooled, argmax = tf.nn.max_pool_with_argmax(x, [1, 2, 2, 1], [1, 2, 2, 1], "SAME",
                                                Targmax=tf.int64, include_batch_in_index=True)
    out = unpool.max_unpool(pooled, argmax, [2, 4, 4, 3], checked=sys.argv[1] == "checked")
    with tf.Session() as sess:
        try:
            sess.run(out)
        except tf.errors.InvalidArgumentError as err:
            print("caught:", " ".join(err.message.split()))
            sys.exit(0)
    print("no error")
    sys.exit(3)
""")


def test_bad_indices_raise_a_clean_exception_in_a_fresh_process():
    """The case that used to kill the process with SIGABRT ends in an except clause."""
    done = subprocess.run([sys.executable, "-c", BAD_UNPOOL_SCRIPT, "checked"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "caught:" in done.stdout and "max_unpool: argmax holds indices from" in done.stdout


def test_lean_pool_gradient_equals_the_plain_one_without_reading_the_relu(rng):
    """pool(relu(y)) with lean_gradient: the same gradient, and no gradient op reads relu(y)."""
    y_value = rng.normal(0, 1, (2, 6, 7, 3)).astype(np.float32)
    y_value[0, :2, :2] = -1.0      # a window with nothing positive: pooled 0, no gradient
    y_value[1, 2:4, 2:4, 0] = 0.5  # a window of ties
    weights = rng.normal(0, 1, (2, 3, 4, 3)).astype(np.float32)
    results = {}
    for lean in (False, True):
        graph = tf.Graph()
        with graph.as_default():
            y = tf.constant(y_value)
            h = tf.nn.relu(y)
            pooled, argmax = unpool.max_pool_with_argmax(h, lean_gradient=lean)
            grad = tf.gradients(tf.reduce_sum(pooled * weights), y)[0]
            readers = [op.name for op in h.consumers() if op.name.startswith("gradients")]
            with tf.Session() as sess:
                results[lean] = sess.run([pooled, argmax, grad]) + [readers]
    for plain, lean in zip(results[False][:3], results[True][:3]):
        np.testing.assert_array_equal(lean, plain)
    assert np.count_nonzero(results[True][2]) > 0
    assert results[False][3] and not results[True][3]


def test_fused_unpool_keeps_no_constant_of_its_output_size(rng, monkeypatch):
    """With a static shape, plain tf.zeros is folded into a constant the session keeps; lean is not."""
    pooled_value = rng.normal(0, 1, (2, 8, 8, 16)).astype(np.float32)
    persistent = {}
    for lean in ("1", "0"):
        monkeypatch.setenv(LEAN_MEMORY_ENV, lean)
        with tf.Graph().as_default():
            pooled = tf.placeholder(tf.float32, pooled_value.shape)
            _, argmax = unpool.max_pool_with_argmax(tf.constant(np.repeat(np.repeat(
                pooled_value, 2, axis=1), 2, axis=2)))
            out = unpool.max_unpool(pooled, argmax, [2, 16, 16, 16], checked=False)
            with tf.Session() as sess:
                for _ in range(2):  # the second run reuses the buffers of the first
                    metadata = tf.RunMetadata()
                    value = sess.run(out, {pooled: pooled_value}, run_metadata=metadata,
                                     options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE))
                    # Every window holds its value at one position, zeros elsewhere.
                    np.testing.assert_array_equal(value.reshape(2, 8, 2, 8, 2, 16).sum(axis=(2, 4)),
                                                  pooled_value)
                    assert np.count_nonzero(value) == np.count_nonzero(pooled_value)
        persistent[lean] = sum(node.memory_stats.persistent_memory_size
                               for device in metadata.step_stats.dev_stats
                               for node in device.node_stats if "max_unpool" in node.node_name)
    output_bytes = 2 * 16 * 16 * 16 * 4
    assert persistent["1"] < 1024  # the shape vector's constants at most
    assert persistent["0"] >= output_bytes
