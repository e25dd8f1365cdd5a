"""segnet_lib.weights: VGG16 weights into the SegNet encoder.

The tests write small files with the structure of Keras'
vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 themselves; nothing is
downloaded.
"""
import h5py
import numpy as np
import pytest

from segnet_lib import model, weights
from segnet_lib._tf import tf

WIDTH = 0.125  # 8, 16, 32, 64 features: a tiny file of the right structure


def _tiny_arrays(rng, width=WIDTH):
    arrays, cin = {}, 3
    for layer, shape in weights.VGG16_SHAPES.items():
        cout = max(1, int(round(shape[3] * width)))
        arrays[layer] = (rng.normal(size=(3, 3, cin, cout)).astype(np.float32),
                         rng.normal(size=cout).astype(np.float32))
        cin = cout
    return arrays


def write_keras_h5(path, arrays, modern=False):
    """Writes the Keras 2 'notop' layout (``modern``: kernel:0/bias:0 names, nested)."""
    with h5py.File(path, "w") as f:
        names = ["input_1"]
        f.create_group("input_1").attrs["weight_names"] = []
        for stage in range(1, 6):
            for layer, keras in weights.VGG16_LAYERS.items():
                if not keras.startswith(f"block{stage}_"):
                    continue
                kernel, bias = arrays[layer]
                g = f.create_group(keras)
                if modern:
                    g.create_dataset(f"{keras}/kernel:0", data=kernel)
                    g.create_dataset(f"{keras}/bias:0", data=bias)
                else:
                    wn = [f"{keras}_W_1:0".encode(), f"{keras}_b_1:0".encode()]
                    g.attrs["weight_names"] = wn
                    g.create_dataset(wn[0].decode(), data=kernel)
                    g.create_dataset(wn[1].decode(), data=bias)
                names.append(keras)
            f.create_group(f"block{stage}_pool").attrs["weight_names"] = []
            names.append(f"block{stage}_pool")
        f.attrs["layer_names"] = [n.encode() for n in names]


def _build(width=WIDTH, variant="segnet"):
    images = tf.placeholder(tf.float32, [1, 32, 32, 3])
    config = model.SegNetConfig(variant=variant, width_multiplier=width)
    return model.segnet(images, 3, is_training=False, config=config)


def _encoder_values(sess):
    names = [f"segnet/{layer}/{v}" for layer in weights.VGG16_LAYERS for v in ("weights", "biases")]
    by_name = {v.op.name: v for v in tf.global_variables()}
    return dict(zip(names, sess.run([by_name[n] for n in names])))


def test_vgg16_shapes_match_the_full_segnet_encoder():
    with tf.Graph().as_default():
        _build(width=1.0)
        shapes = {v.op.name: tuple(v.shape.as_list()) for v in tf.trainable_variables()}
    for layer, shape in weights.VGG16_SHAPES.items():
        assert shapes[f"segnet/{layer}/weights"] == shape
        assert shapes[f"segnet/{layer}/biases"] == shape[-1:]
    # The VGG16 convolutions alone are the paper's 14.7M parameters.
    assert sum(np.prod(s) + s[-1] for s in weights.VGG16_SHAPES.values()) == 14_714_688


@pytest.mark.parametrize("modern", [False, True])
def test_load_keras_h5_into_encoder(tmp_path, rng, modern):
    arrays = _tiny_arrays(rng)
    path = tmp_path / weights.KERAS_FILENAME
    write_keras_h5(path, arrays, modern=modern)
    with tf.Graph().as_default():
        _build()
        gamma = tf.global_variables("segnet/conv1_1/BatchNorm/gamma")[0]
        decoder = tf.global_variables("segnet/conv1_2_D/weights")[0]
        init_fn = weights.load_vgg16(path)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            decoder_before = sess.run(decoder)
            init_fn(sess)
            values = _encoder_values(sess)
            gamma_value, decoder_after = sess.run([gamma, decoder])
    assert init_fn.layers == list(weights.VGG16_LAYERS)
    for layer, (kernel, bias) in arrays.items():
        if layer == "conv1_1":  # BGR file -> RGB model: input channels reversed
            kernel = kernel[:, :, ::-1, :]
        np.testing.assert_array_equal(values[f"segnet/{layer}/weights"], kernel)
        np.testing.assert_array_equal(values[f"segnet/{layer}/biases"], bias)
    np.testing.assert_array_equal(gamma_value, 1.0)  # batch norm stays at init
    np.testing.assert_array_equal(decoder_after, decoder_before)


def test_bgr_kernel_on_bgr_image_equals_loaded_kernel_on_rgb_image(tmp_path, rng):
    arrays = _tiny_arrays(rng)
    path = tmp_path / "w.h5"
    write_keras_h5(path, arrays)
    rgb = rng.normal(size=(1, 32, 32, 3)).astype(np.float32)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [1, 32, 32, 3])
        model.segnet(images, 3, False, config=model.SegNetConfig(
            width_multiplier=WIDTH))
        init_fn = weights.load_vgg16(path)
        pre = tf.nn.conv2d(images, tf.global_variables("segnet/conv1_1/weights")[0],
                           [1, 1, 1, 1], "SAME")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            init_fn(sess)
            ours = sess.run(pre, {images: rgb})
            caffe = sess.run(tf.nn.conv2d(rgb[..., ::-1].copy(), arrays["conv1_1"][0],
                                          [1, 1, 1, 1], "SAME"))
    np.testing.assert_allclose(ours, caffe, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("naming", ["keras", "frossard"])
def test_load_npz(tmp_path, rng, naming):
    arrays = _tiny_arrays(rng)
    if naming == "keras":
        flat = {f"{weights.VGG16_LAYERS[k]}/{p}": a for k, (w, b) in arrays.items()
                for p, a in (("kernel", w), ("bias", b))}
    else:
        flat = {f"{k}_{p}": a for k, (w, b) in arrays.items() for p, a in (("W", w), ("b", b))}
    path = tmp_path / "vgg16.npz"
    np.savez(path, **flat)
    with tf.Graph().as_default():
        _build()
        init_fn = weights.load_vgg16(path, file_channel_order="RGB")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            init_fn(sess)
            values = _encoder_values(sess)
    for layer, (kernel, bias) in arrays.items():
        np.testing.assert_array_equal(values[f"segnet/{layer}/weights"], kernel)
        np.testing.assert_array_equal(values[f"segnet/{layer}/biases"], bias)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.h5"):
        weights.read_vgg16(tmp_path / "nothere.h5")


def test_wrong_and_truncated_files_raise_value_error_naming_the_file(tmp_path, rng):
    text = tmp_path / "notes.h5"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="notes.h5.*neither an HDF5"):
        weights.read_vgg16(text)
    good = tmp_path / "good.h5"
    write_keras_h5(good, _tiny_arrays(rng))
    data = good.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.h5"):
        weights.read_vgg16(cut)
    npz = tmp_path / "w.npz"
    np.savez(npz, **{f"{k}_W": w for k, (w, _) in _tiny_arrays(rng).items()},
             **{f"{k}_b": b for k, (_, b) in _tiny_arrays(rng).items()})
    data = npz.read_bytes()
    cut_npz = tmp_path / "cut.npz"
    cut_npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        weights.read_vgg16(cut_npz)


def test_missing_layer_and_bad_shapes_are_named(tmp_path, rng):
    arrays = _tiny_arrays(rng)
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_group("conv2d_1")
    with pytest.raises(ValueError, match="no layer 'block1_conv1'"):
        weights.read_vgg16(path)
    bad = dict(arrays)
    bad["conv3_2"] = (arrays["conv3_2"][0], arrays["conv3_2"][1][:-1])
    path = tmp_path / "badbias.h5"
    write_keras_h5(path, bad)
    with pytest.raises(ValueError, match="conv3_2 bias"):
        weights.read_vgg16(path)
    nan = dict(arrays)
    nan["conv5_3"] = (np.full_like(arrays["conv5_3"][0], np.nan), arrays["conv5_3"][1])
    path = tmp_path / "nan.npz"
    np.savez(path, **{f"{k}_W": w for k, (w, _) in nan.items()},
             **{f"{k}_b": b for k, (_, b) in nan.items()})
    with pytest.raises(ValueError, match="conv5_3 has non-finite"):
        weights.read_vgg16(path)


def test_shape_mismatch_with_the_graph_and_wrong_variant(tmp_path, rng):
    path = tmp_path / "w.h5"
    write_keras_h5(path, _tiny_arrays(rng, width=0.25))
    with tf.Graph().as_default():
        _build(width=WIDTH)
        with pytest.raises(ValueError, match=r"conv1_1 weights has shape \(3, 3, 3, 16\)"):
            weights.load_vgg16(path)
    with tf.Graph().as_default():
        _build(variant="segnet_basic")
        with pytest.raises(ValueError, match="no variable 'segnet/conv1_1/weights'"):
            weights.load_vgg16(path)
    with pytest.raises(ValueError, match="file_channel_order"):
        weights.load_vgg16(path, file_channel_order="bgr")
