"""The configuration of a training run: :class:`TrainConfig`, saved in its run folder.

One home per rule. A :class:`TrainConfig` checks only what is its own (the
optimiser, the schedule, the reporting intervals, the seed); the model's
fields are checked by its config (:class:`segnet_lib.model.SegNetConfig`, or
:class:`segnet_lib.unet.UNetConfig` for ``variant='unet'``), the input's by
:class:`segnet_lib.data.InputConfig` and the data options by
:func:`segnet_lib.datasets.check_options`, which :meth:`TrainConfig.validate`
builds and calls, so each message comes from the one place that knows the rule.

Each field carries its command-line flag and help text as dataclass metadata
(``dataclasses.fields(TrainConfig)[i].metadata``): ``python -m segnet_lib
train`` builds its options from them, and the class docstring lists them, so
the help cannot drift from the code.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import textwrap
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import numpy as np

from segnet_lib import data, datasets, model, rle, unet
from segnet_lib.checkpoints import CONFIG_FILE, LOCK_FILE
from segnet_lib.files import atomic_write_text
from segnet_lib.runtime import PRECISIONS, cpu_count

__all__ = ["TrainConfig", "read_config", "write_config", "check_run_dir", "config_differences",
           "RESUMABLE_FIELDS", "OPTIMIZERS", "LR_SCHEDULES", "CLASS_WEIGHTING", "MODEL_VARIANTS"]

#: Values of ``TrainConfig.variant``: the SegNet variants and U-Net.
MODEL_VARIANTS = (*model.VARIANTS, unet.VARIANT)

OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("constant", "poly")
CLASS_WEIGHTING = ("median_frequency", "none")

#: Fields that may differ between the saved config and a rerun: they change how
#: the loop reports and saves, not what it computes (``steps`` may grow to train
#: longer, unless the learning rate schedule depends on it).
RESUMABLE_FIELDS = ("steps", "log_every", "val_every", "val_images", "checkpoint_every",
                    "keep_last", "summary_every", "xla", "gpus", "workers", "worker_index")

# Fields added after runs were fingerprinted, with the value that computes what
# those runs computed: left out of the fingerprint at that value, so a shipped
# run does not turn stale because a field it could not have set appeared.
# (Overlapping CSV rows were an error before 'overlap' existed: no older run
# read any, so 'last' changes none of them. The later fields xla, gpus, workers
# and worker_index are resumable, so never in the fingerprint.)
_LATER_FIELDS = {"class_column": None, "overlap": "last", "classes": None,
                 "precision": "float32"}

# Fields that must be positive integers (batch_size is InputConfig's to check).
_POSITIVE_INTS = ("steps", "log_every", "val_every", "checkpoint_every", "keep_last",
                  "summary_every")


def _option(default, help: str, flag: Optional[str] = None, metavar: Optional[str] = None,
            choices: Optional[tuple] = None, factory=None):
    """A dataclass field with its command-line option: ``flag`` (default
    ``--field-name``; ``''`` for none), ``metavar``, ``choices`` and ``help``."""
    metadata = {"help": help, "flag": flag, "metavar": metavar, "choices": choices}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a run; saved as ``config.json`` in the run folder.

    Change fields with :meth:`replace`. The defaults follow the paper where it
    says (SGD with momentum 0.9 at a fixed learning rate, median-frequency class
    balancing) and usual VGG16 fine-tuning where it does not (weight decay 5e-4),
    at a size that fits one GPU; :mod:`segnet_lib.recipes`
    has the recipes the book and the command line start from.
    """

    data: str = _option("sample", metavar="{sample,cells,DIR,CSV}", help=(
        "'sample' (the generated sample data), 'cells' (generated cell images in the "
        "Sartorius train.csv layout), a VOC-layout folder (JPEGImages, "
        "SegmentationClass, ImageSets/Segmentation) or a Kaggle-style RLE CSV, e.g. "
        "Sartorius' train.csv (see segnet_lib.datasets.open_split)"))
    train_split: str = _option("train", metavar="NAME", help=(
        "split to train on: a list in ImageSets/Segmentation; for a CSV, 'train' "
        "(the images not held out)"))
    val_split: str = _option("val", metavar="NAME", help=(
        "split to validate on; for a CSV, 'val' (the held-out images)"))
    image_dir: Optional[str] = _option(None, metavar="DIR", help=(
        "the images of a CSV (unset: train/ next to a Sartorius train.csv, else "
        "JPEGImages next to the CSV; if that does not exist, the CSV's folder)"))
    rle_order: Optional[str] = _option(None, choices=rle.ORDERS, help=(
        "pixel order of a CSV's RLE strings: C = row-major (e.g. Carvana, Sartorius), "
        "F = column-major (e.g. Airbus, TGS Salt); required with a CSV unless its "
        "header is Sartorius' (id, annotation, cell_type: then C)"))
    class_column: Optional[str] = _option(None, metavar="NAME", help=(
        "a CSV's class column, holding names or ids (unset: cell_type for the "
        "Sartorius header, else one named class, class_id, ClassId, category_id or "
        "label; without one, every mask is one 'foreground' class). Names become "
        "classes 1, 2, ... after the background: the Sartorius cell types as "
        "shsy5y, astro, cort, other names sorted"))
    overlap: str = _option(datasets.DEFAULT_OVERLAP, choices=rle.OVERLAP_POLICIES, help=(
        "where two rows of a CSV cover one pixel: last (the later row wins; instance "
        "annotations such as Sartorius' overlap), first, or error (refuse, naming "
        "both rows)"))
    val_csv: Optional[str] = _option(None, metavar="CSV", help=(
        "a second CSV with the validation masks (unset: hold out val_fraction of the "
        "CSV's images)"))
    val_fraction: float = _option(0.1, metavar="F", help=(
        "share of a CSV's images held out for validation (drawn with the seed)"))
    classes: Optional[Tuple[int, ...]] = _option(None, metavar="IDS", help=(
        "class ids to keep, e.g. 0,1,7,8,13,15: renumbered 0..K-1 in this order, every "
        "other class void (unset: every class; see segnet_lib.datasets.ClassSubset)"))
    variant: str = _option("segnet", choices=MODEL_VARIANTS, help=(
        "segnet: VGG16 encoder + mirrored decoder; segnet_basic: 4+4 layers of 64 "
        "features; bayesian: segnet with dropout for Monte Carlo uncertainty; unet: "
        "U-Net (Ronneberger et al. 2015; model_options are UNetConfig fields)"))
    width_multiplier: float = _option(1.0, metavar="W", help=(
        "scales every layer's features (0.25: 1/16 of the compute, trains on a CPU; "
        "for unet, its base_features)"))
    dropout_rate: float = _option(0.5, metavar="P", help=(
        "dropout probability of the bayesian variant"))
    model_options: Mapping[str, Any] = _option(None, factory=dict, flag="", help=(
        "further segnet_lib.model.SegNetConfig fields, e.g. {'decoder': 'unpool', "
        "'batch_norm_decay': 0.9}, or for unet segnet_lib.unet.UNetConfig fields, e.g. "
        "{'depth': 3, 'batch_norm': False}"))
    vgg16_weights: Optional[str] = _option(None, flag="--vgg16", metavar="FILE", help=(
        "VGG16 ImageNet weights (.h5 or .npz, see segnet_lib.weights.load_vgg16) for the "
        "encoder, as the paper did (segnet and bayesian variants, width 1); unset: from "
        "scratch"))
    crop_size: Tuple[int, int] = _option((224, 224), metavar="HxW", help=(
        "(height, width) of the training crops"))
    batch_size: int = _option(4, metavar="B", help="images per step")
    min_scale: float = _option(0.75, metavar="S", help=(
        "smallest random rescaling before cropping"))
    max_scale: float = _option(1.25, metavar="S", help=(
        "largest random rescaling before cropping"))
    flip: bool = _option(True, help="random horizontal flips")
    resize_to: Optional[Tuple[int, int]] = _option(None, metavar="HxW", help=(
        "resize every image to (height, width) first (unset: keep its size)"))
    cache_images: bool = _option(False, help=(
        "keep decoded images in memory after the first epoch (small datasets only)"))
    optimizer: str = _option("sgd", choices=OPTIMIZERS, help=(
        "sgd: SGD with momentum, as in the paper; adam"))
    learning_rate: float = _option(1e-3, flag="--lr", metavar="LR", help=(
        "the initial (for a constant schedule, the only) learning rate"))
    lr_schedule: str = _option("constant", choices=LR_SCHEDULES, help=(
        "constant (the paper) or poly: lr * (1 - step / steps) ** lr_power "
        "(DeepLab's schedule)"))
    lr_power: float = _option(0.9, metavar="P", help="exponent of the poly schedule")
    momentum: float = _option(0.9, metavar="M", help="SGD momentum (the paper: 0.9)")
    weight_decay: float = _option(5e-4, metavar="WD", help=(
        "L2 factor on convolution kernels (the paper: 5e-4)"))
    class_weighting: str = _option("median_frequency", choices=CLASS_WEIGHTING, help=(
        "median_frequency: weigh the loss of rare classes up (the paper); none"))
    steps: int = _option(10000, metavar="N", help=(
        "training steps in total: the global step at which training stops (a resumed "
        "run stops at the same N)"))
    log_every: int = _option(10, metavar="N", help="steps per history row")
    val_every: int = _option(500, metavar="N", help=(
        "steps between validations (each followed by a checkpoint)"))
    val_images: Optional[int] = _option(None, metavar="N", help=(
        "validate on the first N validation images only (unset: all)"))
    checkpoint_every: int = _option(500, metavar="N", help=(
        "steps between checkpoints besides the validation ones"))
    keep_last: int = _option(3, metavar="K", help="checkpoints kept, besides the best one")
    summary_every: int = _option(10, metavar="N", help=(
        "steps between TensorBoard scalar summaries"))
    seed: int = _option(0, metavar="N", help=(
        "seed of the weights, the data order, the augmentation and a CSV's held-out "
        "images"))
    deterministic: bool = _option(False, help=(
        "on a GPU, TensorFlow's deterministic kernels (somewhat slower), so the same "
        "seed, data and machine give the same loss curve; on a CPU runs repeat "
        "without it (see segnet_lib.runtime.enable_determinism)"))
    precision: str = _option("float32", choices=PRECISIONS, help=(
        "float32; mixed_float16: float16 compute with dynamic loss scaling (TensorFlow's "
        "mixed-precision graph rewrite; NVIDIA GPUs of compute capability >= 7.0; on a CPU "
        "only emulated, for checking numerics); mixed_bfloat16: bfloat16 compute on CPUs "
        "with AVX512_BF16 or AMX-BF16 (the oneDNN rewrite). Variables stay float32"))
    xla: bool = _option(False, help=(
        "compile clusters of the training graph with XLA (auto-clustering)"))
    gpus: int = _option(1, metavar="N", help=(
        "data-parallel replicas on this machine (MirroredStrategy): one per GPU, the batch "
        "split between them; on a machine without a GPU, N logical CPU devices (to try the "
        "path; no speed-up)"))
    workers: Optional[str] = _option(None, metavar="HOST:PORT,...", help=(
        "train on several machines (MultiWorkerMirroredStrategy): every worker's address, "
        "the same list on each, or 'env' to read TF_CONFIG; each runs the same command with "
        "its --worker-index, and worker 0 writes the run folder"))
    worker_index: int = _option(0, metavar="I", help=(
        "this machine's position in --workers (0 is the chief)"))

    def __post_init__(self):
        # JSON gives lists; keep tuples so configs compare equal after a round trip.
        for name in ("crop_size", "resize_to"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(int(v) for v in value))
        if self.classes is not None and not isinstance(self.classes, (str, bytes)):
            try:
                object.__setattr__(self, "classes", tuple(self.classes))
            except TypeError:
                pass  # validate() names the bad value
        object.__setattr__(self, "model_options", dict(self.model_options or {}))
        self.validate()

    def validate(self) -> None:
        """Checks every field; raises ValueError naming the first bad one."""
        def need(ok, message):
            if not ok:
                raise ValueError(f"TrainConfig: {message}")

        need(isinstance(self.data, str) and self.data,
             f"data must be 'sample', a folder or a CSV, got {self.data!r}")
        need(self.variant in MODEL_VARIANTS,
             f"variant={self.variant!r}; expected one of {MODEL_VARIANTS}")
        need(self.optimizer in OPTIMIZERS, f"optimizer={self.optimizer!r}; expected one of {OPTIMIZERS}")
        need(self.lr_schedule in LR_SCHEDULES,
             f"lr_schedule={self.lr_schedule!r}; expected one of {LR_SCHEDULES}")
        need(self.class_weighting in CLASS_WEIGHTING,
             f"class_weighting={self.class_weighting!r}; expected one of {CLASS_WEIGHTING}")
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            need(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1,
                 f"{name} must be a positive integer, got {value!r}")
        need(self.val_images is None
             or (int(self.val_images) == self.val_images and self.val_images >= 1),
             f"val_images must be None or a positive integer, got {self.val_images!r}")
        need(math.isfinite(self.learning_rate) and self.learning_rate > 0,
             f"learning_rate must be > 0, got {self.learning_rate!r}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum!r}")
        need(self.lr_power > 0, f"lr_power must be > 0, got {self.lr_power!r}")
        need(isinstance(self.seed, (int, np.integer)) and self.seed >= 0,
             f"seed must be a non-negative integer, got {self.seed!r}")
        need(self.precision in PRECISIONS,
             f"precision={self.precision!r}; expected one of {PRECISIONS}")
        need(isinstance(self.gpus, (int, np.integer)) and not isinstance(self.gpus, bool)
             and self.gpus >= 1, f"gpus must be a positive integer, got {self.gpus!r}")
        need(self.batch_size % self.gpus == 0,
             f"batch_size {self.batch_size} must be a multiple of gpus={self.gpus} (each "
             "replica takes an equal share)")
        need(self.workers is None or (isinstance(self.workers, str) and self.workers.strip()),
             f"workers must be None, 'env' or HOST:PORT,..., got {self.workers!r}")
        need(isinstance(self.worker_index, (int, np.integer)) and self.worker_index >= 0,
             f"worker_index must be a non-negative integer, got {self.worker_index!r}")
        try:  # the other configs' own checks speak for their fields
            datasets.check_options(self.rle_order, self.val_fraction, self.overlap, self.classes)
            self.model_config()
            self.input_config(training=True)
        except ValueError as err:
            raise ValueError(f"TrainConfig: {err}") from None

    def replace(self, **changes) -> "TrainConfig":
        """Returns a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def model_config(self):
        """The model config of this run, for :func:`segnet_lib.model.build`.

        Returns:
            A :class:`segnet_lib.model.SegNetConfig` (``variant``,
            ``width_multiplier``, ``dropout_rate``, ``weight_decay``, then
            ``model_options``), or for ``variant='unet'`` a
            :class:`segnet_lib.unet.UNetConfig` (``weight_decay``, then
            ``model_options``, its ``base_features`` multiplied by
            ``width_multiplier``: 64 x 0.25 = 16).
        """
        is_unet = self.variant == unet.VARIANT
        kind = unet.UNetConfig if is_unet else model.SegNetConfig
        known = {f.name for f in dataclasses.fields(kind)}
        unknown = sorted(set(self.model_options) - known)
        if unknown:
            raise ValueError(f"model_options has unknown {kind.__name__} fields {unknown}; "
                             f"known: {sorted(known)}")
        if not is_unet:
            options = dict(variant=self.variant, width_multiplier=self.width_multiplier,
                           dropout_rate=self.dropout_rate, weight_decay=self.weight_decay)
            options.update(self.model_options)
            return model.SegNetConfig(**options)
        if not self.width_multiplier > 0:
            raise ValueError(f"width_multiplier={self.width_multiplier!r} must be > 0")
        options = dict(weight_decay=self.weight_decay, **self.model_options)
        base = options.get("base_features", unet.UNetConfig.base_features)
        if isinstance(base, (int, np.integer)) and not isinstance(base, bool) and base >= 1:
            # Anything else is left for UNetConfig to refuse, naming the field.
            options["base_features"] = max(1, int(round(base * self.width_multiplier)))
        return unet.UNetConfig(**options)

    def input_config(self, training: bool = True) -> data.InputConfig:
        """The :class:`segnet_lib.data.InputConfig` of the training (or validation) input."""
        if not training:  # whole images, one at a time, as the paper evaluates
            return data.InputConfig(crop_size=None, batch_size=1, min_scale=1.0, max_scale=1.0,
                                    flip=False, seed=self.seed, resize_to=self.resize_to,
                                    num_parallel_calls=cpu_count(), cache=self.cache_images)
        return data.InputConfig(
            crop_size=self.crop_size, batch_size=self.batch_size, min_scale=self.min_scale,
            max_scale=self.max_scale, flip=self.flip, seed=self.seed, resize_to=self.resize_to,
            num_parallel_calls=cpu_count(), cache=self.cache_images)

    def to_dict(self) -> dict:
        """JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        for name in ("crop_size", "resize_to", "classes"):
            if out[name] is not None:
                out[name] = list(out[name])
        return out

    @classmethod
    def from_dict(cls, values: Mapping) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        return cls(**values)

    def fingerprint(self) -> str:
        """Short hash of the fields that define what is computed (not the reporting)."""
        values = {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_FIELDS
                  and not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}
        values["steps"] = self.steps
        text = json.dumps(values, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def _document_fields(cls) -> None:
    """Appends an ``Attributes:`` section, built from the fields' help, to the docstring."""
    lines = ["", "    Attributes:"]
    for field in dataclasses.fields(cls):
        text = f"{field.name}: {field.metadata['help']}."
        lines += textwrap.wrap(text, 88, initial_indent=" " * 8, subsequent_indent=" " * 12)
    cls.__doc__ = cls.__doc__.rstrip() + "\n" + "\n".join(lines) + "\n    "


_document_fields(TrainConfig)


def read_config(run_dir) -> TrainConfig:
    """The :class:`TrainConfig` saved in a run folder.

    Raises:
        FileNotFoundError: the folder has no ``config.json``.
        ValueError: the file is not a valid config (the message names it).
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a training run folder")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a valid training config: {err}") from None


def write_config(config: TrainConfig, run_dir) -> Path:
    """Saves ``config`` as the run folder's ``config.json`` (atomically)."""
    return atomic_write_text(Path(run_dir) / CONFIG_FILE, json.dumps(config.to_dict(), indent=1))


def config_differences(saved: TrainConfig, new: TrainConfig) -> list:
    """Fields that keep ``new`` from resuming a run of ``saved`` (empty: it may resume)."""
    a, b = saved.to_dict(), new.to_dict()
    diffs = [k for k in a if a[k] != b[k] and k not in RESUMABLE_FIELDS]
    if saved.steps != new.steps and saved.lr_schedule == "poly":
        diffs.append("steps (the poly learning rate schedule depends on it)")
    return diffs


def check_run_dir(config: TrainConfig, out_dir) -> Optional[TrainConfig]:
    """Checks that ``out_dir`` is new, or a run of the same config (to resume).

    Returns:
        The saved config, or None for a new run.

    Raises:
        ValueError: ``out_dir`` holds a run with a different config (the
            message lists the differing fields), or is a non-empty folder that
            is not a run, or is a file.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    if not (out_dir / CONFIG_FILE).exists():
        others = [p.name for p in out_dir.iterdir() if p.name != LOCK_FILE] if out_dir.is_dir() else []
        if others:
            raise ValueError(
                f"{out_dir} is not empty and holds no {CONFIG_FILE} (found {sorted(others)[:5]}); "
                "choose a new folder for the run")
        return None
    saved = read_config(out_dir)
    diffs = config_differences(saved, config)
    if diffs:
        fields = [k.split(" ")[0] for k in diffs]
        details = ", ".join(f"{k}: {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in fields)
        raise ValueError(
            f"{out_dir} holds a run with a different config ({details}); rerun with the same "
            "options to resume it, or choose a new --out")
    return saved
