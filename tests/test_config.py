"""segnet_lib.config: TrainConfig's checks, JSON round trip, fingerprint, run folder checks."""
import dataclasses
import hashlib
import json

import pytest

from segnet_lib import checkpoints, config, data, model, unet


# Fields the mixed-precision / data-parallel options added after runs were shipped.
SCALE_FIELDS = ("precision", "xla", "gpus", "workers", "worker_index")


@pytest.mark.parametrize("changes, word", [
    (dict(steps=0), "steps"), (dict(variant="unet3d"), "variant"),
    (dict(optimizer="rmsprop"), "optimizer"),
    (dict(learning_rate=-1.0), "learning_rate"), (dict(crop_size=(0, 32)), "crop_size"),
    (dict(model_options={"no_such_field": 1}), "no_such_field"), (dict(rle_order="X"), "rle_order"),
    (dict(batch_size=2.5), "batch_size"), (dict(overlap="max"), "overlap"),
    (dict(precision="float8"), "precision"), (dict(gpus=0), "gpus"),
    (dict(worker_index=-1), "worker_index"), (dict(workers=" "), "workers"),
])
def test_config_rejects_bad_values(tiny_config, changes, word):
    with pytest.raises(ValueError, match=word):
        tiny_config(**changes)


@pytest.mark.parametrize("changes, owner", [
    (dict(width_multiplier=0), model.SegNetConfig), (dict(dropout_rate=1.0), model.SegNetConfig),
    (dict(weight_decay=-1.0), model.SegNetConfig),
    (dict(model_options={"upsample_kernel": 3}), model.SegNetConfig),
    (dict(min_scale=2.0), data.InputConfig), (dict(crop_size=(0, 32)), data.InputConfig),
    (dict(batch_size=0), data.InputConfig),
])
def test_model_and_input_fields_are_checked_by_their_own_configs(tiny_config, changes, owner):
    """TrainConfig passes these fields on; the config that uses them says what is wrong."""
    base = tiny_config()
    with pytest.raises(ValueError) as from_train:
        tiny_config(**changes)
    if owner is model.SegNetConfig:
        values = {k: getattr(base, k) for k in ("variant", "width_multiplier", "dropout_rate",
                                                "weight_decay")}
        values.update({k: v for k, v in changes.items() if k != "model_options"},
                      **changes.get("model_options", {}))
    else:
        values = {k: getattr(base, k) for k in ("crop_size", "batch_size", "min_scale", "max_scale")}
        values.update(changes)
    with pytest.raises(ValueError) as from_owner:
        owner(**values)
    assert str(from_train.value) == f"TrainConfig: {from_owner.value}"


def test_unet_variant_gives_a_unet_config(tiny_config):
    run = tiny_config(variant="unet", width_multiplier=0.25, weight_decay=1e-4,
                      model_options={"depth": 3, "batch_norm": False})
    assert run.model_config() == unet.UNetConfig(depth=3, base_features=16, batch_norm=False,
                                                 weight_decay=1e-4)
    # The width scales the base features, given or default.
    assert tiny_config(variant="unet", width_multiplier=0.5,
                       model_options={"base_features": 32}).model_config().base_features == 16
    assert tiny_config(variant="unet", width_multiplier=1.0).model_config() == unet.UNetConfig(
        weight_decay=tiny_config().weight_decay)
    again = config.TrainConfig.from_dict(json.loads(json.dumps(run.to_dict())))
    assert again == run and again.model_config() == run.model_config()


@pytest.mark.parametrize("changes, message", [
    (dict(model_options={"decoder": "unpool"}), r"model_options has unknown UNetConfig fields \['decoder'\]"),
    (dict(model_options={"depth": 0}), "UNetConfig.depth=0"),
    (dict(model_options={"base_features": 2.5}), "UNetConfig.base_features=2.5"),
    (dict(width_multiplier=0.0), "width_multiplier=0.0 must be > 0"),
])
def test_unet_options_are_checked(tiny_config, changes, message):
    with pytest.raises(ValueError, match=f"^TrainConfig: {message}"):
        tiny_config(variant="unet", **changes)


def test_config_round_trips_through_json(tiny_config):
    run = tiny_config(model_options={"batch_norm_decay": 0.95}, resize_to=(64, 48))
    again = config.TrainConfig.from_dict(json.loads(json.dumps(run.to_dict())))
    assert again == run
    assert again.model_config().batch_norm_decay == 0.95
    assert again.fingerprint() == run.fingerprint()
    assert run.replace(log_every=5).fingerprint() == run.fingerprint()
    assert run.replace(seed=1).fingerprint() != run.fingerprint()
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields \['colour'\]"):
        config.TrainConfig.from_dict({**run.to_dict(), "colour": "red"})


def test_a_config_saved_before_the_csv_fields_existed_still_reads(tmp_path, tiny_config):
    """Runs saved without class_column/overlap resume with their defaults (the old behaviour
    for everything but overlapping CSV rows, which used to be an error)."""
    old = {k: v for k, v in tiny_config().to_dict().items()
           if k not in ("class_column", "overlap", *SCALE_FIELDS)}
    (tmp_path / checkpoints.CONFIG_FILE).write_text(json.dumps(old))
    run = config.read_config(tmp_path)
    assert (run.class_column, run.overlap) == (None, "last") and run == tiny_config()
    # Its fingerprint is the one computed before the fields existed (shipped runs stay current)...
    before = {k: v for k, v in old.items()
              if k not in config.RESUMABLE_FIELDS and k != "classes"}  # classes: a later field too
    before["steps"] = run.steps
    text = json.dumps(before, sort_keys=True)
    assert run.fingerprint() == hashlib.sha256(text.encode()).hexdigest()[:10]
    # ... and setting them is a different run.
    assert run.replace(overlap="error").fingerprint() != run.fingerprint()
    assert run.replace(class_column="label").fingerprint() != run.fingerprint()


def test_write_and_read_config(tmp_path, tiny_config):
    run = tiny_config(seed=3)
    config.write_config(run, tmp_path)
    assert config.read_config(tmp_path) == run
    (tmp_path / checkpoints.CONFIG_FILE).write_text('{"steps": "many"')
    with pytest.raises(ValueError, match="is not a valid training config"):
        config.read_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        config.read_config(tmp_path / "nothing")


def test_every_field_documents_itself_once():
    """The help of each field is in its metadata, used by the CLI and the docstring."""
    fields = dataclasses.fields(config.TrainConfig)
    flags = [f.metadata["flag"] or f"--{f.name.replace('_', '-')}" for f in fields
             if f.metadata["flag"] != ""]
    assert len(flags) == len(set(flags)) == len(fields) - 1  # all but model_options
    for field in fields:
        assert len(field.metadata["help"]) > 10, field.name
        assert f"        {field.name}: {field.metadata['help'][:30]}" in \
            config.TrainConfig.__doc__.replace("\n            ", " "), field.name
    by_name = {f.name: f for f in fields}
    assert by_name["variant"].metadata["choices"] == config.MODEL_VARIANTS
    assert config.MODEL_VARIANTS == model.VARIANTS + ("unet",)
    assert by_name["optimizer"].metadata["choices"] == config.OPTIMIZERS


def test_check_run_dir(tmp_path, tiny_config):
    run = tiny_config()
    assert config.check_run_dir(run, tmp_path / "new") is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / checkpoints.CONFIG_FILE).write_text(json.dumps(run.to_dict()))
    assert config.check_run_dir(run.replace(steps=60, val_every=7), tmp_path / "run") == run
    with pytest.raises(ValueError, match="learning_rate: 0.001 -> 0.01"):
        config.check_run_dir(run.replace(learning_rate=0.01), tmp_path / "run")
    poly = run.replace(lr_schedule="poly")
    (tmp_path / "run" / checkpoints.CONFIG_FILE).write_text(json.dumps(poly.to_dict()))
    with pytest.raises(ValueError, match="steps"):
        config.check_run_dir(poly.replace(steps=60), tmp_path / "run")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        config.check_run_dir(run, tmp_path / "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is not a folder"):
        config.check_run_dir(run, tmp_path / "file")


def test_classes_round_trip_and_leave_older_fingerprints_alone(tiny_config):
    run = tiny_config(classes=[0, 8, 15])
    assert run.classes == (0, 8, 15)
    again = config.TrainConfig.from_dict(json.loads(json.dumps(run.to_dict())))
    assert again == run and again.fingerprint() == run.fingerprint()
    assert run.fingerprint() != run.replace(classes=None).fingerprint()
    # Without classes the hash is the one computed before the field existed,
    # so the shipped runs made then still match their recipes.
    plain = tiny_config()
    values = {k: v for k, v in plain.to_dict().items()
              if k not in config.RESUMABLE_FIELDS
              and k not in ("classes", "class_column", "overlap", "precision")}  # the later fields
    values["steps"] = plain.steps
    expected = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]
    assert plain.fingerprint() == expected
    with pytest.raises(ValueError, match="TrainConfig: classes must not repeat"):
        tiny_config(classes=[1, 1])


def test_the_scale_fields_leave_older_fingerprints_alone(tmp_path, tiny_config):
    """A config saved before precision/xla/gpus/workers existed reads with their defaults and
    keeps its fingerprint; only a precision other than float32 computes something else."""
    plain = tiny_config()
    old = {k: v for k, v in plain.to_dict().items() if k not in SCALE_FIELDS}
    (tmp_path / checkpoints.CONFIG_FILE).write_text(json.dumps(old))
    run = config.read_config(tmp_path)
    assert run == plain and (run.precision, run.xla, run.gpus, run.workers) == ("float32", False,
                                                                                1, None)
    before = {k: v for k, v in old.items()
              if k not in config.RESUMABLE_FIELDS
              and k not in ("classes", "class_column", "overlap")}  # main's later fields
    before["steps"] = run.steps
    expected = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:10]
    assert run.fingerprint() == expected
    assert run.replace(precision="mixed_bfloat16").fingerprint() != expected
    # How the same step is run (compiled, split between replicas or machines) resumes.
    for changes in (dict(xla=True), dict(gpus=2), dict(workers="a:1,b:2", worker_index=1)):
        assert run.replace(**changes).fingerprint() == expected, changes
