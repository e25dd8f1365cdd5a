"""segnet_lib.recipes: the recipes, their registries and the one-line descriptions."""
import pytest

from segnet_lib import config, recipes, voc


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
    # One validation and one checkpoint, at the end: the scored weights are the last.
    assert cpu.val_every == cpu.checkpoint_every == cpu.steps
    # Changed steps move that one validation and checkpoint with them (the CLI's --steps).
    longer = recipes.study_recipe("cpu", steps=40, seed=2)
    assert longer.val_every == longer.checkpoint_every == longer.summary_every == 40
    # ... and nothing else differs.
    assert longer.replace(steps=600, seed=0, val_every=600, checkpoint_every=600,
                          summary_every=600) == cpu
    paper = recipes.study_recipe("paper")
    assert (paper.optimizer, paper.learning_rate, paper.momentum, paper.batch_size) == (
        "sgd", 0.1, 0.9, 12)
    assert set(recipes.STUDY_RECIPES) == {"cpu", "paper"}
    with pytest.raises(ValueError, match="size"):
        recipes.study_recipe("huge")


def test_summaries_are_the_docstrings_first_lines():
    for recipe in (*recipes.RECIPES.values(), *recipes.STUDY_RECIPES.values()):
        summary = recipes.summary(recipe)
        assert summary and recipe.__doc__.strip().startswith(summary) and "\n" not in summary
