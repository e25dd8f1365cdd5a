"""segnet_lib.checkpoints: checkpoint folders, history, the run lock, class weights."""
import json

import pytest

from segnet_lib import checkpoints
from segnet_lib._tf import tf


# ---------------------------------------------------------------------------
# Checkpoint bookkeeping (with a one-variable graph)
# ---------------------------------------------------------------------------

def test_checkpoints_keep_last_k_and_best_and_ignore_partial_writes(tmp_path):
    with tf.Graph().as_default():
        v = tf.get_variable("v", initializer=0.0)
        assign = tf.placeholder(tf.float32, [])
        set_v = tf.assign(v, assign)
        saver = tf.train.Saver()
        ckpts = checkpoints.Checkpoints(tmp_path, saver, keep_last=2)
        with tf.Session() as sess:
            for step, miou in [(10, 0.2), (20, 0.5), (30, 0.3), (40, None), (50, 0.1)]:
                sess.run(set_v, {assign: step})
                ckpts.save(sess, step, {"val_mean_iou": miou}, [{"step": step}])
            kept = [s for s, _ in checkpoints.checkpoint_dirs(tmp_path)]
            assert kept == [20, 40, 50]  # last two + the best (0.5 at step 20)
            assert checkpoints.latest_checkpoint(tmp_path).endswith("ckpt-00000050/model")
            assert checkpoints.best_checkpoint(tmp_path).endswith("ckpt-00000020/model")
            assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-00000050/model")
            assert tf.train.latest_checkpoint(str(tmp_path), checkpoints.BEST_STATE_FILE).endswith(
                "ckpt-00000020/model")
            # A crash mid-write leaves a temporary folder (and no meta.json):
            # never mistaken for a checkpoint.
            (tmp_path / ".ckpt-00000060.tmp-1").mkdir()
            (tmp_path / "ckpt-00000070").mkdir()  # renamed but incomplete
            assert checkpoints.latest_checkpoint(tmp_path).endswith("ckpt-00000050/model")
            saver.restore(sess, checkpoints.best_checkpoint(tmp_path))
            assert sess.run(v) == 20.0
        meta = json.loads((tmp_path / "ckpt-00000050" / checkpoints.META_FILE).read_text())
        assert meta["step"] == 50 and meta["val_mean_iou"] == 0.1


def test_find_checkpoint_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no checkpoint yet"):
        checkpoints.find_checkpoint(tmp_path, "best")
    with pytest.raises(FileNotFoundError, match=r"no .*nope.index"):
        checkpoints.find_checkpoint(tmp_path, str(tmp_path / "nope"))
    with tf.Graph().as_default():
        tf.get_variable("v", initializer=1.0)
        saver = tf.train.Saver()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            ckpts = checkpoints.Checkpoints(tmp_path, saver, keep_last=1)
            saved = ckpts.save(sess, 3, {"val_mean_iou": 0.4}, [])
    prefix = str(saved / checkpoints.CHECKPOINT_BASENAME)
    assert checkpoints.find_checkpoint(tmp_path, "best") == prefix
    assert checkpoints.find_checkpoint(tmp_path, "latest") == prefix
    assert checkpoints.find_checkpoint(tmp_path, prefix) == prefix
    assert checkpoints.read_meta(saved)["step"] == 3


def test_checkpoints_recover_from_a_kill_between_renames(tmp_path):
    """A re-save moves the old folder aside first; killed there, it is put back."""
    old = tmp_path / ".ckpt-00000010.old-99"
    old.mkdir()
    (old / checkpoints.META_FILE).write_text("{}")
    (tmp_path / ".ckpt-00000020.tmp-99").mkdir()  # never finished
    with tf.Graph().as_default():
        tf.get_variable("v", initializer=1.0)
        checkpoints.Checkpoints(tmp_path, tf.train.Saver(), keep_last=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000010"]


def test_history_round_trip(tmp_path):
    rows = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 1 / 3, "val_mean_iou": 0.25}]
    frame = checkpoints.write_history(tmp_path / checkpoints.HISTORY_FILE, rows)
    assert list(frame.columns) == list(checkpoints.HISTORY_COLUMNS)
    again = checkpoints.read_history(tmp_path)
    assert again["loss"].tolist() == [0.5, 1 / 3]  # full precision: a resume reads back exactly
    assert checkpoints.checkpoint_history(tmp_path)[1]["val_mean_iou"] == 0.25
    assert checkpoints.checkpoint_history(None) == []
    with pytest.raises(FileNotFoundError, match="no history"):
        checkpoints.read_history(tmp_path / "elsewhere")


def test_run_lock_lets_one_process_in(tmp_path, lock_held_elsewhere):
    with lock_held_elsewhere(tmp_path):
        with pytest.raises(checkpoints.RunInUse, match="another process is training"):
            with checkpoints.run_lock(tmp_path):
                pass
    with checkpoints.run_lock(tmp_path):  # free again once that process is gone
        pass


def test_class_weights_file(tmp_path):
    assert checkpoints.read_class_weights(tmp_path) is None
    checkpoints.write_class_weights(tmp_path, "median_frequency", [0.5, 2.0], ["bg", "cat"])
    assert checkpoints.read_class_weights(tmp_path) == {
        "class_weighting": "median_frequency", "weights": [0.5, 2.0], "classes": ["bg", "cat"]}
