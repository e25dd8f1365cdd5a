"""SegNet, step by step: the helper library behind the tutorial book.

One module per concept (see README, "Layout"); a module imports only modules
above it in this list, so there is no cycle (``tests/test_structure.py``):

* :mod:`segnet_lib.files`: atomic writes and the cache folder.
* :mod:`segnet_lib.rle_text`, :mod:`segnet_lib.rle`, :mod:`segnet_lib.rle_csv`:
  fast integer text, the run-length mask codec, RLE CSV files.
* :mod:`segnet_lib.voc`: PASCAL VOC 2012 classes, palette and file readers.
* :mod:`segnet_lib.sample_data`, :mod:`segnet_lib.cells`: the embedded sample
  dataset generator; the Sartorius cell layout, its stand-in, submissions.
* :mod:`segnet_lib.datasets`: the VOC and CSV datasets and the one opener of ``--data``.
* :mod:`segnet_lib.data`: the ``tf.data`` input pipeline and class statistics.
* :mod:`segnet_lib.unpool`, :mod:`segnet_lib.layers`, :mod:`segnet_lib.model`,
  :mod:`segnet_lib.unet`: pooling indices and unpooling; the layers; the one
  graph builder (SegNet and its decoder variants); U-Net through it.
* :mod:`segnet_lib.weights`: VGG16 ImageNet weights for the encoder.
* :mod:`segnet_lib.metrics`: confusion matrix, accuracies, IoU, boundary F1.
* :mod:`segnet_lib.losses`, :mod:`segnet_lib.runtime`: what training minimises;
  sessions and determinism.
* :mod:`segnet_lib.memory`: measured peak memory of inference and training.
* :mod:`segnet_lib.checkpoints`, :mod:`segnet_lib.config`,
  :mod:`segnet_lib.recipes`: the run folder; ``TrainConfig``; the recipes.
* :mod:`segnet_lib.export`, :mod:`segnet_lib.train`: the inference model and
  the ``Predictor``; the training graph and loop.
* :mod:`segnet_lib.bayes`, :mod:`segnet_lib.viz`, :mod:`segnet_lib.study`: Monte
  Carlo dropout, plots, the decoder study.
* :mod:`segnet_lib.cli`: ``python -m segnet_lib COMMAND``.

Importing the package does not import TensorFlow; :func:`setup` does.
"""
import os as _os

# TensorFlow reads these when it is first imported; setting them here (before
# any submodule imports TF) keeps its C++ start-up chatter out of notebook
# outputs, which nbval compares. A user's own setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from segnet_lib._setup import SetupInfo, set_seed, setup  # noqa: E402

__all__ = ["setup", "set_seed", "SetupInfo", "__version__"]
__version__ = "0.1.0"
