"""segnet_lib.reference: the shipped reference runs, and the machinery that makes them.

``test_every_shipped_run_matches_the_code`` is the guard the book relies on: a
reference run whose recipe, data or model changed fails here, naming the
command that rebuilds it. The other tests build a tiny run into a temporary
folder.
"""
import json

import numpy as np
import pytest

from segnet_lib import datasets, export, recipes, reference, sample_data


@pytest.mark.parametrize("name", list(reference.REFERENCE_RUNS))
def test_every_shipped_run_matches_the_code(name):
    problems = reference.check(name)
    assert problems == [], (f"reference/{name} is stale: {'; '.join(problems)}. "
                            f"Rebuild it with: {reference.rebuild_command(name)}")


def test_the_decoder_study_is_one_run_per_decoder_and_seed():
    names = [n for n in reference.REFERENCE_RUNS if n.startswith("study/")]
    assert names == [reference.study_name(d, s) for d in recipes.STUDY_DECODERS
                     for s in recipes.STUDY_SEEDS]
    base = recipes.study_recipe("cpu")
    for decoder in recipes.STUDY_DECODERS:
        for seed in recipes.STUDY_SEEDS:
            config = reference.REFERENCE_RUNS[reference.study_name(decoder, seed)].recipe()
            # Only the decoder and the seed differ from the study's recipe.
            assert config == base.replace(seed=seed, model_options={"decoder": decoder})


def test_the_shipped_runs_stay_small():
    assert reference.shipped_size() < 25e6


@pytest.fixture
def tiny_registry(monkeypatch, tiny_config):
    """REFERENCE_RUNS holding one tiny run (and one that ships no weights)."""
    runs = {
        "tiny": reference.ReferenceRun("tiny", lambda: tiny_config(steps=4, val_every=2),
                                       "a tiny run"),
        "curve/tiny": reference.ReferenceRun("curve/tiny", lambda: tiny_config(steps=2, val_every=2),
                                             "a curve only", ship_weights=False),
    }
    monkeypatch.setattr(reference, "REFERENCE_RUNS", runs)
    return runs


def test_build_ships_a_run_that_load_predictor_reads(tmp_path, tiny_registry):
    root = tmp_path / "reference"
    folder = reference.build("tiny", tmp_path / "runs", root, progress=False)
    assert folder == root / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "export.json", "history.csv", "manifest.json", "metrics.json",
        "weights.npz"]
    facts = reference.manifest("tiny", root)
    assert facts["steps"] == 4 and facts["fingerprint"] == tiny_registry["tiny"].recipe().fingerprint()
    assert facts["data_version"] == f"sample-v{sample_data.SAMPLE_VERSION}"
    assert facts["cpu_seconds"] > 0 and facts["command"] == "make reference RUNS=tiny"
    assert reference.check("tiny", root) == []
    scores = json.loads((folder / reference.METRICS_FILE).read_text())
    _, val_set = datasets.open_datasets(tiny_registry["tiny"].recipe())
    # Scored on the whole validation split, not the run's val_images.
    assert set(scores) == {"float16", "float32"} and scores["float16"]["images"] == len(val_set)
    with export.load_predictor(reference.path("tiny", root)) as predictor:
        image, _ = val_set[0]
        assert predictor.predict(image).shape == image.shape[:2] + (21,)
    assert len(reference.history("tiny", root)) == 4
    # Building again reuses the finished run and ships the same weights.
    before = export.read_weights(folder)
    reference.build("tiny", tmp_path / "runs", root, progress=False)
    after = export.read_weights(folder)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_a_curve_only_run_ships_no_weights(tmp_path, tiny_registry):
    root = tmp_path / "reference"
    folder = reference.build("curve/tiny", tmp_path / "runs", root, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.csv",
                                                        "manifest.json"]
    assert reference.check("curve/tiny", root) == []
    assert reference.select(["curve"]) == ["curve/tiny"]


def test_check_names_what_went_stale(tmp_path, tiny_registry, monkeypatch, tiny_config):
    root = tmp_path / "reference"
    reference.build("tiny", tmp_path / "runs", root, progress=False)
    monkeypatch.setattr(sample_data, "SAMPLE_VERSION", sample_data.SAMPLE_VERSION + 1)
    assert any("its data changed" in p for p in reference.check("tiny", root))
    monkeypatch.undo()
    monkeypatch.setattr(reference, "REFERENCE_RUNS", tiny_registry)
    changed = reference.ReferenceRun("tiny", lambda: tiny_config(steps=4, val_every=2,
                                                                  width_multiplier=0.25), "wider")
    monkeypatch.setitem(tiny_registry, "tiny", changed)
    problems = reference.check("tiny", root)
    assert any("recipe changed" in p for p in problems)
    assert any("variables changed" in p for p in problems)
    assert "make reference RUNS=tiny" in str(pytest.raises(
        FileNotFoundError, reference.path, "tiny", tmp_path / "elsewhere").value)


def test_ship_refuses_an_unfinished_or_foreign_run(tmp_path, tiny_registry, tiny_config):
    from segnet_lib import train

    run_dir = tmp_path / "runs" / "tiny"
    train.train(tiny_config(steps=4, val_every=2, checkpoint_every=2), run_dir, progress=False,
                log=None, export=False)
    (run_dir / "ckpt-00000004").rename(run_dir / "moved")
    with pytest.raises(ValueError, match="has not reached step 4"):
        reference.ship("tiny", run_dir, tmp_path / "reference")
    with pytest.raises(KeyError, match="no reference run matches"):
        reference.select(["nothing*"])


def test_pending_runs_are_built_by_name_but_not_checked():
    assert set(reference.PENDING_RUNS).isdisjoint(reference.REFERENCE_RUNS)
    # Not among the runs `make reference` rebuilds with no names (nor checked above) ...
    assert set(reference.select()).isdisjoint(reference.PENDING_RUNS)
    # ... but buildable by name or glob, like any other (pending or moved: the same names).
    assert reference.select(["cells-*"]) == ["cells-unet", "cells-segnet"]


def test_notebook_8_runs_are_the_cells_recipe_with_one_budget():
    registered = {**reference.REFERENCE_RUNS, **reference.PENDING_RUNS}
    assert registered["cells-unet"].recipe() == recipes.cells_recipe("unet")
    assert registered["cells-segnet"].recipe() == recipes.cells_recipe("segnet")


@pytest.mark.parametrize("name", list(reference.PENDING_RUNS))
def test_a_shipped_run_does_not_stay_pending(name):
    # Once `make reference RUNS=<name>` has shipped it, it belongs in REFERENCE_RUNS,
    # where the staleness test guards it.
    with pytest.raises(FileNotFoundError, match=f"rebuild it with `make reference RUNS={name}`"):
        reference.path(name)


def test_a_pending_run_builds_ships_and_checks_like_a_registered_one(tmp_path, monkeypatch,
                                                                     tiny_config):
    monkeypatch.setattr(reference, "REFERENCE_RUNS", {})
    monkeypatch.setattr(reference, "PENDING_RUNS", {"new": reference.ReferenceRun(
        "new", lambda: tiny_config(steps=2, val_every=2), "a pending run")})
    root = tmp_path / "reference"
    assert reference.select() == [] and reference.select(["new"]) == ["new"]
    folder = reference.build("new", tmp_path / "runs", root, progress=False)
    assert reference.path("new", root) == folder and reference.check("new", root) == []
    assert reference.manifest("new", root)["command"] == "make reference RUNS=new"
    with pytest.raises(KeyError, match="no reference run 'old'; known: new"):
        reference.path("old", root)
