"""The restricted unpickler: real CIFAR-style pickles load; pickles that would run code are
refused before anything runs (a marker file the payload would create never appears)."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from data_writers import assert_user_error, data_env, gendd, py2_pickle, write_cifar_folder  # noqa: F401

from gendd.data.safe_pickle import safe_loads
from gendd.errors import GenddError


class _RunsShell:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _Evals:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


def _touch_command(marker):
    return f"touch {marker}"


def test_plain_data_and_arrays_load():
    data = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [3, 4],
            b"name": b"batch", "text": "x", b"nested": ({1: 2.5}, [None, True])}
    out = safe_loads(py2_pickle(data), "x")
    assert out[b"labels"] == [3, 4] and out[b"nested"] == ({1: 2.5}, [None, True])
    np.testing.assert_array_equal(out[b"data"], data[b"data"])
    # Pickles written by Python 3 with numpy 2 (numpy._core) load too.
    out = safe_loads(pickle.dumps({b"a": np.ones((2, 2), np.float32)}, protocol=4), "x")
    assert out[b"a"].dtype == np.float32


@pytest.mark.parametrize("make, refused", [
    (lambda m: _RunsShell(_touch_command(m)), "posix.system"),
    (lambda m: _Evals(f"open({str(m)!r}, 'w')"), "builtins.eval"),
    # Hidden inside an otherwise valid CIFAR batch.
    (lambda m: {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_RunsShell(_touch_command(m))]},
     "posix.system"),
])
def test_code_running_pickles_are_refused_and_nothing_runs(tmp_path, make, refused):
    marker = tmp_path / "marker"
    payload = pickle.dumps(make(marker), protocol=4)
    # Control: an ordinary unpickler in another process really runs the payload...
    control = tmp_path / "control"
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                   input=pickle.dumps(make(control), protocol=4), check=False)
    assert control.exists()
    # ...the restricted one refuses it, naming the culprit, and nothing ran.
    with pytest.raises(GenddError, match=f"x.pkl: unsafe or corrupt pickle.*{refused}"):
        safe_loads(payload, "x.pkl")
    assert not marker.exists()


class _Sub(np.ndarray):
    pass


def test_other_escapes_are_refused(tmp_path):
    # An ndarray subclass: its class cannot be named...
    with pytest.raises(GenddError, match="refusing to load 'test_data_safe_pickle._Sub'"):
        safe_loads(pickle.dumps(np.zeros(3).view(_Sub), protocol=4), "x")
    # ...and the reconstruction function takes no other allowed name as the array's type.
    crafted = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\ndtype\nK\x00\x85U\x01b\x87R."
    with pytest.raises(GenddError, match="subtype other than ndarray"):
        safe_loads(crafted, "x")
    # Object arrays would rebuild arbitrary Python objects as their elements.
    with pytest.raises(GenddError, match="dtype object"):
        safe_loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=4), "x")
    # Persistent ids, a truncated file, garbage.
    with pytest.raises(GenddError, match="persistent"):
        safe_loads(b"\x80\x02K\x01Q.", "x")
    with pytest.raises(GenddError, match="corrupt"):
        safe_loads(py2_pickle({b"a": 1})[:-3], "x")
    with pytest.raises(GenddError, match="x: "):
        safe_loads(b"not a pickle at all", "x")


def test_a_crafted_cifar_batch_is_a_one_line_cli_error(tmp_path):
    marker = tmp_path / "marker"
    folder = write_cifar_folder(tmp_path, "cifar-10")
    (folder / "data_batch_3").write_bytes(py2_pickle(
        {b"data": np.zeros((1, 3072), np.uint8), b"labels": _RunsShell(_touch_command(marker))}))
    assert_user_error(gendd("datasets", "--check", "cifar-10", "--data-root", tmp_path),
                      "data_batch_3", "refusing to load 'posix.system'")
    assert not marker.exists()
