"""The ``tf.data`` input pipeline and the class statistics for loss balancing.

The pipeline turns a dataset (anything with ``len(ds)`` and ``ds[i] -> (image,
mask)``: :class:`~segnet_lib.datasets.VOCSegmentation`,
:class:`~segnet_lib.datasets.CSVSegmentation`, or your own) into batches for the TF1
graph::

    indices -> shuffle (seeded) -> repeat -> read + decode in parallel (Pillow)
            -> [training] scale jitter + pad + random crop, flip  (stateless, seeded)
            -> [eval] whole image, or pad + centre crop
            -> VGG normalisation -> batch -> prefetch

(with ``cache=True`` the decoded pairs are cached and shuffled instead of the
indices). Scale jitter and cropping are done in one resampling step that
computes only the crop's pixels, so their cost does not depend on the image
size or the scale.

Images and masks are read with Pillow inside ``tf.numpy_function``: a VOC mask
is a palette PNG whose pixel *indices* are the classes, and
``tf.io.decode_png`` would expand the palette to RGB. Pillow releases the GIL
while decoding, so parallel reads do run in parallel.

Conventions:

* images float32 ``[batch, height, width, 3]``, **RGB**, VGG-normalised: the
  ImageNet mean pixel (R, G, B) = (123.68, 116.779, 103.939) is subtracted from
  values in 0..255; no scaling, no division by a standard deviation (the Caffe
  VGG16 convention, in RGB channel order; a loader of Caffe weights, which
  expect BGR, reverses the first kernel's input channels instead).
  Padding is filled with the mean pixel, i.e. zeros after normalisation.
* labels int32 ``[batch, height, width]``: class ids, 255 = void (ignored by
  the loss and the metrics); padding is void.
* Random choices are stateless and keyed by ``(seed, element number)``, so the
  same seed gives the same batches whatever ``num_parallel_calls`` is.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np
from tqdm.auto import tqdm

from segnet_lib._tf import tf
from segnet_lib.voc import IGNORE_LABEL

#: ImageNet mean pixel in RGB order (Simonyan and Zisserman's VGG preprocessing).
VGG_MEAN_RGB = (123.68, 116.779, 103.939)


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """How :func:`make_dataset` reads, augments and batches.

    Change fields with ``dataclasses.replace(config, batch_size=8)``.

    Attributes:
        crop_size: ``(height, width)`` of training crops; images smaller than
            this are padded (labels with 255). ``None`` keeps whole images
            (then ``batch_size`` must be 1, as sizes differ).
        batch_size: images per batch (training; evaluation of whole images
            always uses 1).
        min_scale, max_scale: range of the random rescaling (training only);
            1.0 and 1.0 turn it off.
        flip: random horizontal flips (training only).
        seed: seed of the shuffle and of every random augmentation.
        num_parallel_calls: images read and augmented at once.
        shuffle_buffer: size of the shuffle buffer (at least the dataset size
            gives a full shuffle; indices are tiny, so this is cheap).
        cache: keep decoded images in memory after the first epoch (the sample
            data is ~10 MB; VOC's train split would be ~1 GB).
        prefetch: batches prepared ahead of the training step.
        resize_to: ``(height, width)``: resize every image to this size first
            (images bilinear, labels nearest), as SegNet did on CamVid;
            ``None`` keeps the native size.
    """

    crop_size: Optional[Tuple[int, int]] = (128, 128)
    batch_size: int = 4
    min_scale: float = 0.75
    max_scale: float = 1.25
    flip: bool = True
    seed: int = 0
    num_parallel_calls: int = 2
    shuffle_buffer: int = 10000
    cache: bool = False
    prefetch: int = 2
    resize_to: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        for name in ("crop_size", "resize_to"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or min(size) < 1):
                raise ValueError(f"{name} must be (height, width) with positive sizes, got {size}")
        if (not isinstance(self.batch_size, (int, np.integer)) or isinstance(self.batch_size, bool)
                or self.batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError(
                f"need 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        if self.num_parallel_calls < 1 or self.prefetch < 0 or self.shuffle_buffer < 1:
            raise ValueError("num_parallel_calls and shuffle_buffer must be >= 1, prefetch >= 0")


def normalize(images):
    """VGG normalisation: float32 RGB minus the ImageNet mean pixel.

    Args:
        images: uint8 or float ``[..., 3]`` tensor in 0..255.

    Returns:
        float32 tensor of the same shape.
    """
    return tf.cast(images, tf.float32) - tf.constant(VGG_MEAN_RGB, tf.float32)


def denormalize(images) -> np.ndarray:
    """Undoes :func:`normalize` for display.

    Args:
        images: float ``[..., 3]`` NumPy array from the pipeline.

    Returns:
        uint8 array of the same shape.
    """
    images = np.asarray(images, np.float32) + np.asarray(VGG_MEAN_RGB, np.float32)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def _reader(dataset):
    def read(index):
        image, mask = dataset[int(index)]
        return np.ascontiguousarray(image, np.uint8), np.ascontiguousarray(mask, np.uint8)
    return read


def _load(dataset):
    read = _reader(dataset)

    def load(index):
        image, mask = tf.numpy_function(read, [index], [tf.uint8, tf.uint8], name="read_pair")
        image.set_shape([None, None, 3])
        mask.set_shape([None, None])
        return image, mask
    return load


def resize_pair(image, label, size):
    """Resizes an image and its label map to ``size``: the image bilinear, the label nearest.

    An interpolated class id is meaningless, so labels take the nearest pixel;
    both use half-pixel centres, so they stay aligned.

    Args:
        image: float ``[H, W, 3]``.
        label: integer ``[H, W]``.
        size: int ``[2]``, the new ``(height, width)``.
    """
    image = tf.image.resize_bilinear(image[None], size, half_pixel_centers=True)[0]
    label = tf.image.resize_nearest_neighbor(label[None, :, :, None], size,
                                             half_pixel_centers=True)[0, :, :, 0]
    return image, label


def pad_pair(image, label, size):
    """Pads bottom/right to at least ``size``: image with 0 (the mean), label with void.

    Args:
        image: float ``[H, W, 3]``, normalised.
        label: integer ``[H, W]``.
        size: ``(height, width)``.
    """
    shape = tf.shape(label)
    pad_h = tf.maximum(size[0] - shape[0], 0)
    pad_w = tf.maximum(size[1] - shape[1], 0)
    image = tf.pad(image, [[0, pad_h], [0, pad_w], [0, 0]])
    label = tf.pad(label, [[0, pad_h], [0, pad_w]], constant_values=IGNORE_LABEL)
    return image, label


def element_seed(config: InputConfig, element, stream: int):
    """The ``[2]`` seed of one random choice for one element.

    Stateless ops take a ``[2]`` seed: ``(config.seed, stream)`` packed into the
    first entry (one stream per kind of choice: 1 scale, 2 offset, 3 flip) and
    the element number in the second, so a choice depends on nothing else.
    """
    return tf.stack([tf.constant(config.seed * 8 + stream, tf.int64), element])


def random_offset(config: InputConfig, element, limit):
    """A stateless random (row, column) offset in ``[0, limit)``."""
    draw = tf.random.stateless_uniform([2], element_seed(config, element, 2), 0, 2 ** 30,
                                       dtype=tf.int32)
    return draw % limit


def _scaled_crop(config: InputConfig, element, image, label, scale):
    """Rescale by ``scale``, pad bottom/right and crop at a random place, in one step.

    Gives what resizing the whole image (half-pixel centres: bilinear image,
    nearest label), padding it and slicing a crop would give, but samples only
    the crop's pixels with ``tf.image.crop_and_resize``, so the cost does not
    grow with the image or the scale (a VOC image scaled by 2 is 1000x750).
    Takes the raw image (0..255) and returns it normalised: normalising the
    crop, not the whole image, is the cheaper order.
    """
    crop = tf.constant(config.crop_size)
    size = tf.cast(tf.shape(label), tf.float32)
    scaled = tf.maximum(tf.cast(tf.round(size * scale), tf.int32), 1)
    offset = random_offset(config, element, tf.maximum(scaled - crop, 0) + 1)
    factor = tf.cast(scaled, tf.float32) / size  # per axis, after rounding
    # Crop pixel i is pixel (offset + i) of the scaled image, whose centre lies
    # at (offset + i + 0.5) / factor - 0.5 in the source; +1 for the edge row
    # added below (so sampling just inside the border clamps, like a resize).
    first = (tf.cast(offset, tf.float32) + 0.5) / factor + 0.5
    last = (tf.cast(offset + crop, tf.float32) - 0.5) / factor + 0.5
    extent = size + 1.0  # the padded image's size - 1: crop_and_resize's unit box
    box = tf.concat([first, last], 0) / tf.concat([extent, extent], 0)
    edge = [[1, 1], [1, 1], [0, 0]]
    image = tf.image.crop_and_resize(
        tf.pad(image, edge, mode="SYMMETRIC")[None], box[None], [0], config.crop_size)[0]
    label = tf.image.crop_and_resize(
        tf.pad(tf.cast(label, tf.float32)[..., None], edge, mode="SYMMETRIC")[None],
        box[None], [0], config.crop_size, method="nearest")[0, :, :, 0]
    # Rows and columns past the scaled image are padding: mean pixel, void.
    inside = tf.cast(
        (tf.range(config.crop_size[0]) < scaled[0] - offset[0])[:, None]
        & (tf.range(config.crop_size[1]) < scaled[1] - offset[1])[None, :], tf.float32)
    image = normalize(image) * inside[..., None]
    label = label * inside + IGNORE_LABEL * (1 - inside)
    return image, tf.cast(label, tf.uint8)


def augment(config: InputConfig, element, image, label):
    """Scale jitter, pad, random crop and flip of one raw image; returns it normalised.

    Args:
        config: the :class:`InputConfig`.
        element: int64 scalar, the element's number in the stream (its seed).
        image: uint8 ``[H, W, 3]``.
        label: uint8 ``[H, W]``.

    Returns:
        ``(image float32 [h, w, 3] normalised, label [h, w])``, ``(h, w)`` the
        crop size (or the rescaled size for whole images).
    """
    jitter = config.min_scale != 1.0 or config.max_scale != 1.0
    if jitter:
        scale = tf.random.stateless_uniform(
            [], element_seed(config, element, 1), config.min_scale, config.max_scale)
    if jitter and config.crop_size is not None:
        return _flip(config, element, *_scaled_crop(config, element, image, label, scale))
    image = normalize(image)  # before padding, so the padding is the mean pixel
    if jitter:  # whole images (batch 1): nothing to crop, resize it all
        size = tf.cast(tf.round(tf.cast(tf.shape(label), tf.float32) * scale), tf.int32)
        image, label = resize_pair(image, label, tf.maximum(size, 1))
    elif config.crop_size is not None:
        image, label = pad_pair(image, label, config.crop_size)
        offset = random_offset(config, element,
                                tf.shape(label) - tf.constant(config.crop_size) + 1)
        image = image[offset[0]:offset[0] + config.crop_size[0],
                      offset[1]:offset[1] + config.crop_size[1]]
        label = label[offset[0]:offset[0] + config.crop_size[0],
                      offset[1]:offset[1] + config.crop_size[1]]
    return _flip(config, element, image, label)


def _flip(config: InputConfig, element, image, label):
    """A random horizontal flip (when ``config.flip``) of image and label together."""
    if not config.flip:
        return image, label
    coin = tf.random.stateless_uniform([], element_seed(config, element, 3))
    return tf.cond(coin < 0.5,
                   lambda: (tf.reverse(image, [1]), tf.reverse(label, [1])),
                   lambda: (image, label))


def _centre_crop(config: InputConfig, image, label):
    image, label = pad_pair(image, label, config.crop_size)
    shape = tf.shape(label)
    top = (shape[0] - config.crop_size[0]) // 2
    left = (shape[1] - config.crop_size[1]) // 2
    image = image[top:top + config.crop_size[0], left:left + config.crop_size[1]]
    label = label[top:top + config.crop_size[0], left:left + config.crop_size[1]]
    return image, label


def make_dataset(dataset, config: InputConfig = InputConfig(), training: bool = True,
                 num_epochs: Optional[int] = None, start_batch: int = 0):
    """Builds the input pipeline.

    Use it from graph code with ``tf.data.make_one_shot_iterator(ds)`` or
    ``tf.data.make_initializable_iterator(ds)`` and ``iterator.get_next()``.

    Args:
        dataset: a sequence of ``(image uint8 [H, W, 3], mask uint8 [H, W])``,
            e.g. :class:`segnet_lib.datasets.VOCSegmentation`.
        config: an :class:`InputConfig`.
        training: shuffle, repeat and augment (scale, crop, flip). Otherwise
            images come in order, unaugmented, one pass: whole images in
            batches of 1 when ``config.crop_size`` is ``None``, else padded and
            centre-cropped to ``crop_size`` in batches of ``batch_size``.
        num_epochs: passes over the data; default ``None``: forever when
            training, once otherwise.
        start_batch: training only: begin with batch number ``start_batch``
            of the stream, exactly the batch an uninterrupted pipeline would
            give there (a resumed run). The skipped images are not read or
            augmented (except to fill ``config.cache`` once), so resuming at
            step 20,000 costs no decoding of 20,000 batches.

    Returns:
        A ``tf.data.Dataset`` of ``(images, labels)``: float32
        ``[batch, height, width, 3]`` (VGG-normalised RGB) and int32
        ``[batch, height, width]`` (255 = void). Height and width are static
        when a crop size (or ``resize_to``) fixes them.

    Raises:
        ValueError: an empty dataset, whole images asked for in batches
            larger than 1, or a negative ``start_batch`` (or one without
            ``training``).
    """
    n = len(dataset)
    if n == 0:
        raise ValueError("the dataset is empty")
    if start_batch < 0 or (start_batch and not training):
        raise ValueError(f"start_batch={start_batch}: must be >= 0, and 0 unless training")
    whole = config.crop_size is None
    if whole and config.resize_to is None and training and config.batch_size != 1:
        raise ValueError(
            "crop_size=None keeps whole images of different sizes; set batch_size=1 "
            "(or give crop_size / resize_to)")
    if num_epochs is None:
        num_epochs = None if training else 1
    load = _load(dataset)
    ds = tf.data.Dataset.range(n)
    if config.cache:
        # Decode once, then shuffle the decoded pairs: each epoch gets a new
        # (seeded) order without reading the files again.
        ds = ds.map(load, num_parallel_calls=config.num_parallel_calls).cache()
    if training:
        ds = ds.shuffle(min(config.shuffle_buffer, n), seed=config.seed,
                        reshuffle_each_iteration=True)
    ds = ds.repeat(num_epochs) if num_epochs != 1 else ds
    # Number each element, so its random augmentation depends only on
    # (seed, position in the stream), not on thread timing.
    ds = tf.data.Dataset.zip((tf.data.Dataset.range(2 ** 62), ds))
    if start_batch:
        # Training batches never drop an element but the last partial one, so
        # batch k is elements k*b .. k*b+b-1. Skipping indices (before reading)
        # is cheap; skipping batches would read and augment every image.
        ds = ds.skip(start_batch * config.batch_size)
    if not config.cache:
        # Shuffling the indices (not the images) keeps the shuffle buffer tiny.
        ds = ds.map(lambda element, index: (element, load(index)),
                    num_parallel_calls=config.num_parallel_calls)

    def prepare(element, image, label):
        if config.resize_to is not None:
            image, label = resize_pair(image, label, config.resize_to)
        if training:
            image, label = augment(config, element, image, label)
        else:
            image = normalize(image)
            if not whole:
                image, label = _centre_crop(config, image, label)
        if not whole:
            image.set_shape([*config.crop_size, 3])
            label.set_shape(config.crop_size)
        elif config.resize_to is not None and not training:
            image.set_shape([*config.resize_to, 3])
            label.set_shape(config.resize_to)
        return image, tf.cast(label, tf.int32)

    ds = ds.map(lambda e, pair: prepare(e, *pair), num_parallel_calls=config.num_parallel_calls)
    batch = config.batch_size if (training or not whole or config.resize_to) else 1
    ds = ds.batch(batch, drop_remainder=training)
    return ds.prefetch(config.prefetch) if config.prefetch else ds


def _iter_masks(dataset, progress: bool):
    read = getattr(dataset, "read_mask", None)
    for i in tqdm(range(len(dataset)), desc="class statistics", disable=not progress):
        yield read(i) if read is not None else dataset[i][1]


def class_statistics(dataset, num_classes: int, progress: bool = False):
    """Pixel counts per class over a dataset (void excluded).

    Args:
        dataset: a sequence of ``(image, mask)`` (only masks are read when it
            has ``read_mask(i)``, as the VOC and CSV datasets do).
        num_classes: number of classes.
        progress: show a tqdm progress bar.

    Returns:
        ``(pixel_counts, image_pixels)``, int64 ``[num_classes]`` each:
        pixels of class ``c``, and non-void pixels of the images in which
        ``c`` appears (the denominator of the paper's class frequency).

    Raises:
        ValueError: a mask holds a value outside ``0..num_classes-1`` and 255.
    """
    pixel_counts = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for i, mask in enumerate(_iter_masks(dataset, progress)):
        values = np.asarray(mask).ravel()
        values = values[values != IGNORE_LABEL]
        counts = np.bincount(values, minlength=num_classes)
        if len(counts) > num_classes:
            bad = np.flatnonzero(counts[num_classes:]) + num_classes
            raise ValueError(
                f"mask {i} of the dataset has values {bad.tolist()} outside "
                f"0..{num_classes - 1} and {IGNORE_LABEL}")
        pixel_counts += counts
        image_pixels[counts > 0] += values.size
    return pixel_counts, image_pixels


def median_frequency_weights(pixel_counts, image_pixels) -> np.ndarray:
    """Median-frequency class balancing (Eigen and Fergus 2015, used by SegNet).

    ``freq(c) = pixel_counts[c] / image_pixels[c]`` and
    ``weight(c) = median(freq) / freq(c)``, the median taken over the classes
    that occur. A class that never occurs gets weight 0: it has no pixels to
    weigh, and an infinite weight would poison the loss if one appeared.

    Args:
        pixel_counts: ``[num_classes]`` pixels of each class.
        image_pixels: ``[num_classes]`` pixels of the images containing each class.

    Returns:
        float32 ``[num_classes]``: rare classes get weights above 1, frequent ones below.

    Raises:
        ValueError: shapes differ, counts are negative, or no class occurs.
    """
    pixel_counts = np.asarray(pixel_counts, np.float64)
    image_pixels = np.asarray(image_pixels, np.float64)
    if pixel_counts.shape != image_pixels.shape or pixel_counts.ndim != 1:
        raise ValueError(
            f"pixel_counts and image_pixels must be 1-D of the same length, got "
            f"{pixel_counts.shape} and {image_pixels.shape}")
    if (pixel_counts < 0).any() or (pixel_counts > image_pixels).any():
        raise ValueError("need 0 <= pixel_counts <= image_pixels for every class")
    present = pixel_counts > 0
    if not present.any():
        raise ValueError("no class has any pixel")
    freq = np.zeros_like(pixel_counts)
    freq[present] = pixel_counts[present] / image_pixels[present]
    weights = np.zeros_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights.astype(np.float32)


__all__ = ["InputConfig", "make_dataset", "normalize", "denormalize", "class_statistics",
           "median_frequency_weights", "VGG_MEAN_RGB", "augment", "element_seed", "random_offset",
           "resize_pair", "pad_pair"]
