"""segnet_lib.runtime: threads, session options, the device line, determinism."""
import os

import pytest

from segnet_lib import runtime
from segnet_lib._tf import GPUS, LEAN_MEMORY_ENV, lean_memory


def test_cpu_count_is_this_process_share():
    assert runtime.cpu_count() == len(os.sched_getaffinity(0)) >= 1


def test_session_config_uses_every_core_and_grows_gpu_memory():
    config = runtime.session_config()
    assert config.intra_op_parallelism_threads == config.inter_op_parallelism_threads \
        == runtime.cpu_count()
    assert config.gpu_options.allow_growth and config.allow_soft_placement


def test_device_report_says_where_training_runs():
    line = runtime.device_report()
    if GPUS:
        assert line.startswith(f"Training on {len(GPUS)} GPU(s)")
    else:
        assert line == f"Training on the CPU with {runtime.cpu_count()} threads (no GPU visible)"


def test_enable_determinism_is_a_no_op_without_a_gpu_or_when_off():
    with runtime.enable_determinism(False) as on:
        assert on is False
    with runtime.enable_determinism(True) as on:
        assert on is bool(GPUS)


def test_lean_memory_switch_reads_the_environment_and_rejects_other_values(monkeypatch):
    monkeypatch.delenv(LEAN_MEMORY_ENV, raising=False)
    assert lean_memory() is True
    monkeypatch.setenv(LEAN_MEMORY_ENV, "0")
    assert lean_memory() is False
    monkeypatch.setenv(LEAN_MEMORY_ENV, "yes")
    with pytest.raises(ValueError, match="SEGNET_LEAN_MEMORY must be 0 or 1"):
        lean_memory()
