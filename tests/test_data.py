"""Tests of segnet_lib.data: the tf.data pipeline and class statistics."""
import dataclasses

import numpy as np
import pytest

from segnet_lib import data, voc
from segnet_lib._tf import tf


class ListDataset:
    """An in-memory dataset of (image, mask) pairs with the VOC interface."""

    def __init__(self, pairs):
        self.pairs = pairs

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        return self.pairs[i]


def coloured_pairs(rng, sizes, classes=(0, 3, 8, 15)):
    """Pairs whose image is the palette colour of the label: alignment is checkable."""
    pairs = []
    for h, w in sizes:
        # Blocks of 4x4 pixels, so a bilinear resize keeps block interiors exact.
        small = rng.choice(np.array(classes, np.uint8), (-(-h // 4), -(-w // 4)))
        label = np.kron(small, np.ones((4, 4), np.uint8))[:h, :w]
        pairs.append((voc.colorize(label), label))
    return pairs


def run(ds, n_batches=None, initializable=False):
    """Evaluates batches of a dataset in a fresh session; all of them if n_batches is None."""
    it = (tf.data.make_initializable_iterator(ds) if initializable
          else tf.data.make_one_shot_iterator(ds))
    nxt = it.get_next()
    out = []
    with tf.Session() as sess:
        if initializable:
            sess.run(it.initializer)
        while n_batches is None or len(out) < n_batches:
            try:
                out.append(sess.run(nxt))
            except tf.errors.OutOfRangeError:
                break
    return out


def in_graph(fn):
    with tf.Graph().as_default():
        return fn()


def test_training_batches_shapes_and_alignment(rng):
    pairs = coloured_pairs(rng, [(20, 28), (32, 24), (16, 16), (40, 40), (24, 36)])
    config = data.InputConfig(crop_size=(24, 24), batch_size=3, min_scale=1.0, max_scale=1.0,
                              seed=1)
    ds = in_graph(lambda: data.make_dataset(ListDataset(pairs), config, training=True))
    assert ds.element_spec[0].shape.as_list() == [3, 24, 24, 3]
    batches = in_graph(lambda: run(data.make_dataset(ListDataset(pairs), config), 6))
    for images, labels in batches:
        assert images.dtype == np.float32 and images.shape == (3, 24, 24, 3)
        assert labels.dtype == np.int32 and labels.shape == (3, 24, 24)
        void = labels == 255
        # Crops and flips move image and label together: colour says the class.
        assert np.array_equal(data.denormalize(images)[~void],
                              voc.colorize(labels)[~void])
        # Padding (images smaller than the crop) is void in the label and
        # the mean pixel (zero) in the image.
        assert np.all(images[void] == 0)
    # 16x16 and 20x28 images need padding: some void must appear.
    assert any((labels == 255).any() for _, labels in batches)


def test_scale_jitter_keeps_labels_nearest_and_aligned(rng):
    pairs = coloured_pairs(rng, [(48, 48)] * 4)
    config = data.InputConfig(crop_size=(32, 32), batch_size=4, min_scale=0.5, max_scale=2.0,
                              flip=False)
    (images, labels), = in_graph(lambda: run(data.make_dataset(ListDataset(pairs), config), 1))
    assert set(np.unique(labels)) <= {0, 3, 8, 15, 255}  # nearest: no mixed ids
    # Bilinear image vs nearest label agree away from block edges.
    agree = np.mean([
        np.array_equal(data.denormalize(images[b, y, x])[None, None],
                       voc.colorize(np.array([[labels[b, y, x]]])))
        for b in range(4) for y in range(0, 32, 3) for x in range(0, 32, 3)
        if labels[b, y, x] != 255])
    assert agree > 0.5


def test_flip_mirrors_some_and_not_others(rng):
    image = np.zeros((8, 8, 3), np.uint8)
    label = np.zeros((8, 8), np.uint8)
    label[:, :3] = 7  # class on the left
    image[label == 7] = voc.VOC_COLORMAP[7]
    config = data.InputConfig(crop_size=(8, 8), batch_size=1, min_scale=1.0, max_scale=1.0,
                              flip=True, seed=3)
    batches = in_graph(lambda: run(data.make_dataset(ListDataset([(image, label)]), config), 40))
    left = sum(bool((b[1][0, :, :3] == 7).all()) for b in batches)
    right = sum(bool((b[1][0, :, -3:] == 7).all()) for b in batches)
    assert left + right == 40 and 5 < left < 35


def test_eval_whole_images_in_order_exactly_once(rng):
    pairs = coloured_pairs(rng, [(12, 20), (9, 7), (16, 16)])
    config = data.InputConfig(crop_size=None, batch_size=1)
    batches = in_graph(lambda: run(
        data.make_dataset(ListDataset(pairs), config, training=False), initializable=True))
    assert len(batches) == 3
    for (images, labels), (image, label) in zip(batches, pairs):
        assert images.shape == (1, *image.shape)
        assert np.array_equal(data.denormalize(images[0]), image)  # no resampling at all
        assert np.array_equal(labels[0], label)


def test_eval_with_crop_pads_and_centre_crops(rng):
    pairs = coloured_pairs(rng, [(12, 20), (30, 8)])
    config = data.InputConfig(crop_size=(16, 16), batch_size=2)
    (images, labels), = in_graph(lambda: run(
        data.make_dataset(ListDataset(pairs), config, training=False)))
    assert images.shape == (2, 16, 16, 3)
    # 12x20 -> padded bottom to 16 rows, centre 16 of 20 columns.
    assert np.array_equal(labels[0, :12], pairs[0][1][:, 2:18])
    assert (labels[0, 12:] == 255).all()
    assert np.array_equal(labels[1, :, :8], pairs[1][1][7:23])


def test_resize_to_fixes_size(rng):
    pairs = coloured_pairs(rng, [(12, 20), (30, 8)])
    config = data.InputConfig(crop_size=None, resize_to=(16, 24), batch_size=2)
    ds = in_graph(lambda: data.make_dataset(ListDataset(pairs), config, training=False))
    assert ds.element_spec[1].shape.as_list()[1:] == [16, 24]
    (images, labels), = in_graph(lambda: run(
        data.make_dataset(ListDataset(pairs), config, training=False)))
    assert images.shape == (2, 16, 24, 3) and set(np.unique(labels)) <= {0, 3, 8, 15}


def test_same_seed_same_batches_whatever_the_parallelism(rng):
    pairs = coloured_pairs(rng, [(20 + 4 * k, 36 - 4 * k) for k in range(6)])
    base = data.InputConfig(crop_size=(16, 16), batch_size=2, seed=5, num_parallel_calls=1)

    def take(config):
        return in_graph(lambda: run(data.make_dataset(ListDataset(pairs), config), 6))

    a = take(base)
    b = take(dataclasses.replace(base, num_parallel_calls=4))
    c = take(dataclasses.replace(base, seed=6))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert not all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_cache_gives_the_same_stream(rng):
    pairs = coloured_pairs(rng, [(20, 20)] * 5)
    config = data.InputConfig(crop_size=(16, 16), batch_size=2, seed=2)
    a = in_graph(lambda: run(data.make_dataset(ListDataset(pairs), config), 5))
    b = in_graph(lambda: run(data.make_dataset(
        ListDataset(pairs), dataclasses.replace(config, cache=True)), 5))
    for (xa, ya), (xb, yb) in zip(a, b):
        assert np.array_equal(ya, yb) and np.array_equal(xa, xb)


@pytest.mark.parametrize("cache", [False, True])
def test_start_batch_continues_the_stream_exactly(rng, cache):
    # A resumed training run must see the batches an uninterrupted one would.
    pairs = coloured_pairs(rng, [(20 + 4 * k, 24) for k in range(5)])
    config = data.InputConfig(crop_size=(16, 16), batch_size=2, seed=3, cache=cache)
    whole = in_graph(lambda: run(data.make_dataset(ListDataset(pairs), config), 9))
    resumed = in_graph(lambda: run(data.make_dataset(ListDataset(pairs), config,
                                                     start_batch=6), 3))
    for (xa, ya), (xb, yb) in zip(whole[6:], resumed, strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)


def test_start_batch_does_not_read_the_skipped_images(rng):
    class Counting(ListDataset):
        reads = 0

        def __getitem__(self, i):
            Counting.reads += 1
            return super().__getitem__(i)

    pairs = coloured_pairs(rng, [(20, 20)] * 4)
    config = data.InputConfig(crop_size=(16, 16), batch_size=2, num_parallel_calls=1)
    in_graph(lambda: run(data.make_dataset(Counting(pairs), config, start_batch=500), 1))
    # 2 images for the batch, plus what the prefetch reads ahead; skipping
    # after reading would have read 1,000 first.
    assert 2 <= Counting.reads <= 2 + 2 * (config.prefetch + 2)


def test_start_batch_errors():
    with pytest.raises(ValueError, match="start_batch=-1"):
        data.make_dataset(ListDataset([None]), start_batch=-1)
    with pytest.raises(ValueError, match="start_batch=3"):
        data.make_dataset(ListDataset([None]), training=False, start_batch=3)


def test_read_errors_surface_with_the_file_name(tmp_path):
    from segnet_lib.voc import read_image

    class Broken(ListDataset):
        def __getitem__(self, i):
            return read_image(tmp_path / f"missing_{i}.jpg"), None

    with pytest.raises(tf.errors.OpError, match="missing_0.jpg"):
        in_graph(lambda: run(data.make_dataset(Broken([None]), training=False)))


def test_pipeline_argument_errors():
    with pytest.raises(ValueError, match="empty"):
        data.make_dataset(ListDataset([]))
    with pytest.raises(ValueError, match="batch_size=1"):
        data.make_dataset(ListDataset([None]), data.InputConfig(crop_size=None, batch_size=2))
    with pytest.raises(ValueError, match="min_scale"):
        data.InputConfig(min_scale=2.0, max_scale=1.0)
    with pytest.raises(ValueError, match="crop_size"):
        data.InputConfig(crop_size=(0, 4))


def test_normalize_denormalize_round_trip(rng):
    image = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    with tf.Graph().as_default(), tf.Session() as sess:
        normalised = sess.run(data.normalize(tf.constant(image)))
    assert np.allclose(normalised[..., 0], image[..., 0] - 123.68)  # RGB order
    assert np.allclose(normalised[..., 2], image[..., 2] - 103.939)
    assert np.array_equal(data.denormalize(normalised), image)


def test_class_statistics_by_hand():
    masks = [np.array([[0, 0, 1], [1, 255, 255]], np.uint8),
             np.array([[0, 2, 2], [2, 2, 2]], np.uint8)]
    ds = ListDataset([(None, m) for m in masks])
    counts, image_pixels = data.class_statistics(ds, num_classes=4)
    assert counts.tolist() == [3, 2, 5, 0]
    # class 0 is in both images (4 + 6 non-void pixels), 1 in the first, 2 in the second.
    assert image_pixels.tolist() == [10, 4, 6, 0]


def test_class_statistics_reads_only_masks_and_checks_values():
    class MasksOnly(ListDataset):
        def __getitem__(self, i):
            raise AssertionError("images should not be decoded")

        def read_mask(self, i):
            return self.pairs[i]

    counts, _ = data.class_statistics(MasksOnly([np.ones((2, 2), np.uint8)]), 2)
    assert counts.tolist() == [0, 4]
    with pytest.raises(ValueError, match=r"mask 1.*\[5\]"):
        data.class_statistics(MasksOnly([np.ones((2, 2), np.uint8),
                                         np.full((2, 2), 5, np.uint8)]), 3)


def test_median_frequency_weights():
    # freq = [0.5, 0.25, 0.1, -], median 0.25 -> weights [0.5, 1, 2.5, 0].
    weights = data.median_frequency_weights([50, 25, 10, 0], [100, 100, 100, 0])
    assert weights.dtype == np.float32
    assert np.allclose(weights, [0.5, 1.0, 2.5, 0.0])
    with pytest.raises(ValueError, match="same length"):
        data.median_frequency_weights([1, 2], [3])
    with pytest.raises(ValueError, match="no class"):
        data.median_frequency_weights([0, 0], [0, 0])
    with pytest.raises(ValueError, match="pixel_counts <= image_pixels"):
        data.median_frequency_weights([5], [4])


def test_scaled_crop_equals_resize_pad_crop(rng):
    """The one-step scaled crop gives what resize + pad + slice would give."""
    image = rng.integers(0, 256, (23, 31, 3)).astype(np.uint8)
    label = rng.choice(np.array([0, 5, 9], np.uint8), (23, 31))
    config = data.InputConfig(crop_size=(20, 26), min_scale=0.6, max_scale=1.9, flip=False,
                              seed=4)
    with tf.Graph().as_default(), tf.Session() as sess:
        element = tf.placeholder(tf.int64, [])
        got = data.augment(config, element, tf.constant(image), tf.constant(label))
        img = data.normalize(tf.constant(image))
        # The reference: resize everything (half-pixel centres), pad, slice.
        scale = tf.random.stateless_uniform([], data.element_seed(config, element, 1),
                                            config.min_scale, config.max_scale)
        scaled = tf.maximum(tf.cast(tf.round(tf.constant([23.0, 31.0]) * scale), tf.int32), 1)
        ref_img, ref_lab = data.resize_pair(img, tf.constant(label), scaled)
        ref_img, ref_lab = data.pad_pair(ref_img, ref_lab, config.crop_size)
        offset = data.random_offset(config, element, tf.maximum(
            scaled - tf.constant(config.crop_size), 0) + 1)
        want = (ref_img[offset[0]:offset[0] + 20, offset[1]:offset[1] + 26],
                ref_lab[offset[0]:offset[0] + 20, offset[1]:offset[1] + 26])
        for e in range(12):
            (gi, gl), (wi, wl) = sess.run([got, want], {element: e})
            assert gl.shape == (20, 26) and gi.shape == (20, 26, 3)
            # Nearest picks may differ only at exact ties of float rounding.
            assert np.mean(gl == wl) > 0.99, e
            assert np.abs(gi - wi).max() < 0.01, e
