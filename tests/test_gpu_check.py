"""segnet_lib.gpu_check: the table beside the paper's Table 6, exercised in --smoke mode on a CPU."""
import re
import subprocess
import sys

from segnet_lib import gpu_check


def test_checks_cover_both_batches_precisions_and_xla():
    full = gpu_check.checks()
    assert {(c.batch, c.xla) for c in full} == {(1, False), (1, True), (4, False), (4, True)}
    assert {c.precision for c in full} >= {"float32"} and len({c.precision for c in full}) == 2
    assert all(c.size == (360, 480) and c.width == 1.0 for c in full)
    assert all(c.size == (64, 64) and c.batch == 1 for c in gpu_check.checks(smoke=True))


def test_smoke_run_prints_every_configuration_beside_the_paper():
    out = subprocess.run([sys.executable, "-m", "segnet_lib", "gpu-check", "--smoke"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert "paper, Table 6 (NVIDIA Titan)" in lines[2] and "422.5" in lines[2] and "6,803" in lines[2]
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[3:]]
    assert len(rows) == 4
    for row in rows:
        forward, backward, step, rate, memory = (float(v.replace(",", "")) for v in row[-5:])
        assert 0 < forward < step and abs(forward + backward - step) < 0.2 and rate > 0
        assert memory > 100  # a process holding TensorFlow
    assert {row[0].split(",")[1].strip() for row in rows} == {"XLA off", "XLA on"}
