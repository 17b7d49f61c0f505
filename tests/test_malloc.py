"""The `gendd` command's re-execution under tcmalloc: when it happens, and that the command
still runs (and is named `gendd`) after it."""

import subprocess
import sys

from gendd.utils.malloc import tcmalloc_environment

LIB = "libtcmalloc_minimal.so.4"


def found():
    return LIB


def not_looked_up():
    raise AssertionError("the library was looked up where the answer was already known")


def test_preloads_the_library_and_marks_the_process_once():
    env = tcmalloc_environment({"PATH": "/bin"}, found, "linux")
    assert env["LD_PRELOAD"] == LIB and env["PATH"] == "/bin"
    assert tcmalloc_environment(env, not_looked_up, "linux") is None  # the re-executed process


def test_keeps_a_users_preload_behind_tcmalloc():
    env = tcmalloc_environment({"LD_PRELOAD": "libfoo.so"}, found, "linux")
    assert env["LD_PRELOAD"] == f"{LIB} libfoo.so"


def test_runs_as_it_is_where_it_should():
    assert tcmalloc_environment({}, lambda: None, "linux") is None  # no library
    assert tcmalloc_environment({}, not_looked_up, "darwin") is None
    assert tcmalloc_environment({"GENDD_MALLOC": "system"}, not_looked_up, "linux") is None
    assert tcmalloc_environment({"LD_PRELOAD": "/x/libtcmalloc.so.4"}, not_looked_up,
                                "linux") is None


def test_the_console_entry_runs_and_keeps_its_name():
    r = subprocess.run([sys.executable, "-m", "gendd.cli", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: gendd ")
