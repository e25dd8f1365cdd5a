"""segnet_lib.recipes: the recipes, their registries and the one-line descriptions."""
import numpy as np
import pytest

from segnet_lib import cells, config, datasets, model, recipes, sample_data, voc
from segnet_lib._tf import tf


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_registered_recipes_make_valid_configs_of_any_variant(name):
    for variant in ("segnet", "bayesian"):
        made = recipes.RECIPES[name](variant)
        assert isinstance(made, config.TrainConfig) and made.variant == variant


def test_sample_recipe_is_what_its_docstring_says():
    sample = recipes.sample_recipe()
    assert (sample.data, sample.width_multiplier, sample.crop_size, sample.batch_size) == (
        "sample", 0.25, (96, 96), 16)
    assert (sample.optimizer, sample.learning_rate, sample.lr_schedule, sample.steps) == (
        "adam", 1e-3, "poly", 7000)
    assert sample.deterministic and sample.val_every == 500 and sample.val_images is None
    assert recipes.describe(sample) == ("segnet x0.25, 96x96 crops, batch 16, adam 0.001 (poly), "
                                        "7000 steps")


def test_voc_gpu_recipe_reads_the_voc_root(monkeypatch, tmp_path):
    monkeypatch.delenv(voc.VOC_ROOT_ENV, raising=False)
    assert recipes.voc_gpu_recipe().data == "sample"
    monkeypatch.setenv(voc.VOC_ROOT_ENV, str(tmp_path))
    gpu = recipes.voc_gpu_recipe(vgg16_weights="w.h5")
    assert gpu.data == str(tmp_path) and gpu.vgg16_weights == "w.h5"
    assert (gpu.optimizer, gpu.learning_rate, gpu.momentum, gpu.weight_decay) == (
        "sgd", 1e-3, 0.9, 5e-4)
    assert "VGG16 encoder" in recipes.describe(gpu)


def test_study_recipes():
    cpu = recipes.study_recipe("cpu")
    assert cpu.variant == "segnet_basic" and cpu.data == "sample"
    # The sample data's six classes, so that 16 features reduce to 6 class maps.
    assert cpu.classes == sample_data.SAMPLE_CLASS_IDS
    assert cpu.model_config().width_multiplier * 64 >= len(cpu.classes)
    # Validated on every validation image, evenly, and one checkpoint at the end:
    # the scored weights are the last.
    assert cpu.val_every * recipes.STUDY_VALIDATIONS == cpu.steps
    assert cpu.checkpoint_every == cpu.steps and cpu.val_images is None
    # Changed steps move the validations and the checkpoint with them (the CLI's --steps).
    longer = recipes.study_recipe("cpu", steps=40, seed=2)
    assert longer.checkpoint_every == longer.summary_every == 40 and longer.val_every == 4
    # ... and nothing else differs.
    assert longer.replace(steps=cpu.steps, seed=0, val_every=cpu.val_every,
                          checkpoint_every=cpu.steps, summary_every=cpu.steps) == cpu
    paper = recipes.study_recipe("paper")
    assert (paper.optimizer, paper.learning_rate, paper.momentum, paper.batch_size) == (
        "sgd", 0.1, 0.9, 12)
    assert set(recipes.STUDY_RECIPES) == {"cpu", "paper"}
    with pytest.raises(ValueError, match="size"):
        recipes.study_recipe("huge")
    assert len(recipes.STUDY_DECODERS) == 5 and len(recipes.STUDY_SEEDS) >= 3


def test_summaries_are_the_docstrings_first_lines():
    for recipe in (*recipes.RECIPES.values(), *recipes.STUDY_RECIPES.values()):
        summary = recipes.summary(recipe)
        assert summary and recipe.__doc__.strip().startswith(summary) and "\n" not in summary


def test_cells_recipe_gives_unet_and_segnet_one_budget():
    unet, segnet = recipes.cells_recipe("unet"), recipes.cells_recipe("segnet")
    assert (unet.variant, segnet.variant) == ("unet", "segnet")
    # Everything but the model is the same: steps, crops, batches, optimiser, data.
    assert unet.replace(variant="segnet") == segnet
    assert (unet.data, unet.val_fraction, unet.crop_size, unet.batch_size, unet.steps) == (
        "cells", 0.2, (128, 128), 8, 3000)
    # The cells at their own scale: no rescaling that would shrink cort to a few pixels.
    assert unet.min_scale == unet.max_scale == 1.0
    assert unet.deterministic and unet.val_images is None
    assert unet.steps % unet.val_every == 0 and unet.steps % unet.checkpoint_every == 0
    assert recipes.describe(unet) == "unet x0.25, 128x128 crops, batch 8, adam 0.001 (poly), 3000 steps"
    assert recipes.RECIPES["cells-cpu"] is recipes.cells_recipe


def test_cells_recipe_parameters_are_what_its_docstring_says():
    counts = {}
    for variant in ("unet", "segnet"):
        with tf.Graph().as_default() as graph:
            images = tf.placeholder(tf.float32, [1, 64, 64, 3])
            model.build(images, len(cells.CLASS_NAMES), False,
                        recipes.cells_recipe(variant).model_config())
            counts[variant] = model.count_parameters(graph=graph)
    assert counts == {"unet": 1_942_628, "segnet": 1_845_556}
    assert "1.94M" in recipes.cells_recipe.__doc__ and "1.85M" in recipes.cells_recipe.__doc__


def test_cells_recipe_holds_out_ten_images_of_each_cell_type():
    config = recipes.cells_recipe()
    train_set, val_set = datasets.open_datasets(config)
    assert (len(train_set), len(val_set)) == (120, 30)
    # A generated image holds one cell type: its label map's one non-zero class.
    types = [int(np.setdiff1d(np.unique(val_set[i][1]), [0])[0]) for i in range(len(val_set))]
    assert np.bincount(types, minlength=4)[1:].tolist() == [10, 10, 10]


def test_generated_data_starts_from_its_own_recipe():
    assert set(recipes.DEFAULT_RECIPES) == set(datasets.NAMED_DATA)
    assert set(recipes.DEFAULT_RECIPES.values()) <= set(recipes.RECIPES)
