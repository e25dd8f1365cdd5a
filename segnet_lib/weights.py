"""VGG16 ImageNet weights for SegNet's encoder.

The paper initialises the 13 encoder convolutions from VGG16 trained on
ImageNet; batch norm and the decoder start from scratch. The standard source is
Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (58 MB, what
``keras.applications.VGG16(weights='imagenet', include_top=False)`` downloads
into ``~/.keras/models/``; also published on GitHub under
``fchollet/deep-learning-models`` release v0.1). Its layout::

    /                      attrs: layer_names = [b'input_1', b'block1_conv1', ...]
    /block1_conv1          attrs: weight_names = [b'block1_conv1_W_1:0', b'block1_conv1_b_1:0']
    /block1_conv1/block1_conv1_W_1:0   float32 [3, 3, 3, 64]   (height, width, in, out)
    /block1_conv1/block1_conv1_b_1:0   float32 [64]
    ...
    /block5_conv3/...      [3, 3, 512, 512], [512]

Newer Keras saves name the datasets ``kernel:0``/``bias:0`` (possibly nested one
group deeper, and under ``/model_weights`` for a whole-model file); the reader
finds the 4-D kernel and 1-D bias of each ``blockS_convK`` group either way.

A ``.npz`` with the same arrays is also accepted, keyed ``block1_conv1/kernel``
and ``block1_conv1/bias`` (or ``conv1_1_W``/``conv1_1_b``, the naming of the
widely shared ``vgg16_weights.npz``).

The Keras weights come from the Caffe model, which reads **BGR** images. The
input pipeline (:mod:`segnet_lib.data`) gives RGB, so the loader reverses the
input channels of the first kernel (``file_channel_order='BGR'``); pass
``'RGB'`` for a file already converted.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np

from segnet_lib._tf import tf

__all__ = ["VGG16_LAYERS", "VGG16_SHAPES", "KERAS_FILENAME", "read_vgg16", "load_vgg16"]

KERAS_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"

#: SegNet encoder layer -> Keras VGG16 layer.
VGG16_LAYERS = {
    f"conv{stage}_{k}": f"block{stage}_conv{k}"
    for stage, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)) for k in range(1, n + 1)
}

#: Kernel shape of each layer in the real VGG16 ([3, 3, in, out]; bias [out]).
VGG16_SHAPES = {}
_channels = 3
for _layer, _out in zip(VGG16_LAYERS, (64, 64, 128, 128, 256, 256, 256,
                                        512, 512, 512, 512, 512, 512)):
    VGG16_SHAPES[_layer] = (3, 3, _channels, _out)
    _channels = _out
del _layer, _out, _channels

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURE = b"PK\x03\x04"


def _sniff(path: Path) -> str:
    """'h5' or 'npz' from the file's first bytes (the extension can lie)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_HDF5_SIGNATURE):
        return "h5"
    if head.startswith(_ZIP_SIGNATURE):
        return "npz"
    raise ValueError(
        f"{path}: neither an HDF5 (.h5) nor an .npz file (first bytes {head!r}); expected "
        f"Keras' {KERAS_FILENAME} or an .npz of the same arrays")


def _decode(names):
    return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def _h5_layer_arrays(group, path, keras_name):
    """(kernel, bias) of one Keras layer group."""
    if "weight_names" in group.attrs:
        datasets = [group[name] for name in _decode(group.attrs["weight_names"])]
    else:
        datasets = []
        group.visititems(lambda _, obj: datasets.append(obj)
                         if isinstance(obj, h5py.Dataset) else None)
    kernels = [d for d in datasets if d.ndim == 4]
    biases = [d for d in datasets if d.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
        found = {d.name: d.shape for d in datasets}
        raise ValueError(f"{path}: layer {keras_name!r} should hold one 4-D kernel and one "
                         f"1-D bias, found {found}")
    return np.asarray(kernels[0][()]), np.asarray(biases[0][()])


def _read_h5(path):
    out = {}
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        present = sorted(root.keys())
        for layer, keras_name in VGG16_LAYERS.items():
            if keras_name not in root:
                raise ValueError(f"{path}: no layer {keras_name!r} (for {layer}); the file has "
                                 f"{present}. Is it {KERAS_FILENAME}?")
            out[layer] = _h5_layer_arrays(root[keras_name], path, keras_name)
    return out


def _npz_key(keys, layer, keras_name, part, path):
    suffixes = {"kernel": ("/kernel", "/kernel:0", "_W", "_W_1:0", "/weights"),
                "bias": ("/bias", "/bias:0", "_b", "_b_1:0", "/biases")}[part]
    for name in (keras_name, layer):
        for suffix in suffixes:
            if name + suffix in keys:
                return name + suffix
    raise ValueError(f"{path}: no {part} for {layer} (looked for {keras_name}/{part} and "
                     f"{layer}_{'W' if part == 'kernel' else 'b'}); keys: {sorted(keys)[:8]}...")


def _read_npz(path):
    out = {}
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        for layer, keras_name in VGG16_LAYERS.items():
            kernel = data[_npz_key(keys, layer, keras_name, "kernel", path)]
            bias = data[_npz_key(keys, layer, keras_name, "bias", path)]
            out[layer] = (np.asarray(kernel), np.asarray(bias))
    return out


def read_vgg16(path):
    """Reads VGG16's 13 convolution kernels and biases from an .h5 or .npz file.

    Args:
        path: Keras' ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (or any
            Keras HDF5 weights file of VGG16), or an ``.npz`` of the same arrays.

    Returns:
        A dict ``{'conv1_1': (kernel [3, 3, in, out] float32, bias [out] float32),
        ..., 'conv5_3': (...)}`` in the file's channel order (BGR for Keras).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5/npz file, truncated or corrupt, a layer missing,
            a kernel that is not 4-D, a bias that does not match its kernel, or
            non-finite values. The message names the file and the layer.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG16 weights file {path} not found. Download {KERAS_FILENAME} (see the README, "
            "'VGG16 weights') or run keras.applications.VGG16(weights='imagenet', "
            "include_top=False) once and use the copy in ~/.keras/models/")
    kind = _sniff(path)
    try:
        arrays = _read_h5(path) if kind == "h5" else _read_npz(path)
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        # h5py reports a cut file as OSError ("truncated file"), np.load as
        # BadZipFile or EOFError.
        raise ValueError(f"{path}: cannot read the {kind} file, truncated or corrupt? ({e})") from e
    previous_out = None
    for layer, (kernel, bias) in arrays.items():
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
            raise ValueError(f"{path}: {layer} kernel has shape {kernel.shape}; expected "
                             "[3, 3, in, out] (TensorFlow 'tf' dim ordering)")
        if bias.shape != (kernel.shape[3],):
            raise ValueError(f"{path}: {layer} bias has shape {bias.shape}; its kernel "
                             f"{kernel.shape} has {kernel.shape[3]} outputs")
        if previous_out is not None and kernel.shape[2] != previous_out:
            raise ValueError(f"{path}: {layer} kernel takes {kernel.shape[2]} input channels but "
                             f"the previous layer gives {previous_out}")
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise ValueError(f"{path}: {layer} has non-finite values")
        previous_out = kernel.shape[3]
    return {k: (v[0].astype(np.float32), v[1].astype(np.float32)) for k, v in arrays.items()}


def load_vgg16(path, scope="segnet", file_channel_order="BGR", graph=None):
    """Prepares loading VGG16 weights into the encoder of a built SegNet graph.

    Call after :func:`segnet_lib.model.segnet` built the model (variant
    ``'segnet'`` or ``'bayesian'``, width multiplier 1 to match the file), and
    run the returned function after the variables' initialiser, e.g. as a
    ``tf.train.Scaffold`` ``init_fn`` or by hand::

        init_fn = weights.load_vgg16(path)
        sess.run(tf.global_variables_initializer())
        init_fn(sess)

    The arrays travel through placeholders, so the graph does not grow by the
    58 MB of weights. Batch norm and the decoder keep their initial values.

    Args:
        path: an .h5 or .npz file (see :func:`read_vgg16`).
        scope: the SegNet builder's variable scope.
        file_channel_order: ``'BGR'`` (Keras/Caffe weights) reverses the first
            kernel's input channels to match the RGB input pipeline; ``'RGB'``
            leaves it.
        graph: the graph holding the model (default graph if None).

    Returns:
        ``init_fn(session)`` that assigns the 26 encoder variables; its
        ``layers`` attribute lists the layer names.

    Raises:
        FileNotFoundError, ValueError: see :func:`read_vgg16`; also ValueError when
            the graph lacks a variable (e.g. SegNet-Basic) or a shape differs.
    """
    if file_channel_order not in ("BGR", "RGB"):
        raise ValueError(f"file_channel_order={file_channel_order!r}; expected 'BGR' or 'RGB'")
    arrays = read_vgg16(path)
    graph = graph or tf.get_default_graph()
    variables = {v.op.name: v for v in graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)}
    assign_ops, feed = [], {}
    with graph.as_default(), tf.name_scope("load_vgg16"):
        for layer, (kernel, bias) in arrays.items():
            if layer == "conv1_1" and file_channel_order == "BGR":
                kernel = kernel[:, :, ::-1, :]
            for value, var_name in ((kernel, "weights"), (bias, "biases")):
                full = f"{scope}/{layer}/{var_name}"
                if full not in variables:
                    raise ValueError(
                        f"the graph has no variable {full!r} to load {layer} from {path} into; "
                        "VGG16 weights fit the 'segnet' and 'bayesian' variants built under "
                        f"scope {scope!r}")
                var = variables[full]
                expected = tuple(var.shape.as_list())
                if expected != value.shape:
                    raise ValueError(
                        f"{path}: {layer} {var_name} has shape {value.shape} but {full} is "
                        f"{expected} (a width multiplier other than 1 cannot use VGG16 weights)")
                placeholder = tf.placeholder(tf.float32, expected, name=f"{layer}_{var_name}")
                assign_ops.append(tf.assign(var, placeholder))
                feed[placeholder] = np.ascontiguousarray(value)

    def init_fn(session):
        """Assigns the VGG16 arrays to the encoder variables."""
        session.run(assign_ops, feed_dict=feed)

    init_fn.layers = list(arrays)
    return init_fn
