"""One run directory, one writer (issue 38, item 1): a second gendd process on a run directory in
use is refused at once, naming the first, before it changes anything (`--force` included); a
lock left by a killed process does not block the next one."""

import os
import subprocess
import sys
import time

import pytest
from data_writers import assert_user_error, gendd

from gendd.config import resolve_config
from gendd.errors import GenddError
from gendd.run_dir import LOCK, lock_run, prepare_run

HOLD = ("import sys, time; from pathlib import Path; from gendd.run_dir import lock_run\n"
        "with lock_run(Path(sys.argv[1])):\n"
        "    print('locked', flush=True); time.sleep(120)")


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock of a run directory; yields (process, run)."""
    procs = []

    def start(run):
        p = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE,
                             text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def a_run_with_work(run):
    prepare_run(run, resolve_config("fashion-mnist", "tiny"))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "keep.txt").write_text("work")
    return sorted(p.name for p in run.rglob("*"))


def test_a_second_process_is_refused_at_once_naming_the_first(tmp_path, holder):
    run = tmp_path / "run"
    other = holder(run)
    t = time.perf_counter()
    with pytest.raises(GenddError) as e:
        with lock_run(run):
            pass
    assert time.perf_counter() - t < 1.0
    assert str(e.value).startswith(f"{run}: in use by another gendd process (pid {other.pid}: -c ")
    assert str(e.value).endswith("wait for it to end, or choose another --out")


@pytest.mark.parametrize("command", ["train", "distill"])
def test_train_and_distill_into_a_run_in_use_change_nothing_even_with_force(
        tmp_path, holder, small_fashion, command):
    run = tmp_path / "run"
    before = a_run_with_work(run)
    other = holder(run)
    result = gendd(command, "--dataset", "fashion-mnist", "--data-root", small_fashion, "--preset",
                   "tiny", "--seed", "7", "--force", "--out", run)
    assert_user_error(result, f"{run}: in use by another gendd process (pid {other.pid}:")
    assert sorted(p.name for p in run.rglob("*")) == sorted([LOCK, *before])
    assert (run / "checkpoints" / "keep.txt").read_text() == "work"
    assert "seed: 7" not in (run / "config.yaml").read_text()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, holder):
    run = tmp_path / "run"
    other = holder(run)
    other.kill()  # SIGKILL: the holder cleans nothing up
    other.wait()
    assert (run / LOCK).read_text().startswith(f"pid {other.pid}:")
    with lock_run(run):
        assert (run / LOCK).read_text().startswith(f"pid {os.getpid()}:")


def test_the_lock_file_is_not_a_run_entry(tmp_path):
    run = tmp_path / "run"
    with lock_run(run):
        assert prepare_run(run, resolve_config("fashion-mnist", "tiny")) is False
        assert sorted(p.name for p in run.iterdir()) == [LOCK, "config.yaml"]
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    with lock_run(run):  # released when the block ended
        pass


def test_a_command_that_fails_early_leaves_no_directory_and_no_lock(tmp_path, small_fashion):
    run = tmp_path / "new"
    (tmp_path / "empty").mkdir()
    result = gendd("train", "--dataset", "mnist", "--data-root", tmp_path / "empty", "--preset",
                   "tiny", "--out", run)
    assert_user_error(result, "mnist not found")
    assert not run.exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    result = gendd("train", "--dataset", "fashion-mnist", "--data-root", small_fashion,
                   "--preset", "tiny", "--out", tmp_path / "used")
    assert_user_error(result, "directory is not empty and holds no gendd run")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["notes.txt"]


def test_other_ranks_of_a_distributed_run_take_no_lock(tmp_path, holder, monkeypatch):
    run = tmp_path / "run"
    holder(run)
    monkeypatch.setenv("RANK", "1")
    with lock_run(run):
        pass
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(GenddError, match="in use"):
        with lock_run(run):
            pass


def test_a_file_is_not_a_run_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(GenddError, match="exists and is not a directory"):
        with lock_run(tmp_path / "f"):
            pass
