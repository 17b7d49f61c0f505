"""A run directory is continued only with its own configuration; --force starts it over."""

import pytest

from gendd.config import resolve_config
from gendd.errors import GenddError
from gendd.run_dir import prepare_run, read_config


def _run_with_work(tmp_path):
    run = tmp_path / "run"
    cfg = resolve_config("fashion-mnist", "tiny")
    assert prepare_run(run, cfg) is False
    (run / "checkpoints").mkdir()
    (run / "metrics.jsonl").write_text("{}\n")
    return run, cfg


def test_same_configuration_resumes_with_or_without_resume(tmp_path):
    run, cfg = _run_with_work(tmp_path)
    assert prepare_run(run, cfg) is True
    assert prepare_run(run, cfg, resume=True) is True
    assert (run / "checkpoints").is_dir() and (run / "metrics.jsonl").is_file()


def test_force_discards_the_run_even_when_the_configuration_is_unchanged(tmp_path):
    run, cfg = _run_with_work(tmp_path)
    (run / "mine.txt").write_text("not gendd's")
    assert prepare_run(run, cfg, force=True) is False
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()
    assert (run / "mine.txt").is_file() and read_config(run) == cfg


def test_changed_configuration_is_refused_without_force(tmp_path):
    run, cfg = _run_with_work(tmp_path)
    other = resolve_config("fashion-mnist", "tiny", overrides={"denoiser.steps": 99})
    with pytest.raises(GenddError, match="different configuration.*denoiser.steps"):
        prepare_run(run, other)
    with pytest.raises(GenddError, match="--resume needs the run's own configuration"):
        prepare_run(run, other, resume=True)
    assert read_config(run) == cfg and (run / "checkpoints").is_dir()
    assert prepare_run(run, other, force=True) is False
    assert read_config(run) == other and not (run / "checkpoints").exists()


def test_resume_needs_a_run_and_contradicts_force(tmp_path):
    cfg = resolve_config("fashion-mnist", "tiny")
    with pytest.raises(GenddError, match="no run to resume"):
        prepare_run(tmp_path / "new", cfg, resume=True)
    assert not (tmp_path / "new").exists()
    with pytest.raises(GenddError, match="contradict"):
        prepare_run(tmp_path / "new", cfg, resume=True, force=True)
