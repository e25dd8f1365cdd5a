"""segnet_lib.step: the training step, and its precision and XLA options on this CPU.

A very narrow SegNet on 32x32 random images with a learnable signal (the label
is a function of the image) trains a few steps in float32, and again with
each option; the losses must agree within the stated tolerances, and the
option must really have changed the graph TensorFlow ran (casts to float16 or
bfloat16, XLA clusters), so a silently ignored option fails.
"""
import numpy as np
import pytest

import segnet_lib
from segnet_lib import runtime, step
from segnet_lib._tf import LEAN_MEMORY_ENV, tf
from segnet_lib.config import TrainConfig

NUM_CLASSES = 4
STEPS = 4
# Relative tolerances on each of the STEPS losses against float32. The first
# loss differs only by rounding (float16: 10-bit mantissa, ~5e-4 per op;
# bfloat16: 7 bits, ~4e-3); after a few updates with BN on 2 images the runs
# drift apart. Measured here: float16 1e-3, bfloat16 5e-3, XLA 1e-5 on step 1.
TOLERANCE = {"mixed_float16": 2e-2, "mixed_bfloat16": 4e-2, "xla": 2e-2}


def _data():
    rng = np.random.default_rng(0)
    images = rng.normal(0, 50, (2, 32, 32, 3)).astype(np.float32)
    labels = np.digitize(images[..., 0], [-40, 0, 40]).astype(np.int32)  # learnable
    return images, labels


def _step_graph(config):
    """``(graph, training step)`` of ``config`` on :func:`_data`, seeded."""
    images, labels = _data()
    graph = tf.Graph()
    with graph.as_default():
        segnet_lib.set_seed(0)
        train_step = step.training_step(config, tf.constant(images), tf.constant(labels),
                                        NUM_CLASSES)
    return graph, train_step


def _run(precision="float32", xla=False):
    config = TrainConfig(width_multiplier=0.125, optimizer="sgd", learning_rate=1e-3,
                         batch_size=2, precision=precision, xla=xla)
    graph, train_step = _step_graph(config)
    with graph.as_default():
        init = tf.global_variables_initializer()
    losses = []
    with tf.Session(graph=graph, config=runtime.session_config(precision, xla)) as sess:
        sess.run(init)
        metadata = tf.RunMetadata()
        for i in range(STEPS):
            options = tf.RunOptions(output_partition_graphs=True) if i == 0 else None
            loss, _ = sess.run([train_step.loss, train_step.train_op], options=options,
                               run_metadata=metadata if i == 0 else None)
            losses.append(float(loss))
        nodes = [n for g in metadata.partition_graphs for n in g.node]
    return np.array(losses), nodes + [v.op.node_def for v in graph.get_collection("variables")]


@pytest.fixture(scope="module")
def float32_losses():
    losses, nodes = _run()
    assert not [n for n in nodes if n.op == "Cast" and n.attr["DstT"].type in (14, 19)]
    return losses


def _casts_to(nodes, dtype):
    return [n.name for n in nodes if n.op == "Cast" and n.attr["DstT"].type == dtype.as_datatype_enum]


def test_mixed_float16_agrees_with_float32_and_scales_the_loss(float32_losses):
    losses, nodes = _run("mixed_float16")
    assert _casts_to(nodes, tf.float16)  # the rewrite ran (emulated on a CPU)
    assert any("loss_scale" in n.name for n in nodes)  # the dynamic loss scale's variable
    np.testing.assert_allclose(losses, float32_losses, rtol=TOLERANCE["mixed_float16"])


@pytest.mark.skipif(not runtime.cpu_bfloat16_flags(),
                    reason="this CPU has no AVX512_BF16 / AMX-BF16 (mixed_bfloat16 is refused)")
def test_mixed_bfloat16_agrees_with_float32(float32_losses):
    losses, nodes = _run("mixed_bfloat16")
    assert _casts_to(nodes, tf.bfloat16)
    np.testing.assert_allclose(losses, float32_losses, rtol=TOLERANCE["mixed_bfloat16"])


def test_xla_agrees_with_float32_and_compiles_clusters(float32_losses):
    losses, nodes = _run(xla=True)
    assert any(n.op in ("_XlaCompile", "_XlaRun", "XlaLaunch") for n in nodes)
    np.testing.assert_allclose(losses, float32_losses, rtol=TOLERANCE["xla"])


def test_a_precision_the_cpu_cannot_compute_in_is_refused(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_bfloat16_flags", lambda: ())
    with pytest.raises(ValueError, match="AVX512_BF16 or AMX-BF16"):
        runtime.check_precision("mixed_bfloat16")
    runtime.check_precision("mixed_float16")
    with pytest.raises(ValueError, match="expected one of"):
        runtime.session_config("float8")


def test_cpu_bfloat16_flags_reads_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu avx2 amx_bf16 avx512_bf16\n")
    assert runtime.cpu_bfloat16_flags(str(info)) == ("avx512_bf16", "amx_bf16")
    info.write_text("flags : fpu avx2\n")
    assert runtime.cpu_bfloat16_flags(str(info)) == ()
    assert runtime.cpu_bfloat16_flags(str(tmp_path / "missing")) == ()


def test_one_replica_of_two_minimises_half_its_loss_decay_included():
    """Summed over the two replicas' gradients: the mean cross-entropy plus the decay once."""
    images, labels = _data()
    config = TrainConfig(width_multiplier=0.125, batch_size=2)
    graph = tf.Graph()
    with graph.as_default():
        train_step = step.training_step(config, tf.constant(images), tf.constant(labels),
                                        NUM_CLASSES, replicas=2)
        data_part = graph.get_tensor_by_name("replica_data_objective:0")
        decay_part = graph.get_tensor_by_name("replica_decay:0")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            data_loss, reg_loss, data_value, decay_value = sess.run(
                [train_step.data_loss, train_step.reg_loss, data_part, decay_part])
    assert reg_loss > 0
    np.testing.assert_allclose([data_value, decay_value], [data_loss / 2, reg_loss / 2], rtol=1e-6)


def _one_update(monkeypatch, lean):
    """The variables after one SGD step with weight decay, and the step's graph."""
    monkeypatch.setenv(LEAN_MEMORY_ENV, "1" if lean else "0")
    graph, train_step = _step_graph(TrainConfig(width_multiplier=0.125, optimizer="sgd",
                                                learning_rate=1e-2, batch_size=2,
                                                weight_decay=1e-2))
    with graph.as_default():
        variables = tf.trainable_variables()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(train_step.train_op)
            return dict(zip([v.op.name for v in variables], sess.run(variables))), graph


def _decay_gradients_after_data_gradients(graph):
    """For each weight-decay gradient op: does it wait (through inputs or control inputs) for a kernel's data gradient?"""
    def waits(op, seen):
        for parent in [t.op for t in op.inputs] + list(op.control_inputs):
            if parent.name in seen:
                continue
            seen.add(parent.name)
            if parent.type == "Conv2DBackpropFilter" or waits(parent, seen):
                return True
        return False
    decay_ops = [op for op in graph.get_operations() if op.type == "Mul"
                 and op.name.startswith("gradients") and "/Regularizer/L2Loss" in op.name]
    assert decay_ops
    return [waits(op, set()) for op in decay_ops]


def test_lean_backward_takes_the_same_step_with_decay_gradients_made_late(monkeypatch):
    plain, plain_graph = _one_update(monkeypatch, lean=False)
    lean, lean_graph = _one_update(monkeypatch, lean=True)
    assert plain.keys() == lean.keys()
    for name, value in plain.items():
        np.testing.assert_allclose(lean[name], value, rtol=1e-5, atol=1e-7, err_msg=name)
    # Plain: computed as soon as the backward pass starts; lean: only after a data gradient.
    assert not any(_decay_gradients_after_data_gradients(plain_graph))
    assert all(_decay_gradients_after_data_gradients(lean_graph))
