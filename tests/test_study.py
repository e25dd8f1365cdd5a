"""segnet_lib.study and `python -m segnet_lib study`: the decoder study.

The stored-state tests check :func:`study.decoder_state` against byte counts
worked out here from the pooled sizes (ceil halving), and on a hand-made graph.
The end-to-end test trains two decoders of a very narrow SegNet-Basic for two
steps on 32x32 crops: it checks the bookkeeping, not what the models learn.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segnet_lib import (checkpoints, cli, config, datasets, export, metrics, model, recipes,
                        reference, study, unet)
from segnet_lib._tf import tf


def pooled_sizes(height, width, stages):
    """(h, w) after each 2x2/2 'SAME' pool: ceil halving."""
    sizes = []
    for _ in range(stages):
        height, width = -(-height // 2), -(-width // 2)
        sizes.append((height, width))
    return sizes


def _state(decoder, size=(45, 62), width=0.25, num_classes=5):
    config = model.SegNetConfig(variant="segnet_basic", decoder=decoder, width_multiplier=width)
    return study.measure_model(config, num_classes, size)


# ---------------------------------------------------------------------------
# Stored state
# ---------------------------------------------------------------------------

def test_unpool_keeps_int64_indices_of_every_pool():
    m = _state("unpool")
    state = m["state"]
    sizes = pooled_sizes(45, 62, 4)  # (23, 31), (12, 16), (6, 8), (3, 4)
    elements = [h * w * 16 for h, w in sizes]  # width 0.25: 16 features
    assert sorted(state["tensor"]) == [f"segnet/pool{s}:1" for s in range(1, 5)]
    assert set(state["kind"]) == {"indices"} and set(state["dtype"]) == {"int64"}
    assert sorted(state["elements"]) == sorted(elements)
    assert m["state_bytes"] == m["index_bytes"] == 8 * sum(elements)
    # 2 bits per index (4 positions in a 2x2 window), rounded up to bytes per tensor.
    assert m["state_bytes_2bit"] == sum(-(-2 * n // 8) for n in elements)
    assert m["feature_bytes"] == 0


def test_fcn_basic_keeps_class_scores_of_the_shallower_pools():
    m = _state("deconv_add", num_classes=5)
    state = m["state"]
    sizes = pooled_sizes(45, 62, 3)  # pool1..pool3 outputs, scored into 5 classes
    assert sorted(state["tensor"]) == [f"segnet/score_pool{s}/BiasAdd:0" for s in (1, 2, 3)]
    assert set(state["kind"]) == {"features"} and set(state["dtype"]) == {"float32"}
    assert sorted(state["shape"]) == sorted((1, h, w, 5) for h, w in sizes)
    expected = 4 * 5 * sum(h * w for h, w in sizes)
    assert m["state_bytes"] == m["state_bytes_2bit"] == m["feature_bytes"] == expected


@pytest.mark.parametrize("decoder", ["deconv", "bilinear"])
def test_decoders_without_addition_keep_nothing(decoder):
    m = _state(decoder)
    assert len(m["state"]) == 0 and m["state_bytes"] == m["state_bytes_2bit"] == 0


def test_unet_keeps_every_encoder_map_before_its_pool_in_float32():
    """The store-everything end: U-Net's state is its whole contracting path."""
    m = study.measure_model(unet.UNetConfig(base_features=4, depth=3), 5, (45, 62))
    state = m["state"]
    sizes = [(45, 62)] + pooled_sizes(45, 62, 2)  # the pre-pool size of stages 1, 2, 3
    assert sorted(state["tensor"]) == [f"unet/conv{s}_2/Relu:0" for s in (1, 2, 3)]
    assert set(state["kind"]) == {"features"} and set(state["dtype"]) == {"float32"}
    assert sorted(state["shape"]) == sorted((1, h, w, 4 * 2 ** s) for s, (h, w) in enumerate(sizes))
    expected = 4 * sum(h * w * 4 * 2 ** s for s, (h, w) in enumerate(sizes))
    assert m["state_bytes"] == m["state_bytes_2bit"] == m["feature_bytes"] == expected
    assert m["index_bytes"] == 0
    # Decoder: 3 upconvs (2x2, bias), 3 stages of two 3x3 convs with batch norm, the classifier.
    decoder = sum(4 * 2 * f * f + f + 9 * 2 * f * f + 2 * f + 9 * f * f + 2 * f for f in (4, 8, 16))
    assert m["decoder_params"] == decoder + 4 * 5 + 5


def test_unet_decoder_on_segnet_basic_keeps_the_full_encoder_maps():
    m = _state("unet")
    sizes = [(45, 62)] + pooled_sizes(45, 62, 3)  # the pre-pool maps: conv1 .. conv4
    state = m["state"]
    assert sorted(state["tensor"]) == [f"segnet/conv{s}/Relu:0" for s in range(1, 5)]
    assert set(state["kind"]) == {"features"} and set(state["dtype"]) == {"float32"}
    assert m["state_bytes"] == m["state_bytes_2bit"] == 4 * 16 * sum(h * w for h, w in sizes)
    # The same pre-pool maps hold 4x the pooled elements SegNet keeps indices of
    # (at these sizes with odd edges, a little less), at 32 bits instead of 2.
    indices = _state("unpool")["state"]["elements"].sum()
    assert 3.5 * indices < state["elements"].sum() <= 4 * indices


def test_memory_at_the_papers_size_reproduces_its_megabytes():
    # 360x480, 64 features, 11 classes: FCN-Basic's first stored map is the
    # paper's "~1.9MB" (180x240x11 float32); SegNet-Basic's 2-bit indices of
    # pool1 are 180*240*64*2 bits.
    fcn = study.measure_model(model.SegNetConfig(variant="segnet_basic", decoder="deconv_add"),
                              11, (360, 480))
    first = fcn["state"].set_index("tensor").loc["segnet/score_pool1/BiasAdd:0", "bytes"]
    assert first == 180 * 240 * 11 * 4 == 1_900_800
    seg = study.measure_model(model.SegNetConfig(variant="segnet_basic"), 11, (360, 480))
    pool1 = seg["state"].set_index("tensor").loc["segnet/pool1:1"]
    assert pool1["bytes_2bit"] == 180 * 240 * 64 * 2 // 8 and pool1["bytes"] == 180 * 240 * 64 * 8


def test_decoder_state_on_a_hand_made_graph():
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [1, 4, 6, 3])
        weight = tf.get_variable("w", [3], initializer=tf.ones_initializer())
        kept = tf.identity(images * 2.0, name="kept")           # image-dependent, before
        unused = tf.identity(images * 3.0, name="unused")       # never read by the decoder
        encoder_output = tf.reduce_mean(images * weight, axis=[1, 2], keepdims=True, name="enc")
        indices = tf.cast(tf.argmax(images, axis=-1), tf.int32)[..., None]
        # The decoder reads the integer map itself (as unpooling reads indices).
        placed = tf.cast(tf.cast(encoder_output, tf.int32) + indices, tf.float32)
        logits = tf.add(encoder_output * weight + kept, placed, name="logits")
        table = study.decoder_state(images, encoder_output, logits).set_index("tensor")
    assert unused.name not in table.index
    assert set(table.index) == {"kept:0", indices.name}  # not the weight, not the encoder output
    assert table.loc["kept:0", "bytes"] == 4 * 6 * 3 * 4
    assert table.loc[indices.name, "kind"] == "indices"
    assert table.loc[indices.name, "bytes_2bit"] == -(-2 * 24 // 8)


def test_decoder_state_needs_known_shapes():
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 4, 6, 3])
        side = images * 2.0
        encoder_output = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        logits = encoder_output + side
        with pytest.raises(ValueError, match="fully known shape"):
            study.decoder_state(images, encoder_output, logits)


def test_bottleneck_is_the_last_pool_or_its_dropout():
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [1, 32, 32, 3])
        _, points = model.segnet(images, 3, False, model.SegNetConfig(variant="segnet_basic",
                                                                      width_multiplier=0.125))
        assert study.bottleneck(points) is points["pool4"]
        _, points = model.segnet(images, 3, False, model.SegNetConfig(variant="bayesian",
                                                                      width_multiplier=0.125),
                                 scope="bayes")
        assert study.bottleneck(points) is points["pool5_dropout"]
    with pytest.raises(ValueError, match="pool"):
        study.bottleneck({"conv1": None})


def test_measure_model_counts_parameters_and_decoder_parameters():
    m = _state("bilinear", width=0.25, num_classes=5)
    encoder = 49 * 3 * 16 + 3 * 49 * 16 * 16 + 4 * 2 * 16
    assert m["decoder_params"] == 16 * 5 + 5  # only the 1x1 scoring is learned
    assert m["params"] == encoder + m["decoder_params"]
    assert _state("unpool")["params"] - _state("unpool")["decoder_params"] == encoder


# ---------------------------------------------------------------------------
# Timing, paper table
# ---------------------------------------------------------------------------

def test_time_per_image_interleaves_and_counts_calls():
    calls = []
    fns = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    result = study.time_per_image(fns, np.zeros((2, 2, 3), np.uint8), repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4  # one call of each per round
    assert set(result) == {"a", "b"} and all(v >= 0 for v in result.values())
    with pytest.raises(ValueError, match="repeats"):
        study.time_per_image(fns, None, repeats=0)


def test_paper_table_has_the_studied_variants():
    table = study.PAPER_TABLE1
    for decoder, name in study.PAPER_NAMES.items():
        # U-Net is discussed in the paper but not in its Table 1.
        assert decoder in model.DECODERS and (name in table.index) == (decoder != "unet")
    assert table.loc["SegNet-Basic", "test_mean_iou"] == 47.7
    assert table.loc["FCN-Basic", "storage_multiplier"] == 11
    assert np.isnan(table.loc["FCN-Basic-NoAddition", "storage_multiplier"])
    accuracies = table.filter(like="test_").to_numpy()
    assert ((accuracies > 0) & (accuracies < 100)).all()
    assert list(study.PAPER_TABLE1_NATURAL.index) == list(table.index)


# ---------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------

def tiny_recipe(**changes):
    config = recipes.study_recipe("cpu").replace(
        width_multiplier=0.125, crop_size=(32, 32), batch_size=2, steps=2, val_every=2,
        checkpoint_every=2, val_images=2, log_every=1)
    return config.replace(**changes)


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    table = study.run_study(tiny_recipe(), out, decoders=("unpool", "bilinear"), eval_limit=3,
                            timing_repeats=1, log=None)
    return out, table


def test_run_study_table_and_csv(tiny_study):
    out, table = tiny_study
    assert list(table.index) == ["unpool", "bilinear"]
    assert list(table.columns) == list(study.RESULT_COLUMNS)
    assert table.loc["unpool", "paper_name"] == "SegNet-Basic"
    for column in ("global_accuracy", "class_accuracy", "mean_iou", "boundary_f1"):
        assert table[column].between(0, 1).all()
    assert (table["ms_per_image"] > 0).all() and (table["train_seconds"] > 0).all()
    assert table.loc["bilinear", "state_bytes"] == 0 < table.loc["unpool", "state_bytes"]
    # The parameters are those of the model each run trained.
    for decoder in table.index:
        run = config.read_config(out / decoder)
        assert run.model_options["decoder"] == decoder
        assert table.loc[decoder, "params"] == study.measure_model(
            run.model_config(), len(run.classes), (8, 8))["params"]
    back = pd.read_csv(out / study.RESULTS_FILE, index_col="decoder")
    pd.testing.assert_frame_equal(back, table, check_dtype=False, check_exact=False, rtol=1e-9)
    info = json.loads((out / study.STUDY_FILE).read_text())
    assert info["decoders"] == ["unpool", "bilinear"] and info["eval_images"] == 3


def test_run_study_scores_match_a_separate_evaluation(tiny_study):
    out, table = tiny_study
    _, val_set = datasets.open_datasets(tiny_recipe())
    with export.load_predictor(out / "bilinear", checkpoint="latest") as predictor:
        scores = metrics.evaluate_dataset(predictor.predict, val_set, limit=3).scores()
    assert table.loc["bilinear", "mean_iou"] == pytest.approx(scores["mean_iou"])
    assert table.loc["bilinear", "boundary_f1"] == pytest.approx(scores["boundary_f1"])


def test_run_study_reuses_finished_runs(tiny_study):
    out, table = tiny_study
    checkpoint = checkpoints.latest_checkpoint(out / "unpool")
    stamp = (Path(checkpoint + ".index")).stat().st_mtime_ns
    again = study.run_study(tiny_recipe(), out, decoders=("unpool",), eval_limit=3,
                            timing_repeats=1, log=None)
    # No training step ran: the same single checkpoint, untouched.
    assert checkpoints.latest_checkpoint(out / "unpool") == checkpoint
    assert Path(checkpoint + ".index").stat().st_mtime_ns == stamp
    assert again.loc["unpool", "mean_iou"] == table.loc["unpool", "mean_iou"]


def test_run_study_refuses_unknown_decoders(tmp_path):
    with pytest.raises(ValueError, match="decoders"):
        study.run_study(tiny_recipe(), tmp_path, decoders=("unpool", "upsample"), log=None)
    with pytest.raises(ValueError, match="decoders"):
        study.run_study(tiny_recipe(), tmp_path, decoders=(), log=None)


def test_paper_comparison_puts_percentages_side_by_side(tiny_study):
    _, table = tiny_study
    both = study.paper_comparison(table)
    assert both.loc["unpool", "mIoU (paper)"] == 47.7
    assert both.loc["unpool", "mIoU (ours)"] == pytest.approx(100 * table.loc["unpool", "mean_iou"])
    assert both.loc["bilinear", "variant (paper)"] == "Bilinear-Interpolation"


def test_study_directory_names_the_recipe():
    a = study.study_dir(tiny_recipe())
    assert a == study.study_dir(tiny_recipe())
    assert a != study.study_dir(tiny_recipe(steps=3))
    assert a != study.study_dir(tiny_recipe(), decoders=("unpool",))


def test_score_runs_and_curves_of_trained_runs(tiny_study):
    out, table = tiny_study
    runs = {("unpool", 0): out / "unpool", ("bilinear", 0): out / "bilinear"}
    _, val_set = datasets.open_datasets(tiny_recipe())
    small = [val_set[i] for i in range(3)]
    small_set = type("Small", (list,), {"num_classes": val_set.num_classes})(small)
    scores = study.score_runs(runs, small_set)
    assert list(scores.index) == [("unpool", 0), ("bilinear", 0)]
    assert list(scores.columns) == [*study.MEASURES, "min_class_pixels"]
    with export.load_predictor(out / "bilinear") as predictor:
        expected = metrics.evaluate_dataset(predictor.predict, small_set).scores()
    assert scores.loc[("bilinear", 0), "mIoU"] == pytest.approx(expected["mean_iou"])
    assert scores.loc[("bilinear", 0), "BF"] == pytest.approx(expected["boundary_f1"])
    curve = study.curves(runs)
    assert list(curve.columns) == ["decoder", "seed", "step", "val_mean_iou", "val_loss"]
    assert set(curve["decoder"]) == {"unpool", "bilinear"} and (curve["step"] == 2).all()


def test_study_runs_finds_the_shipped_runs_or_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv(reference.REFERENCE_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make reference RUNS=study/unet-seed1"):
        study.study_runs(decoders=("unet",), seeds=(1,))
    (tmp_path / "study" / "unet-seed1").mkdir(parents=True)
    (tmp_path / "study" / "unet-seed1" / reference.MANIFEST_FILE).write_text("{}")
    assert study.study_runs(decoders=("unet",), seeds=(1,)) == {
        ("unet", 1): tmp_path / "study" / "unet-seed1"}


def _scores(values):
    rows = [(d, s, *v) for d, per_seed in values.items() for s, v in enumerate(per_seed)]
    frame = pd.DataFrame(rows, columns=["decoder", "seed", *study.MEASURES])
    return frame.set_index(["decoder", "seed"])


def test_summarise_gives_mean_and_spread_over_seeds():
    scores = _scores({"b": [(0.9, 0.5, 0.4, 0.2), (0.8, 0.7, 0.6, 0.2)],
                      "a": [(0.5, 0.5, 0.5, 0.5), (0.5, 0.5, 0.5, 0.5)]})
    summary = study.summarise(scores)
    assert list(summary.index) == ["b", "a"]  # the order of the scores, not sorted
    assert summary.loc["b", ("G", "mean")] == pytest.approx(0.85)
    assert summary.loc["b", ("mIoU", "spread")] == pytest.approx(0.2)
    assert summary.loc["a", ("BF", "spread")] == 0 and summary.loc["a", "seeds"].item() == 2


def test_compare_calls_a_difference_within_the_spread_a_tie():
    scores = _scores({"x": [(0.80, 0, 0, 0), (0.84, 0, 0, 0)],    # mean 0.82, spread 0.04
                      "y": [(0.79, 0, 0, 0), (0.79, 0, 0, 0)],    # mean 0.79, spread 0
                      "z": [(0.70, 0, 0, 0), (0.72, 0, 0, 0)]})   # mean 0.71, spread 0.02
    summary = study.summarise(scores)
    tie = study.compare(summary, "x", "y", "G")
    assert tie["verdict"] == "tie" and tie["difference"] == pytest.approx(0.03)
    assert tie["spread"] == pytest.approx(0.04) and tie["margin"] == pytest.approx(0.01)
    assert study.compare(summary, "x", "z", "G")["verdict"] == "higher"
    assert study.compare(summary, "z", "y", "G")["verdict"] == "lower"
    assert "larger of the two" in study.TIE_RULE


def test_storage_readings_give_the_papers_multipliers_only_for_pre_pool_maps():
    table = study.storage_readings()
    pooled, pre_pool = table.loc["pooled maps"], table.loc["pre-pool maps"]
    assert (pooled["multiplier"]["SegNet-Basic"], pre_pool["multiplier"]["SegNet-Basic"]) == (1, 1)
    assert pooled.loc["FCN-Basic", "multiplier"] == pytest.approx(2.75)
    # The paper's 1.9 MB is FCN-Basic's pooled map: 180 x 240 x 11 float32.
    assert pooled.loc["FCN-Basic", "megabytes"] == pytest.approx(180 * 240 * 11 * 4 / 1e6)
    assert pooled.loc["SegNet-Basic", "megabytes"] == pytest.approx(180 * 240 * 64 * 2 / 8 / 1e6)
    assert (pre_pool["multiplier"] == pre_pool["paper_multiplier"]).all()
    assert (pooled["multiplier"] != pooled["paper_multiplier"]).sum() == 3
    assert "/ 32 = 11" in pre_pool.loc["FCN-Basic", "arithmetic"]


def test_measure_memory_table_runs_each_decoder_in_a_child(monkeypatch):
    table = study.measure_memory_table(("bilinear", "unpool"), image_size=(32, 32),
                                       batch_sizes=(1,))
    assert list(table["model"]) == ["bilinear", "bilinear", "unpool", "unpool"]
    assert list(table["mode"]) == ["inference", "train"] * 2
    assert (table["peak_rss_bytes"] > table["base_rss_bytes"]).all()
    assert (table.loc[table["model"] == "bilinear", "state_bytes"] == 0).all()
    assert (table.loc[table["model"] == "unpool", "state_bytes"] > 0).all()
    assert table["params"].iloc[0] == study.measure_model(
        study.paper_model_config("bilinear"), 11, (32, 32))["params"]


def test_read_memory_table_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="study --memory"):
        study.read_memory_table(tmp_path)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def test_cli_study_memory_writes_the_table_where_the_notebook_reads_it(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setenv(reference.REFERENCE_ENV, str(tmp_path))
    calls = []

    def fake(decoders, log=None):
        calls.append(decoders)
        return pd.DataFrame({"model": list(decoders), "peak_rss_bytes": [1] * len(decoders)})

    monkeypatch.setattr(study, "measure_memory_table", fake)
    assert cli.main(["study", "--memory", "--decoders", "unpool,unet"]) == 0
    assert calls == [("unpool", "unet")]
    assert list(study.read_memory_table()["model"]) == ["unpool", "unet"]
    assert str(study.memory_path()) in capsys.readouterr().out

def test_cli_study_writes_the_csv(tmp_path, capsys):
    status = cli.main(["study", "--out", str(tmp_path), "--decoders", "deconv", "--steps", "2",
                       "--width", "0.125", "--crop", "32", "--batch-size", "2",
                       "--eval-limit", "2", "--timing-repeats", "1"])
    assert status == 0
    table = pd.read_csv(tmp_path / study.RESULTS_FILE, index_col="decoder")
    assert list(table.index) == ["deconv"]
    printed = capsys.readouterr().out
    assert "FCN-Basic-NoAddition" in printed and "results.csv" in printed


def test_cli_study_rejects_bad_decoders(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["study", "--out", str(tmp_path), "--decoders", "unpool,upsample"])
    assert exit_info.value.code == 2
    assert "upsample" in capsys.readouterr().err
