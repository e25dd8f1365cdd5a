"""Full SegNet training speed and peak memory on this CPU: segnet_lib (TF) vs PyTorch.

Times the library's own training step (:func:`segnet_lib.train.training_step`:
the full 29.5M-parameter SegNet, the class-weighted cross-entropy with void
ignored, weight decay 5e-4 on the kernels, SGD with momentum 0.9 and the
batch-norm updates) at batch 4, 224x224, 21 classes, on in-memory random
data (the input pipeline is timed separately by bench_data.py). Next to it,
the same architecture written in PyTorch (the same layers, batch-norm
epsilon and momentum, index unpooling with ``nn.MaxUnpool2d``, the same loss
and decay on the kernels only) runs the same step, if PyTorch is installed
(it is not a dependency: ``pip install torch``; the benchmark says so and skips it
otherwise).

segnet_lib runs three times: with its defaults (the memory savings of
``segnet_lib._tf.lean_memory``; TensorFlow's pooling allocator), with those
savings off (``SEGNET_LEAN_MEMORY=0``: the library before issue 18), and with
the system allocator (``SEGNET_ALLOCATOR=system``, see ``segnet_lib._tf``), so
the table holds the memory before and after side by side.

Each framework runs in its own child process, so that the peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) of one does not hide
the other's; the children alternate for ``--rounds`` rounds, so a busy
machine slows both alike. Both use every core the process may run on.
Reported: images/s of the median and of the fastest step, CPU seconds per image
(all threads; less sensitive to other processes than the wall clock), and the
ratios; > 1 means segnet_lib is faster.

Usage: python benchmarks/bench_train.py [--steps N] [--rounds N] [--batch 4] [--size 224]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

NUM_CLASSES = 21


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _rss_mb():
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2 ** 20


def _data(batch, size):
    rng = np.random.default_rng(0)
    images = rng.normal(0, 50, (batch, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (batch, size, size)).astype(np.int64)
    labels[:, :8] = 255  # some void, as in VOC
    return images, labels


def tf_training_graph(batch, size):
    """The library's training step on this benchmark's data, in a new graph: ``(graph, step, init)``.

    Imports TensorFlow (call it in a TensorFlow child only, after
    ``segnet_lib.setup``); ``trace_train_memory.py`` traces the same step.
    """
    import segnet_lib
    from segnet_lib import recipes, train
    from segnet_lib._tf import tf

    images, labels = _data(batch, size)
    graph = tf.Graph()
    with graph.as_default():
        segnet_lib.set_seed(0)
        step = train.training_step(recipes.voc_gpu_recipe(), tf.constant(images),
                                   tf.constant(labels.astype(np.int32)), NUM_CLASSES,
                                   class_weights=np.ones(NUM_CLASSES, np.float32))
        init = tf.global_variables_initializer()
    return graph, step, init


def run_tf(batch, size, steps):
    import segnet_lib
    from segnet_lib import model, runtime
    from segnet_lib._tf import ALLOCATOR, lean_memory, tf

    segnet_lib.setup(seed=0, verbose=False)
    rss_import = _rss_mb()
    graph, step, init = tf_training_graph(batch, size)
    params = model.count_parameters(graph=graph)
    times = []
    with tf.Session(graph=graph, config=runtime.session_config()) as sess:
        sess.run(init)
        sess.run(step.train_op)  # warm-up: allocation, graph optimisation
        cpu = time.process_time()
        for _ in range(steps):
            start = time.perf_counter()
            sess.run(step.train_op)
            times.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
    return {"params": params, "times": times, "cpu_seconds": cpu, "rss_import_mb": rss_import, "rss_peak_mb": _rss_mb(),
            "version": tf.__version__ if hasattr(tf, "__version__") else "", "allocator": ALLOCATOR,
            "lean": lean_memory()}


def _torch_segnet(torch):
    """SegNet in PyTorch, layer for layer as segnet_lib.model builds it."""
    nn = torch.nn

    def conv(cin, cout, last=False):
        layers = [nn.Conv2d(cin, cout, 3, padding=1)]
        if not last:
            # TF's epsilon 1e-3 and decay 0.9 (PyTorch's momentum = 1 - decay).
            layers += [nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers)

    encoder_spec = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]
    decoder_spec = {5: (512, 512, 512), 4: (512, 512, 256), 3: (256, 256, 128), 2: (128, 64),
                    1: (64, None)}

    class SegNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.ModuleList()
            cin = 3
            for cout, n in encoder_spec:
                stage = []
                for _ in range(n):
                    stage.append(conv(cin, cout))
                    cin = cout
                self.encoder.append(nn.Sequential(*stage))
            self.decoder = nn.ModuleList()
            for s in (5, 4, 3, 2, 1):
                stage = []
                for out in decoder_spec[s]:
                    last = out is None
                    out = NUM_CLASSES if last else out
                    stage.append(conv(cin, out, last=last))
                    cin = out
                self.decoder.append(nn.Sequential(*stage))
            self.pool = nn.MaxPool2d(2, 2, return_indices=True)
            self.unpool = nn.MaxUnpool2d(2, 2)

        def forward(self, x):
            records = []
            for stage in self.encoder:
                x = stage(x)
                size = x.shape
                x, idx = self.pool(x)
                records.append((idx, size))
            for stage, (idx, size) in zip(self.decoder, reversed(records)):
                x = stage(self.unpool(x, idx, output_size=size))
            return x

    return SegNet()


def run_torch(batch, size, steps):
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    torch.set_num_threads(_cores())
    rss_import = _rss_mb()
    images, labels = _data(batch, size)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(labels)
    net = _torch_segnet(torch).train()
    params = sum(p.numel() for p in net.parameters())
    kernels = [p for n, p in net.named_parameters() if p.dim() == 4]
    others = [p for n, p in net.named_parameters() if p.dim() != 4]
    # Decay on the kernels only, as segnet_lib's regulariser does.
    opt = torch.optim.SGD([{"params": kernels, "weight_decay": 5e-4},
                           {"params": others, "weight_decay": 0.0}], lr=1e-3, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255, reduction="sum")
    valid = float((y != 255).sum())

    def step():
        opt.zero_grad(set_to_none=True)
        loss = criterion(net(x), y) / valid
        loss.backward()
        opt.step()

    step()  # warm-up
    times = []
    cpu = time.process_time()
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu
    return {"params": params, "times": times, "cpu_seconds": cpu, "rss_import_mb": rss_import, "rss_peak_mb": _rss_mb(),
            "version": torch.__version__}


# Child processes: (framework, environment). "tf-before" builds the graph
# without the memory savings, as the library did before issue 18;
# "tf-system" uses the system allocator instead of TensorFlow's pool.
CHILDREN = {"tf": ("tf", {}), "tf-before": ("tf", {"SEGNET_LEAN_MEMORY": "0"}),
            "tf-system": ("tf", {"SEGNET_ALLOCATOR": "system"}),
            "torch": ("torch", {})}


def _child(name, args):
    framework, env = CHILDREN[name]
    command = [sys.executable, __file__, "--child", framework, "--steps", str(args.steps),
               "--batch", str(args.batch), "--size", str(args.size)]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per child process")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of both frameworks")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--child", choices=("tf", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run = run_tf if args.child == "tf" else run_torch
        print(json.dumps(run(args.batch, args.size, args.steps)))
        return

    print(f"Full SegNet training step, batch {args.batch}, {args.size}x{args.size}, "
          f"{NUM_CLASSES} classes, {_cores()} CPU threads, {args.rounds} rounds x {args.steps} steps\n")
    results = {name: [] for name in CHILDREN}
    for _ in range(args.rounds):
        for framework in results:
            result = _child(framework, args)
            if result is None:
                continue
            results[framework].append(result)
    rows = {}
    for framework, runs in results.items():
        if not runs:
            print("PyTorch is not installed: skipped (pip install torch to compare).")
            continue
        times = np.concatenate([r["times"] for r in runs])
        rows[framework] = {
            "name": (f"segnet_lib, {runs[0]['allocator']} alloc., "
                     f"{'lean' if runs[0]['lean'] else 'plain (before)'}")
            if framework != "torch"
            else f"PyTorch {runs[0]['version']}",
            "params": runs[0]["params"], "median": args.batch / np.median(times),
            "cpu_per_image": sum(r["cpu_seconds"] for r in runs) / (times.size * args.batch),
            "best": args.batch / times.min(), "peak": max(r["rss_peak_mb"] for r in runs),
            "import": max(r["rss_import_mb"] for r in runs)}
    print(f"{'':44s} {'params':>11s} {'img/s median':>13s} {'img/s best':>11s} "
          f"{'CPU s/img':>10s} {'peak RSS MB':>12s} {'after import':>13s}")
    for row in rows.values():
        print(f"{row['name']:44s} {row['params']:11,d} {row['median']:13.2f} {row['best']:11.2f} "
              f"{row['cpu_per_image']:10.2f} {row['peak']:12.0f} {row['import']:13.0f}")
    print(f"TensorFlow {results['tf'][0]['version']}")
    for name, what in (("tf-before", "SEGNET_LEAN_MEMORY=0 (the library before issue 18)"),
                       ("tf-system", "the system allocator")):
        if name in rows:
            print(f"peak memory, defaults / with {what}: {rows['tf']['peak']:.0f} / "
                  f"{rows[name]['peak']:.0f} MB ({rows['tf']['peak'] - rows[name]['peak']:+.0f} MB); "
                  f"speed ratio (median images/s): {rows['tf']['median'] / rows[name]['median']:.2f}")
    if "torch" in rows:
        tf_row, torch_row = rows["tf"], rows["torch"]
        ratio = tf_row["median"] / torch_row["median"]
        print(f"\nspeed ratio TF / PyTorch (median images/s): {ratio:.2f}; "
              f"(fastest step): {tf_row['best'] / torch_row['best']:.2f}; "
              f"(CPU seconds per image, PyTorch / TF): "
              f"{torch_row['cpu_per_image'] / tf_row['cpu_per_image']:.2f}")
        print(f"peak memory ratio TF / PyTorch: {tf_row['peak'] / torch_row['peak']:.2f} "
              f"(before issue 18: {rows['tf-before']['peak'] / torch_row['peak']:.2f}); after import, "
              f"TF / PyTorch: {tf_row['import']:.0f} / {torch_row['import']:.0f} MB")
        if tf_row["params"] != torch_row["params"]:
            print(f"WARNING: parameter counts differ ({tf_row['params']:,} vs {torch_row['params']:,})")


if __name__ == "__main__":
    main()
