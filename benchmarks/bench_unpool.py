"""Side-by-side speed of the two index-unpooling implementations, and of SegNet.

1. ``max_unpool`` forward and forward+backward, ``method='fused'`` (TensorFlow's
   MaxPoolGradWithArgmax kernel as the forward pass, a gather as its gradient)
   against ``method='scatter_nd'`` (the formulation in most SegNet ports), on
   the unpooling shapes of SegNet at batch 4, 224x224: the first decoder stage
   (14 -> 28, 512 features) and the last (112 -> 224, 64 features). Both
   unchecked, as the model builder calls them; the last columns time the
   default ``checked=True`` fused op (index range and size assertions).
2. A full SegNet training step (forward, backward, momentum update, batch-norm
   updates) at batch 4, 224x224, 21 classes, full width, with each method:
   images per second.

Times are the minimum over interleaved repeats (the CPU may be shared; the
minimum is the least disturbed run). Ratios > 1 mean ``fused`` is faster.

Usage: python benchmarks/bench_unpool.py [--repeats N] [--steps N] [--widths 1.0 0.25]
       [--skip-segnet]
"""
import argparse
import time

import numpy as np

import segnet_lib
from segnet_lib import model, unpool
from segnet_lib._tf import tf

SHAPES = {  # name: pre-pool shape [batch, height, width, channels]
    "decoder stage 5 (14->28, 512 ch)": (4, 28, 28, 512),
    "decoder stage 1 (112->224, 64 ch)": (4, 224, 224, 64),
}


def _timed(sess, fetch, feed=None):
    start = time.perf_counter()
    sess.run(fetch, feed)
    return time.perf_counter() - start


def bench_unpool(repeats):
    rng = np.random.default_rng(0)
    rows = []
    for label, shape in SHAPES.items():
        graph = tf.Graph()
        with graph.as_default():
            x = tf.constant(rng.normal(size=shape).astype(np.float32))
            pooled, argmax = unpool.max_pool_with_argmax(x)
            # Pool once, keep the result: the benchmark times the unpooling only.
            p_var = tf.Variable(tf.zeros(pooled.shape), trainable=False)
            a_var = tf.Variable(tf.zeros(argmax.shape, tf.int64), trainable=False)
            setup = [tf.assign(p_var, pooled), tf.assign(a_var, argmax)]
            weight = tf.constant(rng.normal(size=shape).astype(np.float32))
            fetches = {}
            variants = {m: (m, False) for m in unpool.UNPOOL_METHODS}
            variants["fused checked"] = ("fused", True)
            for name, (method, checked) in variants.items():
                out = unpool.max_unpool(p_var, a_var, list(shape), method=method, checked=checked)
                loss = tf.reduce_sum(out * weight)
                (grad,) = tf.gradients(loss, [p_var])
                # Neither gradient needs the forward output, so the forward+backward
                # fetch names both ops (a tf.group NoOp gets pruned by Grappler).
                fetches[name] = {"forward": loss.op, "forward+backward": [loss.op, grad.op]}
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(setup)
            for name in variants:  # warm-up
                for fetch in fetches[name].values():
                    sess.run(fetch)
            times = {(m, k): [] for m in variants for k in fetches[m]}
            for _ in range(repeats):
                for (m, k) in times:
                    times[(m, k)].append(_timed(sess, fetches[m][k]))
        for kind in ("forward", "forward+backward"):
            fused = min(times[("fused", kind)])
            scatter = min(times[("scatter_nd", kind)])
            checked = min(times[("fused checked", kind)])
            rows.append((label, kind, fused * 1e3, scatter * 1e3, scatter / fused, checked * 1e3,
                         checked / fused))
    print(f"{'shape':36s} {'pass':17s} {'fused ms':>9s} {'scatter_nd ms':>14s} {'ratio':>6s} "
          f"{'checked ms':>11s} {'checked/fused':>14s}")
    for label, kind, f, s, r, c, cr in rows:
        print(f"{label:36s} {kind:17s} {f:9.2f} {s:14.2f} {r:6.2f} {c:11.2f} {cr:14.2f}")
    return rows


def bench_segnet(steps, batch=4, size=224, num_classes=21, width=1.0):
    rng = np.random.default_rng(1)
    images = rng.normal(0, 50, (batch, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, (batch, size, size)).astype(np.int32)
    sessions = {}
    for method in unpool.UNPOOL_METHODS:
        graph = tf.Graph()
        with graph.as_default():
            segnet_lib.set_seed(0)
            x = tf.constant(images)
            config = model.SegNetConfig(unpool_method=method, width_multiplier=width)
            logits, _ = model.segnet(x, num_classes, is_training=True, config=config)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.constant(labels), logits=logits))
            loss += tf.add_n(tf.losses.get_regularization_losses())
            with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
                step = tf.train.MomentumOptimizer(1e-3, 0.9).minimize(loss)
            init = tf.global_variables_initializer()
            params = model.count_parameters(graph=graph)
        sess = tf.Session(graph=graph)
        sess.run(init)
        sess.run(step)  # warm-up: first-run allocation and graph optimisation
        sessions[method] = (sess, step)
    times = {m: [] for m in sessions}
    for _ in range(steps):
        for m, (sess, step) in sessions.items():
            times[m].append(_timed(sess, step))
    for sess, _ in sessions.values():
        sess.close()
    print(f"\nSegNet training step, batch {batch}, {size}x{size}, {num_classes} classes, "
          f"width {width}, {params:,} parameters:")
    for m, t in times.items():
        print(f"  unpool_method={m:10s}: {min(t):6.2f} s/step  {batch / min(t):6.2f} images/s "
              f"(median {batch / np.median(t):.2f})")
    print(f"  ratio scatter_nd / fused step time: {min(times['scatter_nd']) / min(times['fused']):.2f}")
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--skip-segnet", action="store_true")
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0],
                        help="width multipliers of the SegNet step (e.g. 1.0 0.25)")
    args = parser.parse_args()
    info = segnet_lib.setup(seed=0, verbose=False)
    print(f"TensorFlow {info.tf_version} on {info.device}\n")
    bench_unpool(args.repeats)
    if not args.skip_segnet:
        for width in args.widths:
            bench_segnet(args.steps, width=width)


if __name__ == "__main__":
    main()
