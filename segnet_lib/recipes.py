"""The training recipes the book and the command line start from.

A recipe is a function returning a :class:`~segnet_lib.config.TrainConfig`;
any field can then be changed with ``.replace(...)``. :data:`RECIPES` names
the ones ``python -m segnet_lib train --recipe`` offers, :data:`STUDY_RECIPES`
the sizes of the decoder study (``study --recipe``). The command line's help
shows each recipe's docstring summary and :func:`describe` of the config it
returns, so the help says what the code does.
"""
from __future__ import annotations

import os
from typing import Optional

from segnet_lib.config import TrainConfig
from segnet_lib.sample_data import SAMPLE_CLASS_IDS
from segnet_lib.voc import VOC_ROOT_ENV

__all__ = ["sample_recipe", "cells_recipe", "voc_gpu_recipe", "study_recipe", "RECIPES", "STUDY_RECIPES",
           "DEFAULT_RECIPES", "STUDY_DECODERS", "STUDY_SEEDS", "STUDY_VALIDATIONS", "describe", "summary"]

#: The decoders of the study (``SegNetConfig.decoder``), in the order of the
#: paper's discussion, U-Net's last: SegNet-Basic, FCN-Basic,
#: FCN-Basic-NoAddition, Bilinear-Interpolation, U-Net.
STUDY_DECODERS = ("unpool", "deconv_add", "deconv", "bilinear", "unet")
#: The seeds every decoder of the study is trained with (weights, data order, crops).
STUDY_SEEDS = (0, 1, 2)
#: Validations per study run, evenly spaced: the curve that shows the plateau.
STUDY_VALIDATIONS = 10


def sample_recipe(variant: str = "segnet") -> TrainConfig:
    """The book's CPU recipe: a narrow SegNet trained from scratch on the sample data.

    A quarter of the features (1.8M parameters) on 96x96 crops of the sample
    data (rescaled by 0.5-1 so that a crop often holds a whole object),
    batches of 16, Adam from 1e-3 with poly decay to 0, median-frequency class
    weights, no weight decay, 7,000 steps (56 epochs of the 2,000 training
    scenes; about 50 CPU-minutes, 40 minutes of a 2-core CPU), validation on all 100
    validation images every 500 steps. Deterministic. The reference runs
    ``sample-segnet`` and ``sample-bayesian`` are this recipe; notebook 04
    shows the search that led to it: the first recipe (batches of 4 at 2e-3)
    learned far more slowly.
    """
    return TrainConfig(
        data="sample", variant=variant, width_multiplier=0.25, crop_size=(96, 96),
        batch_size=16, min_scale=0.5, max_scale=1.0, optimizer="adam", learning_rate=1e-3,
        lr_schedule="poly", weight_decay=0.0, class_weighting="median_frequency",
        steps=7000, log_every=10, val_every=500, checkpoint_every=500, keep_last=2,
        summary_every=10, cache_images=True, seed=0, deterministic=True,
    )


def cells_recipe(variant: str = "unet") -> TrainConfig:
    """U-Net or SegNet on the generated cells, one budget for both (notebook 08).

    A quarter of the features (U-Net: base 16, depth 4, 1.94M parameters;
    SegNet: 1.85M, with 4 classes) on 128x128 crops of the 260x352 cells at
    their own scale (no rescaling: a further halving would leave ``cort``
    bodies 2-3 pixels in radius), flips, batches of 8, Adam from 1e-3 with
    poly decay to 0, median-frequency class weights (background is about nine
    tenths of the pixels), no weight decay, 3,000 steps (200 epochs of the
    120 training images). A fifth of the 150 images is held out (30, 10 of each
    cell type with seed 0), so each cell type's IoU rests on 10 images rather
    than 5; validation on all of them every 300 steps. Deterministic.

    Measured on a 2-core Xeon (the reference runs' manifests): 19.2 CPU-minutes
    for U-Net, 17.9 for SegNet, about 10 wall minutes each. The reference runs
    ``cells-unet`` and ``cells-segnet`` are this recipe.
    """
    return TrainConfig(
        data="cells", val_fraction=0.2, variant=variant, width_multiplier=0.25,
        crop_size=(128, 128), batch_size=8, min_scale=1.0, max_scale=1.0, flip=True,
        optimizer="adam", learning_rate=1e-3, lr_schedule="poly", weight_decay=0.0,
        class_weighting="median_frequency", steps=3000, log_every=10, val_every=300,
        checkpoint_every=500, keep_last=2, summary_every=10, cache_images=True, seed=0,
        deterministic=True,
    )


def voc_gpu_recipe(variant: str = "segnet", vgg16_weights: Optional[str] = None) -> TrainConfig:
    """A recipe for PASCAL VOC 2012 ($SEGNET_VOC_ROOT) on one GPU, the paper's where it says.

    Full-width SegNet, 320x320 crops (VOC images are about 500x375) with
    0.5-2.0 scale jitter and flips, batch 8, SGD with momentum 0.9 at a fixed
    1e-3, weight decay 5e-4, median-frequency class weights, 20000 steps (about
    110 epochs of the 1464 training images); validation on 300 images every
    1000 steps. The paper's parts: the VGG16-initialised encoder, SGD with
    momentum 0.9 at a fixed rate, median-frequency class weights. Ours (the paper
    gives none of them for VOC): the rate, weight decay, crops, jitter, batch
    size and step count.
    """
    return TrainConfig(
        data=os.environ.get(VOC_ROOT_ENV) or "sample", variant=variant, width_multiplier=1.0,
        vgg16_weights=vgg16_weights, crop_size=(320, 320), batch_size=8, min_scale=0.5,
        max_scale=2.0, optimizer="sgd", learning_rate=1e-3, momentum=0.9, lr_schedule="constant",
        weight_decay=5e-4, class_weighting="median_frequency", steps=20000, log_every=20,
        val_every=1000, val_images=300, checkpoint_every=1000, keep_last=3, summary_every=50,
        seed=0, deterministic=False,
    )


def _study_cpu() -> TrainConfig:
    """The decoder study on a CPU: SegNet-Basic at a quarter width on the sample data's 6 classes.

    16 features, 7x7 kernels, trained on the six classes the sample data holds
    (background, aeroplane, car, cat, horse, person, renumbered 0-5), so that
    the FCN-style decoders reduce 16 features to 6 class maps, as the paper's
    reduce 64 to 11, instead of expanding them to VOC's 21. 64x64 crops of
    the sample data (rescaled by 0.5-1.0 first, so a crop sees most of a
    96-128 pixel scene), batch 8, Adam at 2e-3 decaying to 0 (poly), no weight
    decay, median-frequency class weights, 2,000 steps (8 epochs of the 2,000
    training scenes). The decay makes the last weights a settled model rather
    than one point of a noisy trajectory; the reference runs
    ``study/<decoder>-seed<k>`` are this recipe. Chosen by measuring: at a
    constant 2e-3 SegNet-Basic, the slowest learner, was still climbing after
    1,200 steps (validation mIoU 0.40, 0.076 CPU-s a step); with the decay to
    0 over 2,000 steps its curve flattens (0.49, 0.50, 0.51 at 1,400, 1,800,
    2,000 steps) in 141 CPU-s, and the 15 runs fit in 40 CPU-minutes.
    """
    return TrainConfig(
        data="sample", classes=SAMPLE_CLASS_IDS, variant="segnet_basic", width_multiplier=0.25,
        crop_size=(64, 64), batch_size=8, min_scale=0.5, max_scale=1.0, flip=True,
        optimizer="adam", learning_rate=2e-3, lr_schedule="poly", weight_decay=0.0,
        class_weighting="median_frequency", steps=2000, log_every=10, cache_images=True,
        seed=0, deterministic=True)


def _study_paper() -> TrainConfig:
    """The paper's Table 1 setting: SegNet-Basic, SGD 0.1, on $SEGNET_VOC_ROOT; a GPU job.

    64 features, SGD with momentum 0.9 at a fixed 0.1, batch 12, weight decay
    5e-4, median-frequency weights, 20000 steps on 224x224 crops of
    ``$SEGNET_VOC_ROOT`` (or the sample data), as far as a
    :class:`~segnet_lib.config.TrainConfig` can say it.
    """
    return TrainConfig(
        data=os.environ.get(VOC_ROOT_ENV) or "sample", variant="segnet_basic",
        width_multiplier=1.0, crop_size=(224, 224), batch_size=12, min_scale=0.75,
        max_scale=1.25, optimizer="sgd", learning_rate=0.1, momentum=0.9,
        lr_schedule="constant", weight_decay=5e-4, class_weighting="median_frequency",
        steps=20000, log_every=20, seed=0, deterministic=False)


#: Recipe name (``train --recipe``) -> function ``(variant) -> TrainConfig``.
RECIPES = {"sample-cpu": sample_recipe, "cells-cpu": cells_recipe, "voc-gpu": voc_gpu_recipe}
#: Generated data (``--data``) -> the recipe ``train`` starts from; any other data: ``voc-gpu``.
DEFAULT_RECIPES = {"sample": "sample-cpu", "cells": "cells-cpu"}
#: Study size (``study --recipe``, :func:`study_recipe`) -> function ``() -> TrainConfig``.
STUDY_RECIPES = {"cpu": _study_cpu, "paper": _study_paper}


def study_recipe(size: str = "cpu", **changes) -> TrainConfig:
    """The training recipe shared by every decoder of the study (see :data:`STUDY_RECIPES`).

    Args:
        size: ``'cpu'`` or ``'paper'``.
        **changes: :class:`~segnet_lib.config.TrainConfig` fields to change
            (``steps=2400``, ``seed=1``, ...); validation and the checkpoint
            still come once, after the last of the (changed) steps.

    Returns:
        A :class:`~segnet_lib.config.TrainConfig` with
        ``variant='segnet_basic'`` that validates on the whole validation
        split :data:`STUDY_VALIDATIONS` times, evenly spaced (the curve shows
        whether it has reached a plateau), and keeps the last checkpoint: the
        scored weights are the last ones, not a choice made on the validation
        split.
    """
    if size not in STUDY_RECIPES:
        raise ValueError(f"study_recipe: size={size!r}; expected one of {tuple(STUDY_RECIPES)}")
    config = STUDY_RECIPES[size]().replace(**changes)
    return config.replace(val_every=max(1, config.steps // STUDY_VALIDATIONS),
                          checkpoint_every=config.steps, keep_last=1, val_images=None,
                          summary_every=config.steps)


def summary(recipe) -> str:
    """The first line of a recipe function's docstring."""
    return (recipe.__doc__ or "").strip().splitlines()[0].rstrip(".")


def describe(config: TrainConfig) -> str:
    """The main numbers of a config in one line, e.g. for ``--help``.

    Example: ``segnet x0.25, 96x96 crops, batch 4, adam 0.002 (poly), 600 steps``.
    """
    width = "" if config.width_multiplier == 1 else f" x{config.width_multiplier:g}"
    weights = ", VGG16 encoder" if config.vgg16_weights else ""
    decay = f", weight decay {config.weight_decay:g}" if config.weight_decay else ""
    return (f"{config.variant}{width}{weights}, {config.crop_size[0]}x{config.crop_size[1]} crops, "
            f"batch {config.batch_size}, {config.optimizer} {config.learning_rate:g} "
            f"({config.lr_schedule}){decay}, {config.steps} steps")
