"""SegNet, step by step: the helper library behind the tutorial book.

One module per concept (see README, "Layout"):

* :mod:`segnet_lib.rle`: run-length mask codec and CSV helpers.
* :mod:`segnet_lib.voc`: PASCAL VOC 2012 classes, palette and directory reader.
* :mod:`segnet_lib.sample_data`: the embedded sample dataset generator.
* :mod:`segnet_lib.data`: the ``tf.data`` input pipeline and class statistics.
* :mod:`segnet_lib.model`: SegNet graph builders and index unpooling.
* :mod:`segnet_lib.weights`: VGG16 ImageNet weights for the encoder.
* :mod:`segnet_lib.train`: loss, optimiser, training loop and checkpoints.
* :mod:`segnet_lib.metrics`: confusion matrix, accuracies, IoU, boundary F1.
* :mod:`segnet_lib.viz`: colourising, overlays, plots and widgets.

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
