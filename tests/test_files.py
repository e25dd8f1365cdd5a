"""segnet_lib.files: atomic writes, publishing folders, the cache folder."""
import os
from pathlib import Path

import pytest

from segnet_lib import files


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "result.json"
    files.atomic_write_text(path, "old")
    assert files.atomic_write_text(path, "néw\n") == path
    assert path.read_text(encoding="utf-8") == "néw\n"
    assert files.atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.bin", "result.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    path.write_text("complete\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        files.atomic_write_text(path, "half")
    assert path.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # temporary file removed


def test_temp_path_is_a_hidden_sibling_named_after_the_process(tmp_path):
    tmp = files.temp_path(tmp_path / "ckpt-00000010")
    assert tmp.parent == tmp_path and tmp.name == f".ckpt-00000010.tmp-{os.getpid()}"


@pytest.mark.parametrize("sync", [False, True])
def test_publish_dir_renames_into_place(tmp_path, sync):
    final = tmp_path / "data"
    tmp = files.temp_path(final)
    tmp.mkdir()
    (tmp / "a.txt").write_text("1")
    assert files.publish_dir(tmp, final, sync=sync) == final
    assert (final / "a.txt").read_text() == "1" and not tmp.exists()


def test_publish_dir_keeps_the_first_copy_or_replaces_it(tmp_path):
    final = tmp_path / "data"
    final.mkdir()
    (final / "a.txt").write_text("first")
    tmp = files.temp_path(final)
    tmp.mkdir()
    (tmp / "a.txt").write_text("second")
    files.publish_dir(tmp, final)  # another process finished first: its copy stays
    assert (final / "a.txt").read_text() == "first" and not tmp.exists()
    tmp.mkdir()
    (tmp / "a.txt").write_text("third")
    files.publish_dir(tmp, final, replace=True)
    assert (final / "a.txt").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_recover_dirs_tidies_what_a_killed_publisher_left(tmp_path):
    (tmp_path / ".ckpt-1.tmp-7").mkdir()  # never finished: deleted
    (tmp_path / ".ckpt-2.old-7").mkdir()  # killed between the two renames: put back
    (tmp_path / "ckpt-3").mkdir()
    (tmp_path / ".ckpt-3.old-7").mkdir()  # killed after: the new one exists, old deleted
    (tmp_path / ".other.tmp-7").mkdir()  # another prefix: left alone
    files.recover_dirs(tmp_path, "ckpt-")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-7", "ckpt-2", "ckpt-3"]


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "c"))
    assert files.cache_dir() == tmp_path / "c"
    monkeypatch.delenv(files.CACHE_ENV)
    assert files.cache_dir() == Path.home() / ".cache" / "segnet_lib"


def test_cached_dir_builds_once_and_publishes_whole(tmp_path):
    calls = []

    def build(folder):
        calls.append(folder)
        assert folder != tmp_path / "data" and folder.parent == tmp_path  # a hidden sibling
        (folder / "a.txt").write_text("a")

    final = files.cached_dir(tmp_path / "data", build, "test data v1")
    assert final == tmp_path / "data" and (final / "a.txt").read_text() == "a"
    assert (final / files.DONE_FILE).read_text() == "test data v1\n"
    assert files.cached_dir(final, build) == final and len(calls) == 1  # built once

    def interrupted(folder):
        (folder / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.cached_dir(tmp_path / "other", interrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing half-made is left
    # A folder without the marker (made by hand, or by an older version) is rebuilt.
    (tmp_path / "hand").mkdir()
    (tmp_path / "hand" / "stale.txt").write_text("?")
    rebuilt = files.cached_dir(tmp_path / "hand", build)
    assert sorted(p.name for p in rebuilt.iterdir()) == [files.DONE_FILE, "a.txt"]
