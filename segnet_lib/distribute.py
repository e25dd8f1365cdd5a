"""Data-parallel training with ``tf.distribute``, in the TF1 graph style.

One model, several replicas: each replica runs the training step on its share
of the batch, the gradients are summed across replicas (all-reduce) and every
replica applies the same update, so the variables stay identical.

* ``TrainConfig.gpus = N`` (``train --gpus N``): a ``MirroredStrategy`` over
  the first N GPUs of this machine. Without a GPU, N logical CPU devices stand
  in for them (the session splits the CPU), so the whole path runs, and is
  tested, on a laptop; it is not faster there.
* ``TrainConfig.workers`` (``train --workers HOST:PORT,... --worker-index I``, or
  ``--workers env`` with ``TF_CONFIG`` set): a ``MultiWorkerMirroredStrategy``
  (collective all-reduce over gRPC) across machines, each of which runs the
  same command. Worker 0 is the chief: it writes the run folder; the others
  train alongside and write nothing (they read the chief's newest checkpoint
  when a run resumes, so the run folder must be on a shared filesystem, or
  copied, for a multi-machine resume).

``TrainConfig.batch_size`` is the *global* batch: with R replicas in all, each
takes ``batch_size / R`` images of every batch, so a step sees the same images
as on one device.

**Batch norm is per replica.** Each replica normalises with the mean and
variance of its own share of the batch, and the moving averages are updated
with the mean over replicas of those statistics (the variables are created with
``VariableAggregation.MEAN``). Synchronised batch norm would all-reduce the
statistics of every one of the 26 batch-norm layers in the forward pass and
again in the backward pass: 52 more round trips per step, which across machines
costs more than it buys, and it would replace the fused batch-norm kernels
(and the memory they save) by unfused ones. The price is statistics over fewer
images: keep at least 2 images per replica (the voc-gpu recipe's batch 8 on 4
GPUs) and prefer more. Everything else is exact: with identical images on every
replica, or compared with one device that normalises each share separately
("ghost batch norm"), the update is the same (``tests/test_distribute.py``).

Checkpoints are unchanged: a ``Saver`` writes each mirrored variable once, under
its usual name, so a run may resume with another number of replicas.
"""
from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Optional

from segnet_lib._tf import GPUS, tf
from segnet_lib.runtime import session_config

__all__ = ["Cluster", "cluster_spec", "make_cluster", "replica_devices", "per_replica_batch",
           "WORKER_JOB"]

#: The job name of every task (TF_CONFIG's ``task.type``).
WORKER_JOB = "worker"


class Cluster(NamedTuple):
    """Where a run's replicas are and how its session connects to them.

    Attributes:
        strategy: the ``tf.distribute`` strategy, or None for one device.
        target: the session target (``''`` in-process, ``grpc://...`` for a worker).
        config: the session's ``tf.ConfigProto``.
        is_chief: this process writes the run folder.
        num_replicas: replicas in sync, over all workers.
        num_workers: machines (1 without ``workers``).
        worker_index: this machine's index.
        server: the worker's ``tf.distribute.Server`` (kept alive), or None.
    """

    strategy: Any
    target: str
    config: Any
    is_chief: bool
    num_replicas: int
    num_workers: int
    worker_index: int
    server: Any = None


def cluster_spec(workers: Optional[str], worker_index: int = 0, environ=None) -> Optional[dict]:
    """The ``TF_CONFIG`` of a multi-worker run, or None for a single machine.

    Args:
        workers: None, ``'env'`` (read ``TF_CONFIG``) or ``'host:port,host:port,...'``.
        worker_index: this machine's index in that list.
        environ: the environment to read (default ``os.environ``).

    Returns:
        ``{'cluster': {'worker': [...]}, 'task': {'type': 'worker', 'index': i}}``.

    Raises:
        ValueError: a malformed list or ``TF_CONFIG``, or an index outside it.
    """
    if workers is None:
        return None
    if workers == "env":
        text = (os.environ if environ is None else environ).get("TF_CONFIG")
        if not text:
            raise ValueError("--workers env: the TF_CONFIG environment variable is not set")
        try:
            spec = json.loads(text)
            hosts, task = spec["cluster"][WORKER_JOB], spec["task"]
            index = int(task["index"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"TF_CONFIG is not a worker cluster ({err}): {text!r}") from None
        if task.get("type") != WORKER_JOB:
            raise ValueError(f"TF_CONFIG task type {task.get('type')!r}; only {WORKER_JOB!r} "
                             "tasks train (the chief is worker 0)")
    else:
        hosts = [h.strip() for h in workers.split(",") if h.strip()]
        index = int(worker_index)
        bad = [h for h in hosts if h.count(":") != 1 or not h.rsplit(":", 1)[1].isdigit()]
        if bad or not hosts:
            raise ValueError(f"--workers {workers!r}: expected HOST:PORT,HOST:PORT,... (bad: {bad})")
    if not 0 <= index < len(hosts):
        raise ValueError(f"worker index {index} is outside the {len(hosts)} workers {hosts}")
    return {"cluster": {WORKER_JOB: list(hosts)}, "task": {"type": WORKER_JOB, "index": index}}


def replica_devices(gpus: int) -> list:
    """The devices of ``gpus`` replicas on this machine: GPUs, or logical CPUs without one.

    Raises:
        ValueError: more replicas asked for than this machine has GPUs.
    """
    if GPUS:
        if gpus > len(GPUS):
            raise ValueError(f"--gpus {gpus}: this machine has {len(GPUS)} GPU(s)")
        return [f"/device:GPU:{i}" for i in range(gpus)]
    return [f"/device:CPU:{i}" for i in range(gpus)]


def per_replica_batch(batch_size: int, num_replicas: int) -> int:
    """Images per replica of a global batch (ValueError unless it divides evenly)."""
    if batch_size % num_replicas:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {num_replicas} "
                         "replicas; choose a multiple")
    return batch_size // num_replicas


def make_cluster(config) -> Cluster:
    """The strategy, session target and session options of a run (build the graph after).

    Call it inside the training graph (``with graph.as_default():``): in the
    TF1 style a strategy belongs to the graph its variables are made in.

    Args:
        config: a :class:`~segnet_lib.config.TrainConfig` (``gpus``, ``workers``,
            ``worker_index``, ``precision``, ``xla``, ``batch_size``).

    Returns:
        A :class:`Cluster`; ``strategy`` is None for one device on one machine.

    Raises:
        ValueError: a bad cluster, or a batch that does not split over the replicas.
    """
    base = session_config(config.precision, config.xla)
    spec = cluster_spec(config.workers, config.worker_index)
    if spec is None:
        if config.gpus == 1:
            return Cluster(None, "", base, True, 1, 1, 0)
        if not GPUS:
            # Logical CPU devices: the session splits the CPU into gpus devices.
            base.device_count["CPU"] = config.gpus
        strategy = tf.distribute.MirroredStrategy(devices=replica_devices(config.gpus))
        per_replica_batch(config.batch_size, config.gpus)
        return Cluster(strategy, "", base, True, config.gpus, 1, 0)

    index = spec["task"]["index"]
    hosts = spec["cluster"][WORKER_JOB]
    # The strategy reads the cluster from TF_CONFIG (TFConfigClusterResolver).
    os.environ["TF_CONFIG"] = json.dumps(spec)
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy(
        communication=tf.distribute.experimental.CollectiveCommunication.AUTO)
    # In graph mode the strategy starts no server: this process serves its task
    # and its session runs there; the collective ops find the others by gRPC.
    updated = strategy.update_config_proto(base)
    server = tf.distribute.Server(resolver.cluster_spec(), job_name=WORKER_JOB, task_index=index,
                                  config=updated, start=True)
    replicas = strategy.num_replicas_in_sync
    per_replica_batch(config.batch_size, replicas)
    return Cluster(strategy, server.target, updated, index == 0, replicas, len(hosts), index,
                   server)
