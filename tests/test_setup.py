"""segnet_lib.setup() and the command-line entry point."""
import subprocess
import sys

import numpy as np
import pytest

import segnet_lib
from segnet_lib import cli


def test_setup_disables_eager_and_seeds(capsys):
    import tensorflow.compat.v1 as tf

    info = segnet_lib.setup(seed=123)
    assert not tf.executing_eagerly()
    assert info.seed == 123
    assert info.device in {"CPU", "GPU"}
    assert "graph mode, seed 123" in capsys.readouterr().out
    first = np.random.rand()
    segnet_lib.set_seed(123)
    assert np.random.rand() == first


def test_importing_tf_through_the_library_is_quiet():
    code = "import segnet_lib._tf as t; print(len(t.GPUS) >= 0)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    assert "cuda" not in out.stderr.lower() and "absl" not in out.stderr


def test_cli_rejects_unknown_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2
    assert "no-such-command" in capsys.readouterr().err
