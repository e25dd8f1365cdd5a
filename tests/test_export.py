"""segnet_lib.export: frozen graphs and SavedModels, and the Predictor that runs them."""
import json
from pathlib import Path

import numpy as np
import pytest

from segnet_lib import checkpoints, config, datasets, export, metrics, sample_data, train


def test_predictor_matches_between_frozen_graph_and_saved_model(tiny_run, tmp_path):
    out, _ = tiny_run
    image, _ = datasets.VOCSegmentation(sample_data.sample_root(), "val")[0]
    with export.load_predictor(out) as frozen:
        probs = frozen.predict(image)
        assert probs.shape == image.shape[:2] + (21,) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        assert frozen.labels(image).shape == image.shape[:2]
        assert not frozen.has_mc_dropout
        with pytest.raises(ValueError, match="bayesian"):
            frozen.sample(image[None])
        with pytest.raises(ValueError, match="uint8"):
            frozen.predict(image.astype(np.float32))
        with pytest.raises(ValueError, match=r"\[height, width, 3\]"):
            frozen.predict(image[..., 0])
    saved = export.export_model(out, out=tmp_path / "saved", format="saved_model")
    assert (saved / "saved_model.pb").is_file()
    with export.load_predictor(saved) as loaded:
        np.testing.assert_allclose(loaded.predict(image), probs, atol=1e-6)
    with export.load_predictor(out / export.EXPORT_DIR / export.FROZEN_GRAPH_FILE) as again:
        np.testing.assert_array_equal(again.predict(image), probs)


def test_predictor_agrees_with_the_validation_score(tiny_run):
    """The exported graph scores the validation images as the training loop did."""
    out, history = tiny_run
    run = config.read_config(out)
    _, val_set = datasets.open_datasets(run)
    best = Path(checkpoints.best_checkpoint(out)).parent
    expected = json.loads((best / checkpoints.META_FILE).read_text())["val_mean_iou"]
    with export.load_predictor(out) as predictor:
        evaluator = metrics.evaluate_dataset(predictor.predict, val_set, limit=run.val_images,
                                             boundary=False)
    assert evaluator.scores()["mean_iou"] == pytest.approx(expected, abs=1e-6)


def test_bayesian_export_samples_differ_and_repeat(tmp_path, tiny_config):
    out = tmp_path / "bayes"
    train.train(tiny_config(variant="bayesian", steps=2, val_every=2), out, progress=False, log=None)
    image = np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    with export.load_predictor(out) as p:
        assert p.has_mc_dropout
        samples = p.sample(np.repeat(image[None], 3, axis=0))
        assert samples.shape == (3, 40, 36, 21)
        assert not np.allclose(samples[0], samples[1])  # one dropout mask per batch element
    with export.load_predictor(out) as q:  # a fresh session repeats the draws
        np.testing.assert_array_equal(q.sample(np.repeat(image[None], 3, axis=0)), samples)


def test_load_predictor_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an exported model"):
        export.load_predictor(tmp_path)


def test_export_refuses_unknown_formats_and_existing_saved_models(tiny_run, tmp_path):
    out, _ = tiny_run
    with pytest.raises(ValueError, match="format='onnx'"):
        export.export_model(out, tmp_path / "x", format="onnx")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="exists; choose a new folder"):
        export.export_model(out, tmp_path / "taken", format="saved_model")
    with pytest.raises(FileNotFoundError, match="not found"):
        export.export_model(out, tmp_path / "y", checkpoint=str(out / "ckpt-00000099" / "model"))


def test_export_if_stale_exports_only_when_the_best_checkpoint_changed(tiny_run):
    out, _ = tiny_run
    frozen = out / export.EXPORT_DIR / export.FROZEN_GRAPH_FILE
    stamp = frozen.stat().st_mtime_ns
    export.export_if_stale(out)
    assert frozen.stat().st_mtime_ns == stamp
    info = json.loads((out / export.EXPORT_DIR / export.EXPORT_INFO_FILE).read_text())
    assert info["checkpoint"] == str(Path(checkpoints.best_checkpoint(out)).relative_to(out))


def test_weights_export_predicts_like_the_frozen_graph(tiny_run, tmp_path):
    """float32 weights give the frozen graph's probabilities; float16 ones nearly."""
    out, _ = tiny_run
    image, _ = datasets.VOCSegmentation(sample_data.sample_root(), "val")[0]
    with export.load_predictor(out) as frozen:
        expected = frozen.predict(image)
    full = export.export_model(out, tmp_path / "w32", format="weights", dtype="float32")
    half = export.export_model(out, tmp_path / "w16", format="weights")
    assert sorted(p.name for p in half.iterdir()) == ["config.json", "export.json", "weights.npz"]
    assert json.loads((half / export.EXPORT_INFO_FILE).read_text())["dtype"] == "float16"
    values = export.read_weights(half)
    assert all(v.dtype == np.float32 for v in values.values())  # float32 again once read
    assert (half / export.WEIGHTS_FILE).stat().st_size < (full / export.WEIGHTS_FILE).stat().st_size
    with export.load_predictor(full) as loaded:
        np.testing.assert_allclose(loaded.predict(image), expected, atol=1e-5)
    with export.load_predictor(half) as loaded:
        rounded = loaded.predict(image)
    # Rounding every weight to 11 significant bits moves the probabilities of
    # this barely trained model (its batch-norm statistics are still mostly
    # their start values) a little. Its classes are near ties at many pixels
    # (about one in ten flips on the sample data v5), but a broken export
    # (weights in the wrong places) would agree on few pixels.
    assert np.abs(rounded - expected).mean() < 2e-3
    assert (rounded.argmax(-1) == expected.argmax(-1)).mean() > 0.8
    with pytest.raises(ValueError, match="dtype='int8'"):
        export.export_model(out, tmp_path / "w8", format="weights", dtype="int8")


def test_weights_that_do_not_fit_the_config_are_refused(tiny_run, tmp_path):
    out, _ = tiny_run
    folder = export.export_model(out, tmp_path / "w", format="weights")
    wider = config.read_config(folder).replace(width_multiplier=0.25)
    config.write_config(wider, folder)
    with pytest.raises(ValueError, match="has shape .* export it again"):
        export.load_predictor(folder)
    np.savez(folder / export.WEIGHTS_FILE, nothing=np.zeros(1))
    with pytest.raises(ValueError, match="does not fit the model"):
        export.load_predictor(folder)
    (folder / export.WEIGHTS_FILE).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read"):
        export.read_weights(folder)


def test_a_unet_run_trains_exports_and_predicts(tmp_path, tiny_config):
    """variant='unet' goes through the same loop, export and Predictor."""
    out = tmp_path / "unet"
    run = tiny_config(variant="unet", steps=2, val_every=2, model_options={"depth": 2})
    history = train.train(run, out, progress=False, log=None)
    assert np.isfinite(history["loss"]).all() and history["step"].iloc[-1] == 2
    assert config.read_config(out).model_config() == run.model_config()
    image = np.random.default_rng(1).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    with export.load_predictor(out) as predictor:
        assert predictor.variant == "unet" and not predictor.has_mc_dropout
        probs = predictor.predict(image)
    assert probs.shape == (37, 45, 21)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # The frozen graph is U-Net's: its up-convolutions and concatenations.
    frozen = (out / export.EXPORT_DIR / export.FROZEN_GRAPH_FILE).read_bytes()
    assert b"unet/upconv2/conv2d_transpose" in frozen and b"unet/concat1" in frozen
    # The weights export rebuilds the same U-Net from its config.
    weights = export.export_model(out, tmp_path / "w", format="weights", dtype="float32")
    with export.load_predictor(weights) as rebuilt:
        np.testing.assert_allclose(rebuilt.predict(image), probs, atol=1e-5)


def test_stored_values_keep_float32_where_float16_would_overflow():
    small = np.array([1.0, -2.5, 65504.0], np.float32)
    assert export.stored_values(small, "float16").dtype == np.float16
    large = np.array([1.0, 1e5], np.float32)  # e.g. a first layer's moving variance
    kept = export.stored_values(large, "float16")
    assert kept.dtype == np.float32 and np.array_equal(kept, large)
    assert export.stored_values(large, "float32").dtype == np.float32
    assert export.stored_values(np.zeros(0, np.float32), "float16").dtype == np.float16
