"""The TF 1.15 API fence (tools/check_tf115_api.py).

The library must use only names that exist in TensorFlow 1.15's
``tensorflow.compat.v1``. The real check reads the tensorflow-cpu 1.15.0 wheel
(downloaded once into $SEGNET_CACHE_DIR/tf115, default ~/.cache/segnet_lib/tf115)
and skips with the reason when it cannot be obtained. The checker's own logic
is tested on small hand-made inputs that need no download.
"""
import importlib.util
import zipfile
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_tf115_api.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("check_tf115_api", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checker = _load_tool()


@pytest.fixture(scope="module")
def tf115_symbols():
    try:
        return checker.load_api()["symbols"]
    except RuntimeError as e:
        pytest.skip(f"TF 1.15 wheel unavailable, API fence not checked: {e}")


def test_library_uses_only_tf115_public_api(tf115_symbols):
    uses, problems = checker.check(tf115_symbols)
    assert len(uses) > 50  # the scan really found the library's tf. calls
    assert {"nn.max_pool_with_argmax", "raw_ops.MaxPoolGradWithArgmax",
            "nn.fused_batch_norm"} <= {u.name for u in uses}
    assert problems == [], "TF 1.15 API problems:\n" + "\n".join(problems)


BAD_SOURCE = '''
from segnet_lib._tf import tf
import tensorflow as tf2
from tensorflow.python.ops import gen_nn_ops

y = tf.nn.dropout(x, rate=0.5)
y = tf.nn.fused_batch_norm(x, s, o, exponential_avg_factor=0.1)
y = tf.keras.layers.Conv2D(3, 3)
z = tf.layers.conv2d(x, 3, 3)
k = tf.GraphKeys.UPDATE_OPS
k = tf.GraphKeys.NOT_A_KEY
a = tf.raw_ops.MaxPoolGradWithArgmax(x, g, a, ksize=[1], strides=[1], padding="SAME")
n = tf.nn.no_such_op(x)
'''


def test_checker_flags_tf2_only_and_keras_uses(tf115_symbols):
    uses, problems = checker.scan_source(BAD_SOURCE, "bad.py")
    problems += [p for p in (checker.check_use(u, tf115_symbols) for u in uses) if p]
    text = "\n".join(problems)
    assert "bad.py:3: 'import tensorflow'" in text
    assert "bad.py:4: 'from tensorflow.python.ops import ...'" in text
    assert "tf.nn.dropout" not in text and "UPDATE_OPS" not in text
    assert "'exponential_avg_factor'" in text
    assert "tf.keras.layers.Conv2D: Keras" in text and "tf.layers.conv2d: Keras" in text
    assert "has no attribute 'NOT_A_KEY'" in text
    assert "raw ops take keyword arguments only" in text
    assert "no 'nn.no_such_op'" in text
    assert len(problems) == 8


def test_scan_source_finds_chains_keywords_and_aliases():
    source = (
        "import tensorflow.compat.v1 as tfv1\n"
        "from segnet_lib._tf import tf\n"
        "a = tf.nn.conv2d(x, k, strides=[1, 1, 1, 1], padding='SAME')\n"
        "b = tfv1.GraphKeys.UPDATE_OPS\n"
        "c = other.nn.conv2d(x)\n"
        "d = tf.shape(x)[0]\n")
    uses, problems = checker.scan_source(source, "m.py")
    assert problems == []
    got = {(u.line, u.name, tuple(u.keywords) if u.keywords is not None else None, u.positional)
           for u in uses}
    assert got == {(3, "nn.conv2d", ("strides", "padding"), 2),
                   (4, "GraphKeys.UPDATE_OPS", None, 0),
                   (6, "shape", (), 1)}


def test_allow_pragma_exempts_one_line():
    source = ("from segnet_lib._tf import tf\n"
              "from tensorflow.python.framework import config  # tf115-fence: allow\n"
              "from tensorflow.python.framework import ops\n"
              "a = tf.new_tf2_thing(x)  # tf115-fence: allow\n"
              "b = tf.other_thing(x)\n")
    uses, problems = checker.scan_source(source, "p.py")
    assert [p.split(":")[1] for p in problems] == ["3"]
    assert [u.name for u in uses] == ["other_thing"]


def test_extract_api_from_a_hand_made_wheel(tmp_path):
    root = checker.API_ROOT
    wheel = tmp_path / "tensorflow_cpu-1.15.0-cp37-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(root + "__init__.py",
                   "from tensorflow._api.v1.compat.v1 import nn\n"
                   "from tensorflow.python.framework.ops import GraphKeys\n"
                   "from tensorflow.python.framework.dtypes import float32\n"
                   "from tensorflow.python.ops.mod import _private\n")
        z.writestr(root + "nn/__init__.py",
                   "from tensorflow.python.ops.mod import op_v1 as op\n"
                   "from tensorflow.python.ops.mod import wrapped\n")
        z.writestr(root + "raw_ops/__init__.py",
                   "from tensorflow.python.ops.mod import Raw\n")
        z.writestr(root + "train/__init__.py",
                   "from tensorflow.python import SessionLog\n"
                   "from tensorflow.python.ops import Reexported\n")
        # tensorflow/python/__init__.py re-exports protobuf classes with a star import.
        z.writestr("tensorflow_core/python/__init__.py",
                   "from tensorflow.core.util.event_pb2 import *\n")
        z.writestr("tensorflow_core/core/util/event_pb2.py",
                   "_SESSIONLOG_STATUS = _descriptor.EnumDescriptor(name='SessionStatus', values=[\n"
                   "  _descriptor.EnumValueDescriptor(name='START', index=1)])\n"
                   "SessionLog = _reflection.GeneratedProtocolMessageType('SessionLog', (), {})\n")
        z.writestr("tensorflow_core/python/ops/__init__.py", "from .mod import op_v1 as Reexported\n")
        z.writestr("tensorflow_core/python/framework/ops.py",
                   "class _Base:\n  BASE_KEY = 'b'\n"
                   "class GraphKeys(_Base):\n  UPDATE_OPS = 'u'\n  def f(self): pass\n")
        z.writestr("tensorflow_core/python/framework/dtypes.py", "float32 = DType(1)\n")
        z.writestr("tensorflow_core/python/ops/mod.py",
                   "def op_v1(x, rate=None, **kw): pass\n"
                   "def _impl(a, b, *args): pass\n"
                   "wrapped = deprecated(None, 'msg')(_impl)\n"
                   "def Raw(input, name=None): pass\n")
    symbols = checker.extract_api(wheel)["symbols"]
    assert symbols["nn"] == {"kind": "module"}
    assert symbols["nn.op"] == {"kind": "function", "args": ["x", "rate"], "vararg": False,
                                "varkw": True}
    assert symbols["nn.wrapped"]["args"] == ["a", "b"] and symbols["nn.wrapped"]["vararg"]
    assert symbols["GraphKeys"]["kind"] == "class"
    assert set(symbols["GraphKeys"]["attrs"]) == {"UPDATE_OPS", "f", "BASE_KEY"}
    assert symbols["float32"] == {"kind": "unknown"}
    assert symbols["raw_ops.Raw"]["keyword_only"] is True
    assert "_private" not in symbols
    assert symbols["train.SessionLog"]["kind"] == "protobuf"
    assert {"START", "SessionStatus"} <= set(symbols["train.SessionLog"]["attrs"])
    assert symbols["train.Reexported"]["args"] == ["x", "rate"]  # relative import followed
    use = checker.Use("x.py", 1, "nn.op", ["rate", "anything"], 1)
    assert checker.check_use(use, symbols) is None  # **kw accepts any keyword
    assert "no attribute 'MISSING'" in checker.check_use(
        checker.Use("x.py", 2, "GraphKeys.MISSING"), symbols)
