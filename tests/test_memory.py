"""segnet_lib.memory: peak memory of inference and training, measured in child processes.

The measurements here are small (128x128, a narrow U-Net): each child takes a
few seconds, mostly TensorFlow's import. What they check holds on any
machine: the bookkeeping, a training step at batch 4 needing more than
inference at batch 1, and at least the encoder maps a training step must keep.
"""
import json
import resource
import sys

import numpy as np
import pytest

from segnet_lib import memory, model, study, unet

NARROW = unet.UNetConfig(base_features=8, depth=3)


def test_configs_travel_as_json():
    for config in (NARROW, model.SegNetConfig(variant="segnet_basic", decoder="unet")):
        text = json.dumps(memory.config_to_dict(config))
        assert memory.config_from_dict(json.loads(text)) == config
    with pytest.raises(ValueError, match="UNetConfig"):
        memory.config_to_dict({"depth": 4})
    with pytest.raises(ValueError, match="unknown model config type 'VGG'"):
        memory.config_from_dict({"type": "VGG", "fields": {}})
    with pytest.raises(ValueError, match="UNetConfig.depth"):
        memory.config_from_dict({"type": "UNetConfig", "fields": {"depth": 0}})


@pytest.mark.parametrize("kwargs, word", [
    (dict(mode="eval"), "mode"), (dict(batch_size=0), "batch_size"),
    (dict(image_size=(32, 0)), "image width"), (dict(steps=1.5), "steps"),
])
def test_bad_arguments_are_refused_before_any_child_starts(kwargs, word, monkeypatch):
    def no_child(*args, **kw):
        raise AssertionError("a child was started")
    monkeypatch.setattr(memory.subprocess, "run", no_child)
    with pytest.raises(ValueError, match=word):
        memory.measure_memory(NARROW, 3, **{"image_size": (32, 32), **kwargs})


@pytest.fixture(scope="module")
def measured():
    table = memory.memory_table({"unet": NARROW}, num_classes=5, image_size=(128, 128),
                                batch_sizes=(1, 4), modes=("inference", "train"))
    return table


def test_memory_table_measures_each_mode_and_batch(measured):
    table = measured
    assert list(table.columns) == ["model", "mode", "batch_size", *memory.MEMORY_COLUMNS[2:]]
    assert len(table) == 4 and set(table["model"]) == {"unet"}
    assert (table["height"] == 128).all() and (table["width"] == 128).all()
    assert (table["params"] == study.measure_model(NARROW, 5, (8, 8))["params"]).all()
    assert ((table["peak_rss_bytes"] >= table["base_rss_bytes"]) & (table["base_rss_bytes"] > 0)).all()
    assert (table["run_bytes"] == table["peak_rss_bytes"] - table["base_rss_bytes"]).all()
    assert (table["seconds"] > table["step_seconds"]).all() and (table["step_seconds"] > 0).all()


def test_a_training_step_needs_more_than_inference(measured):
    measured = measured.set_index(["mode", "batch_size"])
    inference = measured.loc[("inference", 1), "run_bytes"]
    training = measured.loc[("train", 4), "run_bytes"]
    assert training > 2 * inference
    # Back-propagation keeps at least the encoder maps of each of the 4 images.
    kept = study.measure_model(NARROW, 5, (128, 128))["feature_bytes"]
    assert training > 4 * kept
    assert measured.loc[("train", 4), "peak_rss_bytes"] > measured.loc[("inference", 1),
                                                                       "peak_rss_bytes"]


@pytest.mark.skipif(sys.platform != "linux", reason="the parent's ru_maxrss in kB, VmHWM: Linux")
def test_a_large_parent_does_not_inflate_the_child_s_peak():
    # A child started by vfork + exec inherits its parent's high-water mark in
    # ru_maxrss; the measurement must read the child's own address space.
    hog = np.ones(2 ** 30 // 8)  # 1 GiB, touched
    parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    measured = memory.measure_memory(NARROW, 3, (32, 32))
    del hog
    assert measured["peak_rss_bytes"] < parent_peak - 2 ** 29


def test_a_failing_child_is_reported_with_its_error(monkeypatch):
    monkeypatch.setattr(memory, "config_to_dict", lambda config: {"type": "VGG", "fields": {}})
    with pytest.raises(RuntimeError, match=r"(?s)exited with status 1.*unknown model config type"):
        memory.measure_memory(NARROW, 3, (32, 32))


def test_main_needs_one_argument(capsys):
    assert memory.main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_run_measurement_in_this_process_reports_the_fields():
    spec = {"config": memory.config_to_dict(NARROW), "num_classes": 3, "image_size": [32, 32],
            "batch_size": 1, "mode": "inference", "steps": 2}
    result = memory.run_measurement(spec)
    assert set(result) == {"params", "base_rss_bytes", "peak_rss_bytes", "run_bytes",
                           "step_seconds"}
    assert result["params"] == study.measure_model(NARROW, 3, (8, 8))["params"]
    assert result["peak_rss_bytes"] >= result["base_rss_bytes"] > 0
