"""Reference runs: the trained models the book shows, made by one command and shipped small.

Every model whose scores or pictures the book shows is a *reference run*: a
recipe in :data:`REFERENCE_RUNS`, trained to the end on the CPU by one
command, ``python -m segnet_lib reference`` (``make reference``), and shipped
in the repository under ``reference/<name>/``::

    config.json    the TrainConfig (the graph is rebuilt from it)
    weights.npz    float16 values of the inference graph's variables: weights,
                   biases, batch-norm scales, offsets and moving statistics
                   (no optimiser state: half the bytes, and a third of a checkpoint)
    export.json    the tensor and class names (what export.load_predictor reads)
    history.csv    the training curve
    metrics.json   the validation scores of the shipped float16 weights, and of
                   the float32 ones they were rounded from, measured when shipped
    manifest.json  the recipe's fingerprint, the data version, the variables'
                   names and shapes, the CPU time the run took, on what machine

A notebook loads one with ``export.load_predictor(reference.path(name))`` and
scores it live: what it prints is computed from the weights, never read from
``metrics.json``. Runs marked ``ship_weights=False`` (the recipe search of
notebook 04) ship only their config, curve and manifest.

:func:`check` tells whether a shipped run still matches the code: the same
recipe fingerprint, the same version of the generated data, and the variable
names and shapes of the model its config builds today. A stale run fails
``tests/test_reference.py`` with the command that rebuilds it.

A new run starts in :data:`PENDING_RUNS`: it can be built by name
(``python -m segnet_lib reference NAME``) but is not checked, because
that test fails for every registered run that is not shipped. Once built and
committed, its entry moves into :data:`REFERENCE_RUNS`.
"""
from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import json
import os
import platform
import resource
import shutil
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from segnet_lib import export, metrics, recipes
from segnet_lib._setup import set_seed
from segnet_lib._tf import tf, tf2
from segnet_lib.checkpoints import HISTORY_FILE, checkpoint_dirs, read_history
from segnet_lib.config import TrainConfig, read_config, write_config
from segnet_lib.datasets import data_version, open_datasets
from segnet_lib.files import atomic_write_text, publish_dir, temp_path
from segnet_lib.runtime import cpu_count
from segnet_lib.train import train

__all__ = ["ReferenceRun", "REFERENCE_RUNS", "PENDING_RUNS", "REFERENCE_ENV", "MANIFEST_FILE", "METRICS_FILE",
           "reference_root", "path", "select", "study_name", "rebuild_command", "build", "ship", "check",
           "manifest", "history", "shipped_size", "machine"]

#: Environment variable that points the library at another ``reference/`` folder.
REFERENCE_ENV = "SEGNET_REFERENCE_DIR"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
# CPU seconds of every session that trained the run, kept in its run folder
# (a build that resumes an interrupted run adds to it).
_CPU_FILE = "cpu_seconds.json"


@dataclasses.dataclass(frozen=True)
class ReferenceRun:
    """One reference run: a name, the recipe that trains it, what the book uses it for.

    Attributes:
        name: folder name under ``reference/`` (``/`` makes subfolders).
        recipe: ``() -> TrainConfig``.
        description: one line, shown by ``reference --list``.
        ship_weights: ship the weights (False: only the config, curve and manifest).
    """

    name: str
    recipe: Callable[[], TrainConfig]
    description: str
    ship_weights: bool = True


def _runs(entries: Iterable[ReferenceRun]) -> dict:
    return {run.name: run for run in entries}


def _search(**changes) -> Callable[[], TrainConfig]:
    """A variant of the sample recipe for notebook 04's recipe search (validated often)."""
    def recipe() -> TrainConfig:
        config = recipes.sample_recipe().replace(**changes)
        return config.replace(val_every=config.steps // 8, checkpoint_every=config.steps)
    return recipe


def study_name(decoder: str, seed: int) -> str:
    """The reference run of one decoder and seed of the decoder study: ``study/<decoder>-seed<k>``."""
    return f"study/{decoder}-seed{seed}"


def _study(decoder: str, seed: int) -> Callable[[], TrainConfig]:
    def recipe() -> TrainConfig:
        return recipes.study_recipe("cpu", seed=seed, model_options={"decoder": decoder})
    return recipe


#: Every reference run, by name, in the order ``make reference`` trains them.
REFERENCE_RUNS = _runs([
    ReferenceRun("sample-segnet", lambda: recipes.sample_recipe("segnet"),
                 "the book's SegNet on the sample data (notebooks 04 and 05)"),
    ReferenceRun("sample-bayesian", lambda: recipes.sample_recipe("bayesian"),
                 "Bayesian SegNet on the sample data (notebook 06)"),
    # Notebook 04's recipe search: curves only, each a few CPU minutes.
    ReferenceRun("search/first-recipe",
                 _search(batch_size=4, learning_rate=2e-3, steps=2000),
                 "the book's first recipe: batches of 4 at 2e-3", ship_weights=False),
    ReferenceRun("search/batch4-lr1e-3",
                 _search(batch_size=4, learning_rate=1e-3, steps=2000),
                 "batches of 4 at the final rate, 1e-3", ship_weights=False),
    ReferenceRun("search/fcn-decoder",
                 _search(batch_size=4, learning_rate=2e-3, steps=2000,
                         model_options={"decoder": "deconv_add"}),
                 "the first recipe with an FCN-style decoder (skips, no indices)",
                 ship_weights=False),
    ReferenceRun("search/no-class-weights",
                 _search(class_weighting="none", steps=1000),
                 "the final recipe without class weights", ship_weights=False),
    # Notebook 07's decoder study: every decoder with every seed, a few CPU minutes each.
    *[ReferenceRun(study_name(decoder, seed), _study(decoder, seed),
                   f"decoder study: SegNet-Basic encoder, decoder {decoder!r}, seed {seed}")
      for decoder in recipes.STUDY_DECODERS for seed in recipes.STUDY_SEEDS],
    # Notebook 08: U-Net beside SegNet on the generated cells, one budget.
    ReferenceRun("cells-unet", lambda: recipes.cells_recipe("unet"),
                 "U-Net on the generated cells (notebook 08)"),
    ReferenceRun("cells-segnet", lambda: recipes.cells_recipe("segnet"),
                 "SegNet on the generated cells, U-Net's budget (notebook 08)"),
])


#: Runs registered but not yet shipped: built only when named, never checked,
#: left out of ``make reference`` with no names. Once a run is built and its
#: folder committed, its entry moves into :data:`REFERENCE_RUNS` (a test fails
#: while a shipped run is still listed here).
PENDING_RUNS = _runs([])


def _run(name: str) -> ReferenceRun:
    """The registered run ``name``, shipped or pending."""
    run = REFERENCE_RUNS.get(name) or PENDING_RUNS.get(name)
    if run is None:
        raise KeyError(f"no reference run {name!r}; known: "
                       f"{', '.join([*REFERENCE_RUNS, *PENDING_RUNS])}")
    return run


def reference_root() -> Path:
    """The ``reference/`` folder: ``$SEGNET_REFERENCE_DIR``, else the repository's."""
    given = os.environ.get(REFERENCE_ENV)
    if given:
        return Path(given).expanduser()
    return Path(__file__).resolve().parent.parent / "reference"


def path(name: str, root=None) -> Path:
    """The shipped folder of reference run ``name`` (it must exist).

    Raises:
        KeyError: no reference run of that name (the message lists them).
        FileNotFoundError: the run is not in ``root`` (the message says how to make it).
    """
    _run(name)
    folder = Path(root) if root is not None else reference_root()
    folder = folder / name
    if not (folder / MANIFEST_FILE).is_file():
        raise FileNotFoundError(
            f"reference run {name!r} not found in {folder.parent}: it ships with the "
            f"repository (clone it, or set {REFERENCE_ENV}); rebuild it with "
            f"`{rebuild_command(name)}`")
    return folder


def select(patterns: Iterable[str] = ()) -> list:
    """Names of the runs matching any of ``patterns`` (globs; none: every shipped run).

    Pending runs (:data:`PENDING_RUNS`) match patterns too, but are not part of
    "every run": ``make reference`` with no names rebuilds only what ships.
    """
    patterns = list(patterns)
    if not patterns:
        return list(REFERENCE_RUNS)
    known = [*REFERENCE_RUNS, *PENDING_RUNS]
    chosen = [n for n in known if any(fnmatch.fnmatchcase(n, p) or n.startswith(p + "/")
                                      for p in patterns)]
    unknown = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) or n.startswith(p + "/")
                                              for n in known)]
    if unknown:
        raise KeyError(f"no reference run matches {unknown}; known: {', '.join(known)}")
    return chosen


def rebuild_command(name: str) -> str:
    """The shell command that retrains and re-ships one run."""
    return f"make reference RUNS={name}"


# ---------------------------------------------------------------------------
# Building and shipping
# ---------------------------------------------------------------------------

def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine() -> dict:
    """The machine a run was made on: CPU model, cores, TensorFlow and Python versions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": cpu_count(), "tensorflow": tf2.__version__,
            "python": platform.python_version()}


def build(name: str, runs_dir="runs/reference", root=None, progress: bool = True) -> Path:
    """Trains reference run ``name`` to the end (resuming), then ships it.

    Args:
        name: a key of :data:`REFERENCE_RUNS` or :data:`PENDING_RUNS`.
        runs_dir: where the full training run is kept (checkpoints and all;
            not shipped). Rerunning resumes it.
        root: the ``reference/`` folder to ship into (default :func:`reference_root`).
        progress: show the training progress bar.

    Returns:
        The shipped folder.
    """
    run = _run(name)
    config = run.recipe()
    run_dir = Path(runs_dir) / name
    before, began = _cpu_seconds(), time.perf_counter()
    train(config, run_dir, progress=progress, export=False, log=print if progress else None)
    spent = {"cpu_seconds": _cpu_seconds() - before, "wall_seconds": time.perf_counter() - began}
    sessions = _cpu_sessions(run_dir)
    if checkpoint_dirs(run_dir) and (not sessions or spent["cpu_seconds"] > 1.0):
        sessions.append(spent)
        atomic_write_text(run_dir / _CPU_FILE, json.dumps(sessions, indent=1))
    return ship(name, run_dir, root)


def _cpu_sessions(run_dir: Path) -> list:
    """The CPU and wall seconds of each training session of a run (empty: none recorded)."""
    cpu_file = run_dir / _CPU_FILE
    return json.loads(cpu_file.read_text()) if cpu_file.is_file() else []


def _score(folder: Path, val_set) -> dict:
    """Validation scores of the model exported in ``folder``."""
    with export.load_predictor(folder) as predictor:
        evaluator = metrics.evaluate_dataset(predictor.predict, val_set)
    scores = evaluator.scores()
    per_class = np.asarray(scores["per_class_iou"], np.float64)
    return {**{k: float(scores[k]) for k in metrics.SUMMARY_KEYS},
            "per_class_iou": {val_set.class_names[c]: float(per_class[c])
                              for c in range(len(per_class)) if np.isfinite(per_class[c])},
            "images": len(evaluator)}


def ship(name: str, run_dir, root=None) -> Path:
    """Writes the shipped folder of a finished run (its last checkpoint).

    The last checkpoint, not the one with the best validation score: the book
    reports validation scores, which a choice made on the validation split
    would flatter.
    """
    run = _run(name)
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config.fingerprint() != run.recipe().fingerprint():
        raise ValueError(f"{run_dir} was trained with another recipe than {name!r} has now; "
                         "train it again (delete the folder)")
    found = checkpoint_dirs(run_dir)
    if not found or found[-1][0] != config.steps:
        raise ValueError(f"{run_dir} has not reached step {config.steps}; run "
                         f"`{rebuild_command(name)}` to finish it")
    final = (Path(root) if root is not None else reference_root()) / name
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    facts = {"name": name, "description": run.description, "command": rebuild_command(name),
             "fingerprint": config.fingerprint(), "data_version": data_version(config.data),
             "steps": config.steps, "created": datetime.date.today().isoformat(),
             "machine": machine()}
    sessions = _cpu_sessions(run_dir)
    facts["cpu_seconds"] = round(sum(s["cpu_seconds"] for s in sessions), 1) if sessions else None
    facts["wall_seconds"] = round(sum(s["wall_seconds"] for s in sessions), 1) if sessions else None
    prefix = str(found[-1][1] / "model")
    if run.ship_weights:
        export.export_model(run_dir, out=tmp, checkpoint=prefix, format="weights", dtype="float16")
        _, val_set = open_datasets(config)
        full = export.export_model(run_dir, out=temp_path(tmp), checkpoint=prefix,
                                   format="weights", dtype="float32")
        try:
            scores = {"float16": _score(tmp, val_set), "float32": _score(full, val_set)}
        finally:
            shutil.rmtree(full, ignore_errors=True)
        atomic_write_text(tmp / METRICS_FILE, json.dumps(scores, indent=1))
        facts["variables"] = {k: list(v.shape) for k, v in export.read_weights(tmp).items()}
    else:
        tmp.mkdir(parents=True)
        write_config(config, tmp)
    shutil.copyfile(run_dir / HISTORY_FILE, tmp / HISTORY_FILE)
    atomic_write_text(tmp / MANIFEST_FILE, json.dumps(facts, indent=1))
    return publish_dir(tmp, final, replace=True)


# ---------------------------------------------------------------------------
# Reading and checking
# ---------------------------------------------------------------------------

def manifest(name: str, root=None) -> dict:
    """The manifest of a shipped run (see the module docstring)."""
    return json.loads((path(name, root) / MANIFEST_FILE).read_text())


def history(name: str, root=None) -> pd.DataFrame:
    """The training curve of a shipped run (the columns of ``checkpoints.HISTORY_COLUMNS``)."""
    return read_history(path(name, root))


def _model_variables(config: TrainConfig, num_classes: int) -> dict:
    """``{name: shape}`` of the inference graph the config builds today."""
    with tf.Graph().as_default():
        set_seed(config.seed)
        export.inference_graph(config, num_classes)
        return {v.op.name: v.shape.as_list() for v in tf.global_variables()}


def check(name: str, root=None) -> list:
    """What keeps a shipped run from matching the current code (empty: nothing).

    Compares the shipped config's fingerprint with the recipe's, the data
    version with the generator's, and (for runs that ship weights) the
    variables' names and shapes with those of the model the config builds.

    Returns:
        A list of problems, each a sentence.
    """
    run = _run(name)
    try:
        folder = path(name, root)
    except FileNotFoundError as err:
        return [str(err)]
    facts = json.loads((folder / MANIFEST_FILE).read_text())
    config = read_config(folder)
    problems = []
    wanted = run.recipe()
    if config.fingerprint() != wanted.fingerprint() or facts.get("fingerprint") != wanted.fingerprint():
        problems.append(f"its recipe changed (shipped {facts.get('fingerprint')}, "
                        f"now {wanted.fingerprint()})")
    version = data_version(wanted.data)
    if facts.get("data_version") != version:
        problems.append(f"its data changed (trained on {facts.get('data_version')}, "
                        f"now {version})")
    if run.ship_weights:
        info = json.loads((folder / export.EXPORT_INFO_FILE).read_text())
        shipped = {k: list(v) for k, v in facts.get("variables", {}).items()}
        stored = {k: list(v.shape) for k, v in export.read_weights(folder).items()}
        model = _model_variables(wanted, int(info["num_classes"]))
        if stored != shipped:
            problems.append("its weights.npz does not match its manifest")
        if stored != model:
            changed = sorted(set(stored) ^ set(model)) or sorted(
                k for k in model if model[k] != stored.get(k))
            problems.append(f"the model's variables changed (e.g. {changed[:3]})")
    return problems


def shipped_size(root=None) -> int:
    """Bytes of everything under the ``reference/`` folder."""
    folder = Path(root) if root is not None else reference_root()
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

