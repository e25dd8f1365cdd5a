"""The command line: help, exit codes, argument checks, real interruptions.

Resumption is tested the hard way: a training process is killed with SIGKILL
(no chance to clean up) and the same command is run again; another gets
SIGINT (Ctrl-C) and must save a checkpoint before it exits.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segnet_lib import (cells, checkpoints, cli, config, datasets, export, recipes, reference,
                        rle, rle_csv, sample_data, unet, voc)
from segnet_lib.cli import train as cli_train

# A run that takes seconds (see tests/test_train.py for the same idea).
TINY = ["--data", "sample", "--variant", "segnet", "--width-multiplier", "0.125",
        "--crop-size", "32", "--batch-size", "2", "--val-images", "2", "--log-every", "1",
        "--seed", "0", "--no-progress"]
REPO = Path(__file__).resolve().parents[1]


def exit_code(argv, capsys=None):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    return exc.value.code


def start(argv):
    """``python -m segnet_lib ARGV`` as a child process with its own output pipes."""
    return subprocess.Popen([sys.executable, "-m", "segnet_lib", *argv], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, process, timeout=300.0):
    """Polls ``condition()`` until true; fails if the process ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"the process ended early ({process.returncode}):\n{process.stdout.read()}")
        time.sleep(0.2)
    process.kill()
    pytest.fail("timed out waiting for the training process")


def checkpoint_steps(run):
    return [s for s, _ in checkpoints.checkpoint_dirs(run)]


# ---------------------------------------------------------------------------
# Help and argument checks
# ---------------------------------------------------------------------------

def test_train_help_explains_every_option(capsys):
    assert exit_code(["train", "--help"]) == 0
    text = capsys.readouterr().out
    parser = cli.build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    for action in train_parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings
            assert action.option_strings[0] in text
    for name, recipe in recipes.RECIPES.items():  # what each recipe sets, from the code
        assert name in text and recipes.describe(recipe()) in " ".join(text.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: frozen)" in text  # a real default is still shown


@pytest.mark.parametrize("command", [None, *cli.COMMANDS])
def test_every_help_documents_the_exit_codes(capsys, command):
    assert exit_code([command, "--help"] if command else ["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text
    for code, meaning in cli.EXIT_CODES.items():
        assert f"{code} {meaning}" in text


def test_predict_help_explains_every_option(capsys):
    assert exit_code(["predict", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--checkpoint", "--out", "--which", "--rle-order", "--mc-samples", "IMAGE"):
        assert flag in text


@pytest.mark.parametrize("parse, text, expected", [
    (cli.at_least(int, 1), "3", 3),
    (cli.at_least(float, 0), "0", 0.0),
    (cli.image_size, "320", (320, 320)),
    (cli.image_size, "320X480", (320, 480)),
    (cli.int_list, "0,1,7", (0, 1, 7)),
])
def test_shared_argument_types_accept(parse, text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("parse, text, message", [
    (cli.at_least(int, 1), "0", "must be >= 1, got 0"),
    (cli.at_least(float, 0), "-0.5", "must be >= 0, got -0.5"),
    (cli.at_least(float, 0), "nan", "must be >= 0, got nan"),  # NaN fails every comparison
    (cli.image_size, "0x32", "positive sizes"),
    (cli.image_size, "32x32x3", "positive sizes"),
    (cli.image_size, "big", "expected SIZE or HEIGHTxWIDTH, got 'big'"),
    (cli.int_list, "0,cat", "comma-separated integers, e.g. 0,1,7, got '0,cat'"),
])
def test_shared_argument_types_refuse_with_the_value(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse(text)


@pytest.mark.parametrize("command, extra, message", [
    ("sample-data", ["--num-train", "0"], "--num-train: must be >= 1, got 0"),
    ("study", ["--steps", "-2"], "--steps: must be >= 1, got -2"),
    ("evaluate", ["--checkpoint", "x", "--limit", "0"], "--limit: must be >= 1, got 0"),
])
def test_every_command_uses_the_shared_checks(capsys, command, extra, message):
    assert exit_code([command, *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--steps", "0"], "steps must be a positive integer, got 0"),
    (["--variant", "unet3d"], "invalid choice: 'unet3d'"),
    (["--variant", "unet", "--width-multiplier", "0"], "width_multiplier=0.0 must be > 0"),
    (["--data", "/no/such/folder"], "/no/such/folder"),
    (["--crop-size", "0x32"], "positive sizes"),
    (["--lr", "-1"], "learning_rate must be > 0, got -1.0"),
    (["--width-multiplier", "0"], "SegNetConfig.width_multiplier=0.0 must be > 0"),
    (["--min-scale", "2"], "need 0 < min_scale <= max_scale, got 2.0"),
    (["--lr", "0"], "learning_rate must be > 0, got 0.0"),
    (["--vgg16", "/no/such/weights.h5"], "--vgg16 /no/such/weights.h5: not found"),
])
def test_train_rejects_bad_arguments_before_any_work(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert exit_code(["train", *TINY, "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_train_refuses_a_run_folder_another_process_trains_in(tmp_path, capsys,
                                                              lock_held_elsewhere):
    out = tmp_path / "run"
    with lock_held_elsewhere(out):
        assert exit_code(["train", *TINY, "--out", str(out)]) == cli.EXIT_REFUSED
    assert "another process is training in" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [checkpoints.LOCK_FILE]


def test_train_rejects_a_csv_without_its_pixel_order(tmp_path, capsys):
    csv = sample_data.sample_root() / "train.csv"
    assert exit_code(["train", *TINY, "--data", str(csv), "--out", str(tmp_path / "r")]) == 2
    assert "--rle-order" in capsys.readouterr().err


def test_train_rejects_an_out_folder_with_another_config(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    saved = recipes.sample_recipe().replace(width_multiplier=0.125)
    (out / checkpoints.CONFIG_FILE).write_text(json.dumps(saved.to_dict()))
    assert exit_code(["train", "--out", str(out), "--lr", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and f"learning_rate: {saved.learning_rate} -> 0.5" in err
    assert sorted(p.name for p in out.iterdir()) == [checkpoints.CONFIG_FILE]


def test_rerun_with_only_out_uses_the_saved_config(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    saved = recipes.sample_recipe().replace(width_multiplier=0.125, steps=7, lr_schedule="constant")
    (out / checkpoints.CONFIG_FILE).write_text(json.dumps(saved.to_dict()))
    args = cli.build_parser().parse_args(["train", "--out", str(out), "--steps", "9"])
    assert cli_train.build_config(args) == saved.replace(steps=9)  # a longer run: allowed
    args = cli.build_parser().parse_args(["train", "--out", str(out), "--variant", "bayesian"])
    with pytest.raises(ValueError, match="variant: 'segnet' -> 'bayesian'"):
        cli_train.build_config(args)


def test_recipe_defaults_follow_the_data(tmp_path):
    args = cli.build_parser().parse_args(["train", "--out", str(tmp_path / "a")])
    assert cli_train.build_config(args) == recipes.sample_recipe()
    root = sample_data.sample_root()
    args = cli.build_parser().parse_args(["train", "--out", str(tmp_path / "b"), "--data", str(root)])
    config = cli_train.build_config(args)
    assert config == recipes.voc_gpu_recipe().replace(data=str(root.resolve()))


def test_predict_rejects_missing_images_and_checkpoints(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert exit_code(["predict", str(tmp_path / "nope.jpg"), "--checkpoint", "sample-segnet",
                      "--out", str(tmp_path / "o")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    assert exit_code(["predict", str(image), "--checkpoint", str(tmp_path / "no_run"),
                      "--out", str(tmp_path / "o")]) == 2
    assert "no_run" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------
# Interruptions, for real
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def killed_then_resumed(tmp_path_factory):
    """Trains, SIGKILLs the process after its second checkpoint, reruns the command."""
    out = tmp_path_factory.mktemp("cli") / "run"
    argv = ["train", *TINY, "--steps", "30", "--checkpoint-every", "3", "--val-every", "15",
            "--out", str(out)]
    process = start(argv)
    wait_for(lambda: len(checkpoint_steps(out)) >= 2, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    before = checkpoint_steps(out)
    rows_before = pd.read_csv(out / checkpoints.HISTORY_FILE)
    rerun = subprocess.run([sys.executable, "-m", "segnet_lib", *argv], cwd=REPO,
                           capture_output=True, text=True, timeout=600)
    return out, process.returncode, before, rows_before, rerun


def test_sigkill_then_rerun_resumes_from_the_last_checkpoint(killed_then_resumed):
    out, code, before, rows_before, rerun = killed_then_resumed
    assert code == -signal.SIGKILL
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    resumed_from = before[-1]
    assert 3 <= resumed_from < 30
    assert f"from step {resumed_from} of 30" in rerun.stdout
    history = checkpoints.read_history(out)
    assert history["step"].tolist() == list(range(1, 31))  # each step once, none lost
    # The rows up to the checkpoint are the ones written before the kill.
    kept = rows_before[rows_before.step <= resumed_from].reset_index(drop=True)
    pd.testing.assert_frame_equal(history.iloc[:len(kept)], kept, check_dtype=False)
    assert checkpoint_steps(out)[-1] == 30
    assert not list(out.glob(".ckpt-*"))  # no half-written checkpoint left behind
    assert "validation mean IoU" in rerun.stdout


def test_sigint_saves_a_checkpoint_then_exits(tmp_path):
    out = tmp_path / "run"
    process = start(["train", *TINY, "--steps", "100000", "--checkpoint-every", "100000",
                     "--val-every", "100000", "--out", str(out)])

    def some_steps_done():
        path = out / checkpoints.HISTORY_FILE
        try:
            return path.is_file() and len(pd.read_csv(path)) >= 3
        except (pd.errors.EmptyDataError, OSError):
            return False

    wait_for(some_steps_done, process)
    assert checkpoint_steps(out) == []
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    steps = checkpoint_steps(out)
    assert len(steps) == 1
    assert checkpoints.read_history(out)["step"].iloc[-1] == steps[0]
    assert f"at step {steps[0]}; checkpoint saved" in output


# ---------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------

def test_predict_writes_coloured_masks_and_an_rle_csv(killed_then_resumed, tmp_path, capsys):
    run = killed_then_resumed[0]
    val = datasets.VOCSegmentation(sample_data.sample_root(), "val")
    paths = [val.image_path(0), val.image_path(1)]
    out = tmp_path / "pred"
    assert cli.main(["predict", *map(str, paths), "--checkpoint", str(run), "--out", str(out),
                     "--rle-order", "F"]) == 0
    assert "Wrote 2 mask(s)" in capsys.readouterr().out
    with export.load_predictor(run) as predictor:
        expected = {p.stem: predictor.labels(voc.read_image(p)) for p in paths}
    for stem, labels in expected.items():
        png = np.asarray(Image.open(out / f"{stem}.png").convert("RGB"))
        np.testing.assert_array_equal(png, voc.colorize(labels))
    decoded = dict(rle_csv.iter_label_maps(out / "predictions.csv", order="F"))
    assert set(decoded) == set(expected)
    for stem, labels in expected.items():
        np.testing.assert_array_equal(decoded[stem], labels)


def test_export_writes_models_that_predict_alike(killed_then_resumed, tmp_path, capsys):
    run = killed_then_resumed[0]
    frozen, saved = tmp_path / "frozen", tmp_path / "saved"
    assert cli.main(["export", "--checkpoint", str(run), "--which", "latest",
                     "--out", str(frozen)]) == 0
    assert cli.main(["export", "--checkpoint", str(run), "--which", "latest",
                     "--format", "saved_model", "--out", str(saved)]) == 0
    assert f"exported (saved_model) to {saved}" in capsys.readouterr().out
    latest = os.path.relpath(checkpoints.latest_checkpoint(run), run)
    for folder in (frozen, saved):
        info = json.loads((folder / export.EXPORT_INFO_FILE).read_text())
        assert info["checkpoint"] == latest and info["step"] == 30
    assert (frozen / export.FROZEN_GRAPH_FILE).is_file() and (saved / "saved_model.pb").is_file()
    image = voc.read_image(datasets.VOCSegmentation(sample_data.sample_root(), "val").image_path(0))
    with export.load_predictor(frozen) as a, export.load_predictor(saved) as b:
        # Same weights; TensorFlow folds the frozen graph's constants (batch norm
        # into the convolutions), which changes float rounding, not the model.
        np.testing.assert_allclose(a.predict(image), b.predict(image), atol=1e-4)
    # A prediction through the command uses the export as given.
    assert cli.main(["predict", str(datasets.VOCSegmentation(sample_data.sample_root(), "val")
                                    .image_path(0)), "--checkpoint", str(saved),
                     "--out", str(tmp_path / "pred")]) == 0


def test_export_refuses_with_the_reason(killed_then_resumed, tmp_path, capsys):
    run = killed_then_resumed[0]
    assert exit_code(["export", "--checkpoint", str(tmp_path)]) == 2
    assert "not a training run folder" in capsys.readouterr().err
    # train exported to RUN/export already: a SavedModel may not overwrite it.
    assert exit_code(["export", "--checkpoint", str(run), "--format", "saved_model"]) == 2
    assert "a SavedModel needs a new folder" in capsys.readouterr().err
    assert exit_code(["export", "--checkpoint", str(run), "--which", str(run / "nope"),
                      "--out", str(tmp_path / "x")]) == 2
    assert "--which" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_mc_samples_on_a_non_bayesian_model_is_one_refusal_everywhere(killed_then_resumed,
                                                                         tmp_path, capsys):
    """The same refusal gets the same exit code in predict and evaluate (2, as documented)."""
    run = killed_then_resumed[0]
    image = sample_data.sample_root() / voc.IMAGE_DIR / "sample_00000.jpg"
    assert exit_code(["predict", str(image), "--checkpoint", str(run), "--out",
                      str(tmp_path / "p"), "--mc-samples", "4"]) == cli.EXIT_REFUSED
    predict_err = capsys.readouterr().err
    assert exit_code(["evaluate", "--checkpoint", str(run), "--data", "sample", "--limit", "1",
                      "--out", str(tmp_path / "e"), "--mc-samples", "4"]) == cli.EXIT_REFUSED
    evaluate_err = capsys.readouterr().err
    for err in (predict_err, evaluate_err):
        assert "--mc-samples: the 'segnet' model" in err and "bayesian" in err
    assert not (tmp_path / "p").exists() and not (tmp_path / "e").exists()


def test_evaluate_reads_the_csv_split_that_train_held_out(tmp_path, capsys):
    """`evaluate --data CSV` scores exactly the images the run validated on."""
    csv = sample_data.sample_root() / "train.csv"
    run = tmp_path / "run"
    assert cli.main(["train", *TINY, "--data", str(csv), "--rle-order", "C", "--val-fraction",
                     "0.0075", "--steps", "2", "--val-every", "2", "--val-images", "100",
                     "--export-format", "none", "--out", str(run)]) == 0
    capsys.readouterr()
    held_out = datasets.open_datasets(config.read_config(run))[1]
    assert cli.main(["evaluate", "--checkpoint", str(run), "--data", str(csv), "--no-boundary",
                     "--out", str(tmp_path / "eval")]) == 0
    per_image = pd.read_csv(tmp_path / "eval" / "per_image.csv", dtype={"image_id": str})
    # 0.75% of the 2,000 training scenes' ids.
    assert per_image["image_id"].tolist() == held_out.ids and len(held_out) == 15
    # The run's validation mean IoU (at its last step, on the same images) is what evaluate says.
    scored = json.loads((tmp_path / "eval" / "metrics.json").read_text())["summary"]["mean_iou"]
    assert scored == pytest.approx(checkpoints.read_history(run)["val_mean_iou"].iloc[-1], abs=1e-6)


def test_a_failure_during_the_work_exits_with_1(tmp_path, capsys):
    """A CSV whose rows do not decode is found only while working: exit 1, not a traceback."""
    images = tmp_path / voc.IMAGE_DIR
    images.mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (8, 6)).save(images / f"{name}.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,rle,width,height\na,1 2,8,6\nb,1 2,8,6\nc,40 99,8,6\n")
    status = cli.main(["train", *TINY, "--data", str(bad), "--rle-order", "C", "--val-fraction",
                       "0.3", "--steps", "2", "--out", str(tmp_path / "run")])
    assert status == cli.EXIT_FAILED
    assert "bad.csv, line 4 (id 'c')" in capsys.readouterr().err


def test_reference_lists_checks_and_refuses_unknown_names(tmp_path, capsys, monkeypatch):
    pending = reference.ReferenceRun("new-run", recipes.sample_recipe, "a run not shipped yet")
    monkeypatch.setattr(reference, "PENDING_RUNS", {"new-run": pending})
    assert cli.main(["reference", "--list"]) == cli.EXIT_OK
    listed = capsys.readouterr().out
    assert "sample-segnet" in listed and "sample-bayesian" in listed
    # Pending runs are listed, marked, and left out of --check with no names.
    assert "new-run" in listed and "a run not shipped yet [pending: not shipped yet]" in listed
    assert cli.main(["reference", "--list", "new-run"]) == cli.EXIT_OK
    assert capsys.readouterr().out.split() == ["new-run", *pending.description.split(), "[pending:",
                                               "not", "shipped", "yet]"]
    # An empty reference folder: every run is missing, named with its rebuild command.
    assert cli.main(["reference", "--check", "--out", str(tmp_path)]) == cli.EXIT_FAILED
    out = capsys.readouterr().out
    assert "sample-segnet: " in out and "make reference RUNS=sample-segnet" in out
    assert "new-run" not in out
    with pytest.raises(SystemExit) as refused:
        cli.main(["reference", "no-such-run"])
    assert refused.value.code == cli.EXIT_REFUSED
    assert "no reference run matches ['no-such-run']" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# A Sartorius download and the generated cells
# ---------------------------------------------------------------------------

def test_train_help_says_how_a_sartorius_csv_is_read(capsys):
    assert exit_code(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--class-column", "--overlap", "--rle-order"):
        assert flag in text
    assert "Sartorius train.csv header (id, annotation, width, height, cell_type, ...) means " \
           "row-major RLE (--rle-order C)" in text
    assert "background, shsy5y, astro, cort" in text and "{sample,cells,DIR,CSV}" in text


def test_cells_is_named_data_with_the_cpu_recipe(tmp_path, monkeypatch):
    monkeypatch.setattr(cells, "cells_root", lambda: pytest.fail("generated data"))
    args = cli.build_parser().parse_args(["train", "--out", str(tmp_path / "r"), "--data", "cells"])
    config = cli_train.build_config(args)
    # The cells recipe (not resolved to a path), with the CLI's default variant.
    assert config == recipes.cells_recipe("segnet")


def test_a_sartorius_download_trains_evaluates_and_predicts_by_cell_type(sartorius_copy, tmp_path,
                                                                         capsys):
    root, expected = sartorius_copy
    csv, run = root / cells.CSV_NAME, tmp_path / "run"
    # No --rle-order, no --class-column: the header says both.
    assert cli.main(["train", *TINY, "--data", str(csv), "--val-fraction", "0.25", "--steps", "2",
                     "--val-every", "2", "--val-images", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert checkpoints.read_class_weights(run)["classes"] == list(cells.CLASS_NAMES)
    saved = config.read_config(run)
    assert (saved.rle_order, saved.class_column, saved.overlap) == (None, None, "last")

    assert cli.main(["evaluate", "--checkpoint", str(run), "--data", str(csv), "--no-boundary",
                     "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["class_names"] == list(cells.CLASS_NAMES)
    held_out = datasets.open_datasets(saved)[1]
    present = {cells.CLASS_NAMES[c] for i in held_out.ids for c in np.unique(expected[i][1])}
    assert {row["class"] for row in report["per_class"]} == set(cells.CLASS_NAMES)
    for name in present:  # the table's rows are named by cell type
        assert re.search(rf"^{name}\s", printed, re.M), name

    image = root / "train" / f"{held_out.ids[0]}.png"
    out = tmp_path / "pred"
    assert cli.main(["predict", str(image), "--checkpoint", str(run), "--out", str(out),
                     "--submission"]) == 0
    printed = capsys.readouterr().out
    with export.load_predictor(run) as predictor:
        labels = predictor.labels(voc.read_image(image))
    names = [cells.CLASS_NAMES[c] for c in np.unique(labels)]
    assert f"{image.name}: {', '.join(names)}" in printed
    submission = pd.read_csv(out / "submission.csv", dtype=str, keep_default_na=False)
    assert list(submission.columns) == ["id", "predicted"]
    assert set(submission["id"]) == {image.stem}
    found, classes = cells.instance_map(labels)
    assert len(submission) == max(1, len(classes))
    rebuilt = np.zeros_like(labels)
    for k, (text, class_id) in enumerate(zip(submission["predicted"], classes), start=1):
        decoded = rle.decode(text, labels.shape, "C").astype(bool)
        np.testing.assert_array_equal(decoded, found == k)
        assert not rebuilt[decoded].any()  # instances never overlap
        rebuilt[decoded] = class_id
    np.testing.assert_array_equal(rebuilt, labels)


def test_a_unet_trains_on_a_sartorius_csv_and_segments_a_full_size_image(sartorius_copy,
                                                                           tmp_path, capsys):
    """The U-Net of main's builder and the cell reader meet through the one CLI: the run is a
    U-Net named by cell type, and a 520x704 image (520 = 16 x 32.5: odd sizes after the third
    pool) comes back at its own size."""
    root, expected = sartorius_copy
    csv, run = root / cells.CSV_NAME, tmp_path / "run"
    assert cli.main(["train", *TINY, "--variant", "unet", "--data", str(csv), "--val-fraction",
                     "0.25", "--steps", "1", "--val-every", "1", "--val-images", "1",
                     "--out", str(run)]) == 0
    capsys.readouterr()
    saved = config.read_config(run)
    assert saved.variant == "unet"
    assert saved.model_config() == unet.UNetConfig(base_features=8, weight_decay=saved.weight_decay)
    image_id = next(iter(expected))
    with export.load_predictor(run) as predictor:
        assert predictor.class_names == cells.CLASS_NAMES
        labels = predictor.labels(voc.read_image(root / "train" / f"{image_id}.png"))
    assert labels.shape == (520, 704) and labels.max() < len(cells.CLASS_NAMES)


def test_evaluate_refuses_a_model_whose_classes_are_other_ones(sartorius_copy, tmp_path, capsys):
    root, _ = sartorius_copy
    csv, run = root / cells.CSV_NAME, tmp_path / "run"
    assert cli.main(["train", *TINY, "--data", str(csv), "--val-fraction", "0.25", "--steps", "1",
                     "--val-every", "1", "--val-images", "1", "--export-format", "none",
                     "--out", str(run)]) == 0
    renamed = tmp_path / "renamed.csv"
    text = csv.read_text().replace("cell_type", "label")
    for old, new in (("shsy5y", "neuron"), ("astro", "glia"), ("cort", "other")):
        text = text.replace(f",{old},", f",{new},")
    renamed.write_text(text)  # four classes again, named otherwise (and sorted)
    capsys.readouterr()
    assert exit_code(["evaluate", "--checkpoint", str(run), "--data", str(renamed),
                      "--rle-order", "C", "--image-dir", str(root / "train"),
                      "--out", str(tmp_path / "e")]) == cli.EXIT_REFUSED
    assert "class 1 is 'shsy5y' for the model, 'glia' in the data" in capsys.readouterr().err
