"""Where the full SegNet training step's memory goes, from TensorFlow's own allocation records.

bench_train.py measures the peak resident memory of the library's training
step beside PyTorch's; this script explains it. It builds the same step
(:func:`segnet_lib.train.training_step`: full SegNet, batch 4, 224x224, 21
classes, SGD with momentum and weight decay, on in-memory random data), runs
it once to warm up, then runs one step with a full trace (``RunMetadata``) and
reads TensorFlow's allocation records: every allocation and release of the
step, with the op that made it. It reports

* the allocator memory held between steps (variables, optimiser slots, and
  whatever else the session keeps),
* the step's own peak: the most memory its tensors held at once, and which
  ops' outputs were alive then, summed by kind,
* the process's peak resident memory (the number bench_train.py compares).

It does so twice, each in its own child process: with the library's defaults
and with ``SEGNET_LEAN_MEMORY=0`` (the graphs as plain TensorFlow builds them,
the library before issue 18), so the two columns come from one run.

Usage: python benchmarks/trace_train_memory.py [--batch 4] [--size 224] [--top 12]
"""
import argparse
import collections
import json
import os
import subprocess
import sys

MB = 2 ** 20


def _kind(node_name):
    """A short label for the op that allocated a tensor: backward or forward, and its role."""
    last = node_name.split("/")[-1]
    if node_name.startswith("gradients"):
        return f"backward {last.split('_')[0]}"
    if "max_unpool" in node_name:
        return "forward unpooling"
    if last.startswith("pool"):
        return "forward pooling (values and int64 indices)"
    return f"forward {last}"


def run_child(batch, size):
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_train
    import segnet_lib
    from segnet_lib import memory, runtime
    from segnet_lib._tf import lean_memory, tf

    segnet_lib.setup(seed=0, verbose=False)
    graph, step, init = bench_train.tf_training_graph(batch, size)
    with graph.as_default():
        # A tiny op whose trace reports the allocator's bytes in use between steps.
        probe = tf.reduce_sum(tf.ones([256]) * tf.cast(step.global_step, tf.float32))
        variables = sum(int(np.prod(v.shape)) * v.dtype.size for v in tf.global_variables())
    with tf.Session(graph=graph, config=runtime.session_config()) as sess:
        sess.run(init)
        sess.run(step.train_op)  # warm-up: the first step also creates what later steps reuse
        between = tf.RunMetadata()
        sess.run(probe, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                 run_metadata=between)
        metadata = tf.RunMetadata()
        sess.run(step.train_op, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE),
                 run_metadata=metadata)
    records, in_use = [], []
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            for mem in node.memory:
                if mem.allocator_bytes_in_use:
                    in_use.append((node.all_start_micros, mem.allocator_bytes_in_use))
                records += [(r.alloc_micros, r.alloc_bytes, node.node_name)
                            for r in mem.allocation_records]
    records.sort()
    live, peak, peak_at = 0, 0, -1
    for i, (_, nbytes, _) in enumerate(records):
        live += nbytes
        if live > peak:
            peak, peak_at = live, i
    alive = collections.Counter()
    for _, nbytes, name in records[:peak_at + 1]:
        alive[name] += nbytes
    kinds = collections.Counter()
    for name, nbytes in alive.items():
        if nbytes > 0:
            kinds[_kind(name)] += nbytes
    held = max((mem.allocator_bytes_in_use for device in between.step_stats.dev_stats
                for node in device.node_stats for mem in node.memory), default=0)
    return {"lean": lean_memory(), "variables": variables, "between_steps": held,
            "allocator_peak": max(b for _, b in in_use) if in_use else 0,
            "step_peak": peak, "kinds": dict(kinds), "peak_rss": memory.peak_rss_bytes()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--top", type=int, default=12, help="kinds of tensors listed at the peak")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.batch, args.size)))
        return
    runs = {}
    for label, lean in (("defaults", "1"), ("SEGNET_LEAN_MEMORY=0", "0")):
        out = subprocess.run([sys.executable, __file__, "--child", "--batch", str(args.batch),
                              "--size", str(args.size)], capture_output=True, text=True, check=True,
                             env={**os.environ, "SEGNET_LEAN_MEMORY": lean})
        runs[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"Full SegNet training step, batch {args.batch}, {args.size}x{args.size}: "
          "TensorFlow's allocation records of one traced step (after a warm-up step)\n")
    labels = list(runs)
    print(f"{'MB':52s}" + "".join(f"{label:>22s}" for label in labels))
    rows = [("variables (weights, BN statistics, momentum)", "variables"),
            ("allocator memory held between steps", "between_steps"),
            ("tensors of the step alive at its peak", "step_peak"),
            ("allocator memory at the step's peak", "allocator_peak"),
            ("process peak resident memory", "peak_rss")]
    for title, key in rows:
        print(f"{title:52s}" + "".join(f"{runs[label][key] / MB:22,.0f}" for label in labels))
    kinds = collections.Counter()
    for label in labels:
        kinds.update(runs[label]["kinds"])
    print(f"\nalive at the step's peak, by the op that made them (the {args.top} largest kinds):")
    for kind, _ in kinds.most_common(args.top):
        print(f"  {kind:50s}" + "".join(f"{runs[label]['kinds'].get(kind, 0) / MB:22,.0f}"
                                        for label in labels))


if __name__ == "__main__":
    main()
