"""segnet_lib.train: the training graph, the resumable loop and the book's sample run.

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

from segnet_lib import checkpoints, config, export, train
from segnet_lib._tf import tf


# ---------------------------------------------------------------------------
# The loop (real model, sample data)
# ---------------------------------------------------------------------------

def test_train_writes_history_checkpoints_and_export(tiny_run, tiny_config):
    out, history = tiny_run
    assert list(history.columns) == list(checkpoints.HISTORY_COLUMNS)
    assert history["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert np.isfinite(history["loss"]).all()
    validated = history.dropna(subset=["val_mean_iou"])
    assert validated["step"].tolist() == [3, 6]
    assert ((validated["val_mean_iou"] >= 0) & (validated["val_mean_iou"] <= 1)).all()
    pd.testing.assert_frame_equal(checkpoints.read_history(out), history, check_dtype=False)
    assert config.read_config(out) == tiny_config()
    weights = json.loads((out / checkpoints.CLASS_WEIGHTS_FILE).read_text())
    assert len(weights["weights"]) == 21 and weights["classes"][0] == "background"
    steps = [s for s, _ in checkpoints.checkpoint_dirs(out)]
    assert steps[-2:] == [4, 6] and set(steps) <= {3, 4, 6}
    assert list((out / checkpoints.SUMMARY_DIR).glob("events.out.tfevents.*"))
    info = json.loads((out / export.EXPORT_DIR / export.EXPORT_INFO_FILE).read_text())
    assert info["format"] == "frozen" and info["num_classes"] == 21


def test_history_of_a_checkpoint_is_the_history_up_to_its_step(tiny_run):
    out, history = tiny_run
    snapshot = pd.read_csv(out / "ckpt-00000004" / checkpoints.HISTORY_FILE)
    pd.testing.assert_frame_equal(snapshot, history[history.step <= 4].reset_index(drop=True),
                                  check_dtype=False)


def test_finished_run_is_not_trained_again(tiny_run, tiny_config):
    out, history = tiny_run
    before = sorted(p.name for p in out.iterdir())
    again = train.train(tiny_config(), out, progress=False, log=None)
    pd.testing.assert_frame_equal(again, history, check_dtype=False)
    assert sorted(p.name for p in out.iterdir()) == before


def test_resumed_run_follows_the_uninterrupted_curve(tiny_run, tmp_path, tiny_config):
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


def test_same_seed_same_curve_other_seed_other_curve(tiny_run, tmp_path, tiny_config):
    _, history = tiny_run
    again = train.train(tiny_config(), tmp_path / "again", progress=False, log=None)
    pd.testing.assert_series_equal(again["loss"], history["loss"], check_exact=True)
    other = train.train(tiny_config(seed=1, steps=2), tmp_path / "seed1", progress=False, log=None)
    assert not np.array_equal(other["loss"].to_numpy(), history["loss"].to_numpy()[:2])


def test_refuses_to_resume_with_a_different_config(tiny_run, tiny_config):
    out, _ = tiny_run
    with pytest.raises(ValueError, match="width_multiplier"):
        train.train(tiny_config(width_multiplier=0.25), out, progress=False, log=None)


def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_config):
    # SGD at 1e12 blows the weights up within a few steps.
    config = tiny_config(optimizer="sgd", learning_rate=1e12, momentum=0.0, checkpoint_every=1,
                         val_every=100, steps=50)
    with pytest.raises(train.TrainingDiverged, match=r"(at|by) step \d+") as err:
        train.train(config, tmp_path / "nan", progress=False, log=None)
    bad_step = int(re.search(r"(?:at|by) step (\d+)", str(err.value)).group(1))
    latest = checkpoints.latest_checkpoint(tmp_path / "nan")
    if latest is not None:  # every kept checkpoint precedes the failure and is finite
        assert int(Path(latest).parent.name.split("-")[1]) < bad_step
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.isfinite(value).all(), name
