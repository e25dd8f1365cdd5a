"""segnet_lib.train: loss, schedule, config, checkpoints, the loop, export, prediction.

The loop tests train a very narrow SegNet on 32x32 crops of the sample data for
a handful of steps (a few seconds each); what they check (resumption,
determinism, divergence, checkpoint bookkeeping, export) does not depend on
the model learning anything.
"""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segnet_lib import train
from segnet_lib._tf import tf


def tiny_config(**changes):
    """A run that takes seconds: width 1/8, 32x32 crops, batch 2, 3 val images."""
    config = train.TrainConfig(
        data="sample", variant="segnet", width_multiplier=0.125, crop_size=(32, 32),
        batch_size=2, optimizer="adam", learning_rate=1e-3, steps=6, log_every=1, val_every=3,
        val_images=3, checkpoint_every=2, keep_last=2, summary_every=2, seed=0,
        deterministic=True)
    return config.replace(**changes)


def run_graph(fetch, feed=None):
    with tf.Session() as sess:
        return sess.run(fetch, feed)


# ---------------------------------------------------------------------------
# Loss, accuracy, learning rate
# ---------------------------------------------------------------------------

def numpy_loss(logits, labels, weights=None, ignore=255):
    """Reference: weighted cross-entropy summed over non-void pixels / their count."""
    logits = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    labels = labels.reshape(-1)
    valid = labels != ignore
    z = logits[valid] - logits[valid].max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    xent = -log_p[np.arange(valid.sum()), labels[valid]]
    w = np.ones_like(xent) if weights is None else np.asarray(weights)[labels[valid]]
    return (w * xent).sum() / max(valid.sum(), 1)


@pytest.mark.parametrize("weighted", [False, True])
def test_segmentation_loss_matches_numpy(rng, weighted):
    logits = rng.normal(size=(2, 5, 6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=(2, 5, 6))
    labels[0, :2] = 255  # void rows
    weights = np.array([0.2, 1.0, 3.0, 0.5], np.float32) if weighted else None
    with tf.Graph().as_default():
        loss = train.segmentation_loss(tf.constant(logits), tf.constant(labels), 4,
                                       class_weights=weights)
        got = run_graph(loss)
    assert got == pytest.approx(numpy_loss(logits, labels, weights), rel=1e-5)


def test_segmentation_loss_ignores_void_whatever_the_logits(rng):
    labels = np.full((1, 4, 4), 255)
    labels[0, 0, 0] = 2
    a = rng.normal(size=(1, 4, 4, 3)).astype(np.float32)
    b = a.copy()
    b[0, 1:] = 100 * rng.normal(size=(3, 4, 3))  # changes only void pixels
    with tf.Graph().as_default():
        la = train.segmentation_loss(tf.constant(a), tf.constant(labels), 3)
        lb = train.segmentation_loss(tf.constant(b), tf.constant(labels), 3)
        all_void = train.segmentation_loss(tf.constant(a), tf.constant(np.full((1, 4, 4), 255)), 3)
        va, vb, v0 = run_graph([la, lb, all_void])
    assert va == pytest.approx(vb)
    assert v0 == 0.0


def test_segmentation_loss_rejects_labels_out_of_range():
    with tf.Graph().as_default():
        loss = train.segmentation_loss(tf.zeros([1, 2, 2, 3]), tf.constant([[[0, 1], [7, 255]]]), 3)
        with pytest.raises(tf.errors.InvalidArgumentError, match="class ids in"):
            run_graph(loss)


def test_pixel_accuracy_counts_non_void_pixels_only():
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[0, 0, 0, 1] = logits[0, 0, 1, 2] = logits[0, 1, 0, 0] = logits[0, 1, 1, 1] = 5
    labels = np.array([[[1, 0], [0, 255]]])  # right, wrong, right, void
    with tf.Graph().as_default():
        acc = run_graph(train.pixel_accuracy(tf.constant(logits), tf.constant(labels)))
    assert acc == pytest.approx(2 / 3)


def test_learning_rate_schedules():
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        poly = train.learning_rate_schedule(
            tiny_config(lr_schedule="poly", learning_rate=0.1, lr_power=0.9, steps=100), step)
        const = train.learning_rate_schedule(tiny_config(learning_rate=0.1), step)
        with tf.Session() as sess:
            values = [sess.run([poly, const], {step: s}) for s in (0, 50, 100)]
    assert values[0] == pytest.approx([0.1, 0.1])
    assert values[1][0] == pytest.approx(0.1 * 0.5 ** 0.9, rel=1e-5)
    assert values[2] == pytest.approx([0.0, 0.1])


def test_optimizers():
    with tf.Graph().as_default():
        assert isinstance(train.make_optimizer(tiny_config(optimizer="sgd"), 0.1),
                          tf.train.MomentumOptimizer)
        assert isinstance(train.make_optimizer(tiny_config(optimizer="adam"), 0.1),
                          tf.train.AdamOptimizer)


# ---------------------------------------------------------------------------
# Config and run folder
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("changes, word", [
    (dict(steps=0), "steps"), (dict(variant="unet"), "variant"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(learning_rate=-1.0), "learning_rate"), (dict(crop_size=(0, 32)), "crop_size"),
    (dict(model_options={"no_such_field": 1}), "no_such_field"), (dict(rle_order="X"), "rle_order"),
    (dict(batch_size=2.5), "batch_size"),
])
def test_config_rejects_bad_values(changes, word):
    with pytest.raises(ValueError, match=word):
        tiny_config(**changes)


def test_config_round_trips_through_json():
    config = tiny_config(model_options={"batch_norm_decay": 0.95}, resize_to=(64, 48))
    again = train.TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.model_config().batch_norm_decay == 0.95
    assert again.fingerprint() == config.fingerprint()
    assert config.replace(log_every=5).fingerprint() == config.fingerprint()
    assert config.replace(seed=1).fingerprint() != config.fingerprint()


def test_check_run_dir(tmp_path):
    config = tiny_config()
    assert train.check_run_dir(config, tmp_path / "new") is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / train.CONFIG_FILE).write_text(json.dumps(config.to_dict()))
    assert train.check_run_dir(config.replace(steps=60, val_every=7), tmp_path / "run") == config
    with pytest.raises(ValueError, match="learning_rate: 0.001 -> 0.01"):
        train.check_run_dir(config.replace(learning_rate=0.01), tmp_path / "run")
    poly = config.replace(lr_schedule="poly")
    (tmp_path / "run" / train.CONFIG_FILE).write_text(json.dumps(poly.to_dict()))
    with pytest.raises(ValueError, match="steps"):
        train.check_run_dir(poly.replace(steps=60), tmp_path / "run")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        train.check_run_dir(config, tmp_path / "other")


def test_open_datasets_holds_out_part_of_a_csv():
    from segnet_lib import sample_data

    root = sample_data.sample_root()
    config = tiny_config(data=str(root / "train.csv"), rle_order=sample_data.CSV_ORDER,
                         val_fraction=0.2)
    train_set, val_set = train.open_datasets(config)
    assert not set(train_set.ids) & set(val_set.ids)
    assert len(val_set) == round(0.2 * (len(train_set) + len(val_set)))
    with pytest.raises(ValueError, match="rle_order"):
        train.open_datasets(config.replace(rle_order=None))
    with pytest.raises(FileNotFoundError, match="no_such"):
        train.open_datasets(config.replace(data=str(root / "no_such.csv")))


# ---------------------------------------------------------------------------
# Checkpoint bookkeeping (with a one-variable graph)
# ---------------------------------------------------------------------------

def test_checkpoints_keep_last_k_and_best_and_ignore_partial_writes(tmp_path):
    with tf.Graph().as_default():
        v = tf.get_variable("v", initializer=0.0)
        assign = tf.placeholder(tf.float32, [])
        set_v = tf.assign(v, assign)
        saver = tf.train.Saver()
        ckpts = train._Checkpoints(tmp_path, saver, keep_last=2)
        with tf.Session() as sess:
            for step, miou in [(10, 0.2), (20, 0.5), (30, 0.3), (40, None), (50, 0.1)]:
                sess.run(set_v, {assign: step})
                ckpts.save(sess, step, {"val_mean_iou": miou}, [{"step": step}])
            kept = [s for s, _ in train._checkpoint_dirs(tmp_path)]
            assert kept == [20, 40, 50]  # last two + the best (0.5 at step 20)
            assert train.latest_checkpoint(tmp_path).endswith("ckpt-00000050/model")
            assert train.best_checkpoint(tmp_path).endswith("ckpt-00000020/model")
            assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-00000050/model")
            assert tf.train.latest_checkpoint(str(tmp_path), train.BEST_STATE_FILE).endswith(
                "ckpt-00000020/model")
            # A crash mid-write leaves a temporary folder (and no meta.json):
            # never mistaken for a checkpoint.
            (tmp_path / ".ckpt-00000060.tmp-1").mkdir()
            (tmp_path / "ckpt-00000070").mkdir()  # renamed but incomplete
            assert train.latest_checkpoint(tmp_path).endswith("ckpt-00000050/model")
            saver.restore(sess, train.best_checkpoint(tmp_path))
            assert sess.run(v) == 20.0
        meta = json.loads((tmp_path / "ckpt-00000050" / train.META_FILE).read_text())
        assert meta["step"] == 50 and meta["val_mean_iou"] == 0.1


# ---------------------------------------------------------------------------
# The loop (real model, sample data)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny run, trained once for the tests below."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    history = train.train(tiny_config(), out, progress=False, log=None)
    return out, history


def test_train_writes_history_checkpoints_and_export(tiny_run):
    out, history = tiny_run
    assert list(history.columns) == list(train.HISTORY_COLUMNS)
    assert history["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert np.isfinite(history["loss"]).all()
    validated = history.dropna(subset=["val_mean_iou"])
    assert validated["step"].tolist() == [3, 6]
    assert ((validated["val_mean_iou"] >= 0) & (validated["val_mean_iou"] <= 1)).all()
    pd.testing.assert_frame_equal(train.read_history(out), history, check_dtype=False)
    assert train.read_config(out) == tiny_config()
    weights = json.loads((out / train.CLASS_WEIGHTS_FILE).read_text())
    assert len(weights["weights"]) == 21 and weights["classes"][0] == "background"
    steps = [s for s, _ in train._checkpoint_dirs(out)]
    assert steps[-2:] == [4, 6] and set(steps) <= {3, 4, 6}
    assert list((out / train.SUMMARY_DIR).glob("events.out.tfevents.*"))
    info = json.loads((out / train.EXPORT_DIR / train.EXPORT_INFO_FILE).read_text())
    assert info["format"] == "frozen" and info["num_classes"] == 21


def test_history_of_a_checkpoint_is_the_history_up_to_its_step(tiny_run):
    out, history = tiny_run
    snapshot = pd.read_csv(out / "ckpt-00000004" / train.HISTORY_FILE)
    pd.testing.assert_frame_equal(snapshot, history[history.step <= 4].reset_index(drop=True),
                                  check_dtype=False)


def test_finished_run_is_not_trained_again(tiny_run):
    out, history = tiny_run
    before = sorted(p.name for p in out.iterdir())
    again = train.train(tiny_config(), out, progress=False, log=None)
    pd.testing.assert_frame_equal(again, history, check_dtype=False)
    assert sorted(p.name for p in out.iterdir()) == before


def test_resumed_run_follows_the_uninterrupted_curve(tiny_run, tmp_path):
    """Stop at step 4 (as a crash after the step-4 checkpoint would), then go on to 6."""
    _, history = tiny_run
    out = tmp_path / "resumed"
    first = train.train(tiny_config(steps=4), out, progress=False, log=None)
    assert first["step"].iloc[-1] == 4
    messages = []
    resumed = train.train(tiny_config(), out, progress=False, log=messages.append)
    assert any("from step 4" in m for m in messages)
    # Same steps, same losses to the last bit: global step, optimiser state,
    # data position and augmentation were all restored.
    columns = ["step", "loss", "pixel_accuracy", "learning_rate"]
    pd.testing.assert_frame_equal(resumed[columns], history[columns], check_exact=True)
    # (The short run also validated at its last step, 4.)
    for step in (3, 6):
        assert (resumed.set_index("step").loc[step, "val_mean_iou"]
                == history.set_index("step").loc[step, "val_mean_iou"])


def test_same_seed_same_curve_other_seed_other_curve(tiny_run, tmp_path):
    _, history = tiny_run
    again = train.train(tiny_config(), tmp_path / "again", progress=False, log=None)
    pd.testing.assert_series_equal(again["loss"], history["loss"], check_exact=True)
    other = train.train(tiny_config(seed=1, steps=2), tmp_path / "seed1", progress=False, log=None)
    assert not np.array_equal(other["loss"].to_numpy(), history["loss"].to_numpy()[:2])


def test_refuses_to_resume_with_a_different_config(tiny_run):
    out, _ = tiny_run
    with pytest.raises(ValueError, match="width_multiplier"):
        train.train(tiny_config(width_multiplier=0.25), out, progress=False, log=None)


def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    # SGD at 1e12 blows the weights up within a few steps.
    config = tiny_config(optimizer="sgd", learning_rate=1e12, momentum=0.0, checkpoint_every=1,
                         val_every=100, steps=50)
    with pytest.raises(train.TrainingDiverged, match=r"(at|by) step \d+") as err:
        train.train(config, tmp_path / "nan", progress=False, log=None)
    bad_step = int(re.search(r"(?:at|by) step (\d+)", str(err.value)).group(1))
    latest = train.latest_checkpoint(tmp_path / "nan")
    if latest is not None:  # every kept checkpoint precedes the failure and is finite
        assert int(Path(latest).parent.name.split("-")[1]) < bad_step
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.isfinite(value).all(), name


# ---------------------------------------------------------------------------
# Export and prediction
# ---------------------------------------------------------------------------

def test_predictor_matches_between_frozen_graph_and_saved_model(tiny_run, tmp_path):
    from segnet_lib import sample_data, voc

    out, _ = tiny_run
    image, _ = voc.VOCSegmentation(sample_data.sample_root(), "val")[0]
    with train.load_predictor(out) as frozen:
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
    saved = train.export_model(out, out=tmp_path / "saved", format="saved_model")
    assert (saved / "saved_model.pb").is_file()
    with train.load_predictor(saved) as loaded:
        np.testing.assert_allclose(loaded.predict(image), probs, atol=1e-6)
    with train.load_predictor(out / train.EXPORT_DIR / train.FROZEN_GRAPH_FILE) as again:
        np.testing.assert_array_equal(again.predict(image), probs)


def test_predictor_agrees_with_the_validation_score(tiny_run):
    """The exported graph scores the validation images as the training loop did."""
    from segnet_lib import metrics

    out, history = tiny_run
    config = train.read_config(out)
    _, val_set = train.open_datasets(config)
    best = Path(train.best_checkpoint(out)).parent
    expected = json.loads((best / train.META_FILE).read_text())["val_mean_iou"]
    with train.load_predictor(out) as predictor:
        evaluator = metrics.evaluate_dataset(predictor.predict, val_set, limit=config.val_images,
                                             boundary=False)
    assert evaluator.scores()["mean_iou"] == pytest.approx(expected, abs=1e-6)


def test_bayesian_export_samples_differ_and_repeat(tmp_path):
    out = tmp_path / "bayes"
    train.train(tiny_config(variant="bayesian", steps=2, val_every=2), out, progress=False, log=None)
    image = np.random.default_rng(0).integers(0, 256, (40, 36, 3), dtype=np.uint8)
    with train.load_predictor(out) as p:
        assert p.has_mc_dropout
        samples = p.sample(np.repeat(image[None], 3, axis=0))
        assert samples.shape == (3, 40, 36, 21)
        assert not np.allclose(samples[0], samples[1])  # one dropout mask per batch element
    with train.load_predictor(out) as q:  # a fresh session repeats the draws
        np.testing.assert_array_equal(q.sample(np.repeat(image[None], 3, axis=0)), samples)


def test_load_predictor_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an exported model"):
        train.load_predictor(tmp_path)


def test_sample_checkpoint_trains_once_then_reuses(tmp_path, monkeypatch):
    from segnet_lib import sample_data

    root = sample_data.sample_root()  # the data stays where it is
    monkeypatch.setattr(sample_data, "sample_root", lambda seed=0: root)
    monkeypatch.setenv("SEGNET_CACHE_DIR", str(tmp_path))
    # The real recipe takes minutes; the caching logic is the same for any recipe.
    monkeypatch.setattr(train, "sample_recipe", lambda variant="segnet": tiny_config(
        variant=variant, steps=2, val_every=2))
    first = train.sample_checkpoint()
    assert first.parent == tmp_path / "checkpoints" and first.name.startswith(
        f"sample-data{sample_data.SAMPLE_VERSION}-segnet-")
    stamp = (first / train.HISTORY_FILE).stat().st_mtime_ns
    assert train.sample_checkpoint() == first == train.sample_run_dir()
    assert (first / train.HISTORY_FILE).stat().st_mtime_ns == stamp
    assert (first / train.EXPORT_DIR / train.FROZEN_GRAPH_FILE).is_file()
