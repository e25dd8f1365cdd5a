"""Exporting a trained model (SegNet or U-Net) for inference, and running it: the Predictor.

:func:`export_model` builds the inference graph fresh (``is_training=False``,
batch-norm moving averages; no loss, optimiser or input pipeline), restores a
checkpoint's values into it and writes one of three formats, with
``export.json`` naming the tensors, the classes and the checkpoint:

* ``'frozen'``: one GraphDef with the weights as constants (``frozen_graph.pb``);
* ``'saved_model'``: a SavedModel, for TensorFlow Serving and other tools;
* ``'weights'``: the variables' values alone (``weights.npz``, float16 by
  default: half the bytes, and what the book ships in ``reference/``) next to
  the run's ``config.json``, from which the graph is rebuilt when loaded.

:func:`load_predictor` loads any of them (or a run folder, exporting it first)
into a :class:`Predictor` without rebuilding the training graph::

    with load_predictor("runs/first") as predictor:
        probabilities = predictor.predict(image)   # uint8 [H, W, 3] -> float32 [H, W, C]
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from segnet_lib import data, model
from segnet_lib._setup import set_seed
from segnet_lib._tf import tf
from segnet_lib.checkpoints import (CONFIG_FILE, META_FILE, best_checkpoint, find_checkpoint,
                                    read_class_weights)
from segnet_lib.config import TrainConfig, read_config, write_config
from segnet_lib.files import atomic_write_bytes, atomic_write_text
from segnet_lib.runtime import session_config
from segnet_lib.voc import VOC_CLASSES

__all__ = ["EXPORT_DIR", "FROZEN_GRAPH_FILE", "EXPORT_INFO_FILE", "WEIGHTS_FILE", "EXPORT_FORMATS",
           "inference_graph", "export_model", "export_if_stale", "read_weights", "stored_values",
           "Predictor", "load_predictor"]

#: The export folder inside a run folder (what ``train`` writes when it ends).
EXPORT_DIR = "export"
FROZEN_GRAPH_FILE = "frozen_graph.pb"
EXPORT_INFO_FILE = "export.json"
WEIGHTS_FILE = "weights.npz"
EXPORT_FORMATS = ("frozen", "saved_model", "weights")
#: Storage types of the ``'weights'`` format.
WEIGHT_DTYPES = ("float16", "float32")

_INPUT_NAME = "images"
_OUTPUT_NAME = "probabilities"
_MC_OUTPUT_NAME = "mc_probabilities"


def inference_graph(config: TrainConfig, num_classes: int):
    """Builds ``images uint8 [B, H, W, 3] -> probabilities float32 [B, H, W, C]``.

    The Bayesian variant gets a second output, ``mc_probabilities``, with
    dropout on (Monte Carlo sampling): each batch element is one sample.

    Args:
        config: the run's :class:`~segnet_lib.config.TrainConfig`.
        num_classes: ``C``.

    Returns:
        ``(images, outputs)``: the uint8 placeholder and ``{name: tensor}``.
    """
    images = tf.placeholder(tf.uint8, [None, None, None, 3], name=_INPUT_NAME)
    normalised = data.normalize(images)
    model_config = config.model_config()
    logits, _ = model.build(normalised, num_classes, is_training=False, config=model_config)
    outputs = {_OUTPUT_NAME: tf.nn.softmax(logits, name=_OUTPUT_NAME)}
    if config.variant == "bayesian":
        mc_logits, _ = model.build(normalised, num_classes, is_training=False, config=model_config,
                                   reuse=True, mc_dropout=True)
        outputs[_MC_OUTPUT_NAME] = tf.nn.softmax(mc_logits, name=_MC_OUTPUT_NAME)
    return images, outputs


def export_model(run_dir, out=None, checkpoint: str = "best", format: str = "frozen",
                 dtype: str = "float16") -> Path:
    """Freezes a checkpoint into an inference graph that :class:`Predictor` loads.

    The inference graph (``is_training=False``, batch-norm moving averages, no
    loss, optimiser or input pipeline) is built fresh, the checkpoint's values
    are restored into it, and then either

    * ``'frozen'``: the variables become constants
      (``tf.graph_util.convert_variables_to_constants``) in one GraphDef file,
      ``out/frozen_graph.pb``, or
    * ``'saved_model'``: a SavedModel (``tf.saved_model.simple_save``) in ``out``,
      with the signature ``images -> probabilities``, or
    * ``'weights'``: ``out/weights.npz``, every variable of the inference graph
      by name, stored as ``dtype``, and the run's ``out/config.json``.

    In every case ``out/export.json`` records the tensor names, classes and the
    checkpoint used.

    Args:
        run_dir: a training run folder.
        out: destination folder (default ``run_dir/export``; for
            ``'saved_model'`` it must not exist yet).
        checkpoint: ``'best'`` (best validation mIoU), ``'latest'``, or a
            checkpoint prefix.
        format: ``'frozen'``, ``'saved_model'`` or ``'weights'``.
        dtype: the ``'weights'`` format's storage type, ``'float16'`` or
            ``'float32'`` (the values are float32 again when loaded); a
            variable that float16 cannot hold stays float32
            (:func:`stored_values`).

    Returns:
        The destination folder.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format={format!r}; expected one of {EXPORT_FORMATS}")
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected one of {WEIGHT_DTYPES}")
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    prefix = find_checkpoint(run_dir, checkpoint)
    weights = read_class_weights(run_dir)
    class_names = weights["classes"] if weights else list(VOC_CLASSES)
    num_classes = len(class_names)
    out = Path(out) if out is not None else run_dir / EXPORT_DIR
    meta_path = Path(prefix).parent / META_FILE
    step = json.loads(meta_path.read_text())["step"] if meta_path.is_file() else None
    graph = tf.Graph()
    with graph.as_default():
        # Seeded: the Bayesian variant's dropout samples repeat in a new session.
        set_seed(config.seed)
        images, outputs = inference_graph(config, num_classes)
        saver = tf.train.Saver(tf.global_variables())
        with tf.Session(config=session_config()) as sess:
            saver.restore(sess, prefix)
            info = {"format": format, "input": images.name,
                    "outputs": {k: v.name for k, v in outputs.items()},
                    "num_classes": num_classes, "class_names": class_names,
                    "variant": config.variant, "step": step,
                    # Relative to the run folder, so the folder can move.
                    "checkpoint": os.path.relpath(prefix, run_dir)}
            if format == "frozen":
                frozen = tf.graph_util.convert_variables_to_constants(
                    sess, graph.as_graph_def(), [t.op.name for t in outputs.values()])
                out.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(out / FROZEN_GRAPH_FILE, frozen.SerializeToString())
            elif format == "weights":
                variables = tf.global_variables()
                values = sess.run(variables)
                out.mkdir(parents=True, exist_ok=True)
                buffer = io.BytesIO()
                np.savez_compressed(buffer, **{v.op.name: stored_values(x, dtype)
                                               for v, x in zip(variables, values)})
                atomic_write_bytes(out / WEIGHTS_FILE, buffer.getvalue())
                write_config(config, out)
                info["dtype"] = dtype
            else:
                if out.exists():
                    raise ValueError(f"SavedModel destination {out} exists; choose a new folder")
                tf.saved_model.simple_save(sess, str(out), inputs={_INPUT_NAME: images},
                                           outputs=outputs)
    atomic_write_text(out / EXPORT_INFO_FILE, json.dumps(info, indent=1))
    return out


def export_if_stale(run_dir) -> None:
    """Exports the best checkpoint unless ``run_dir/export`` already holds it."""
    run_dir = Path(run_dir)
    info_path = run_dir / EXPORT_DIR / EXPORT_INFO_FILE
    best = best_checkpoint(run_dir)
    if best is None:
        return
    wanted = os.path.relpath(best, run_dir)
    if info_path.is_file() and (run_dir / EXPORT_DIR / FROZEN_GRAPH_FILE).is_file():
        if json.loads(info_path.read_text()).get("checkpoint") == wanted:
            return
    export_model(run_dir)


class Predictor:
    """Runs an exported model (frozen GraphDef or SavedModel) on images.

    Build one with :func:`load_predictor`. It owns a ``tf.Session`` on its own
    graph; use it as a context manager or call :meth:`close`.

    Attributes:
        num_classes: ``C``.
        class_names: tuple of class names.
        variant: the model variant.
        has_mc_dropout: whether :meth:`sample` can draw Monte Carlo samples.
    """

    def __init__(self, graph, session, input_tensor, outputs: Mapping[str, Any], info: Mapping):
        self._graph = graph
        self._session = session
        self._input = input_tensor
        self._outputs = dict(outputs)
        self.info = dict(info)
        self.num_classes = int(info["num_classes"])
        self.class_names = tuple(info["class_names"])
        self.variant = info.get("variant")
        self.has_mc_dropout = _MC_OUTPUT_NAME in self._outputs

    @staticmethod
    def _check(images, batched: bool) -> np.ndarray:
        images = np.asarray(images)
        ndim = 4 if batched else 3
        if images.dtype != np.uint8 or images.ndim != ndim or images.shape[-1] != 3:
            want = "[batch, height, width, 3]" if batched else "[height, width, 3]"
            raise ValueError(
                f"expected a uint8 RGB image {want}, got dtype {images.dtype} and shape {images.shape}")
        return images

    def predict_batch(self, images) -> np.ndarray:
        """Class probabilities of a batch: uint8 ``[B, H, W, 3]`` -> float32 ``[B, H, W, C]``."""
        images = self._check(images, batched=True)
        return self._session.run(self._outputs[_OUTPUT_NAME], {self._input: images})

    def predict(self, image) -> np.ndarray:
        """Class probabilities of one image: uint8 ``[H, W, 3]`` -> float32 ``[H, W, C]``."""
        return self.predict_batch(self._check(image, batched=False)[None])[0]

    def labels(self, image) -> np.ndarray:
        """uint8 ``[H, W]`` arg-max class ids of one image."""
        return self.predict(image).argmax(-1).astype(np.uint8)

    def sample(self, images) -> np.ndarray:
        """Monte Carlo dropout samples (Bayesian SegNet only).

        Every batch element gets its own dropout mask, so a batch of ``N``
        copies of one image gives ``N`` samples (see
        :func:`segnet_lib.bayes.mc_dropout_predict`, which takes this method
        as its ``sample_fn``).

        Args:
            images: uint8 ``[B, H, W, 3]``.

        Returns:
            float32 ``[B, H, W, C]`` softmax probabilities, dropout on.
        """
        if not self.has_mc_dropout:
            raise ValueError(f"a {self.variant!r} model has no dropout to sample; "
                             "train the 'bayesian' variant for Monte Carlo dropout")
        images = self._check(images, batched=True)
        return self._session.run(self._outputs[_MC_OUTPUT_NAME], {self._input: images})

    def close(self) -> None:
        """Frees the session."""
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self) -> str:
        return (f"Predictor({self.variant!r}, {self.num_classes} classes, "
                f"{self.info.get('format')}, step {self.info.get('step')})")


def stored_values(values, dtype: str) -> np.ndarray:
    """``values`` as a ``'weights'`` export stores them: in ``dtype``, unless that overflows.

    float16 holds magnitudes up to 65504. A batch-norm moving variance can be
    larger (SegNet-Basic's first 7x7 convolution of 0-255 pixels reaches
    ~1e5), and as float16 it would become inf and zero its channel, so a
    variable with any value beyond float16's range is stored in float32.
    """
    values = np.asarray(values)
    if dtype == "float16" and np.abs(values).max(initial=0) > np.finfo(np.float16).max:
        return values.astype(np.float32)
    return values.astype(dtype)


def read_weights(folder) -> dict:
    """The variables of a ``'weights'`` export: ``{name: float32 array}``.

    Raises:
        FileNotFoundError: no ``weights.npz`` in ``folder``.
        ValueError: the file is not a readable ``.npz`` (the message names it).
    """
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a 'weights' export")
    try:
        with np.load(path) as arrays:
            return {name: arrays[name].astype(np.float32) for name in arrays.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None


def _load_weights(session, folder: Path, info: Mapping):
    """Rebuilds the inference graph of a ``'weights'`` export and loads its values."""
    config = read_config(folder)
    set_seed(config.seed)
    images, outputs = inference_graph(config, int(info["num_classes"]))
    values = read_weights(folder)
    variables = {v.op.name: v for v in tf.global_variables()}
    if set(values) != set(variables):
        missing = sorted(set(variables) - set(values))[:3]
        extra = sorted(set(values) - set(variables))[:3]
        raise ValueError(f"{folder / WEIGHTS_FILE} does not fit the model of its config.json "
                         f"(missing {missing}, unexpected {extra}); export it again")
    for name, variable in variables.items():
        if values[name].shape != tuple(variable.shape.as_list()):
            raise ValueError(f"{folder / WEIGHTS_FILE}: {name} has shape {values[name].shape}, "
                             f"the model's is {variable.shape}; export it again")
        variable.load(values[name], session)
    return images, outputs


def load_predictor(path, checkpoint: str = "best") -> Predictor:
    """Loads an exported model for inference, without the training graph.

    Args:
        path: a run folder (its ``export/`` is used, written first from the
            chosen checkpoint if missing or out of date), an export folder
            (``frozen_graph.pb``, a SavedModel or ``weights.npz``, with
            ``export.json``; a shipped reference run is one), or a ``.pb``
            frozen graph next to its ``export.json``.
        checkpoint: for a run folder, ``'best'`` or ``'latest'``.

    Returns:
        A :class:`Predictor`.

    Raises:
        FileNotFoundError: nothing loadable at ``path``.
    """
    path = Path(path).expanduser()
    if (path / CONFIG_FILE).is_file() and not (path / EXPORT_INFO_FILE).is_file():  # a run folder
        if checkpoint == "best":
            export_if_stale(path)
            path = path / EXPORT_DIR
        else:
            path = export_model(path, out=path / f"{EXPORT_DIR}-{checkpoint}", checkpoint=checkpoint)
    folder = path.parent if path.is_file() else path
    info_path = folder / EXPORT_INFO_FILE
    if not info_path.is_file():
        raise FileNotFoundError(
            f"{path} is not an exported model (no {EXPORT_INFO_FILE}); pass a run folder, "
            "an export folder or a frozen_graph.pb")
    info = json.loads(info_path.read_text())
    graph = tf.Graph()
    session = tf.Session(graph=graph, config=session_config())
    try:
        with graph.as_default():
            if info["format"] == "saved_model":
                tf.saved_model.loader.load(session, [tf.saved_model.tag_constants.SERVING],
                                           str(folder))
            elif info["format"] == "weights":
                _load_weights(session, folder, info)
            else:
                pb = path if path.is_file() else folder / FROZEN_GRAPH_FILE
                graph_def = tf.GraphDef()
                graph_def.ParseFromString(pb.read_bytes())
                tf.import_graph_def(graph_def, name="")
    except BaseException:
        session.close()
        raise
    input_tensor = graph.get_tensor_by_name(info["input"])
    outputs = {k: graph.get_tensor_by_name(v) for k, v in info["outputs"].items()}
    return Predictor(graph, session, input_tensor, outputs, info)
