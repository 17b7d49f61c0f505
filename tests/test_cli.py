"""The command line: an end-to-end smoke run and one-line errors for bad input."""

import json

import pytest
from click.testing import CliRunner

from gendd.cli import main


def gendd(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(result, text):
    assert result.exit_code == 2, result.output
    assert text in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.slow
def test_distill_end_to_end_writes_a_valid_set_evaluation_and_report(small_fashion, tmp_path):
    run = tmp_path / "run"
    r = gendd("distill", "--dataset", "fashion-mnist", "--data-root", small_fashion, "--ipc", 2,
              "--preset", "tiny", "--out", run)
    assert r.exit_code == 0, r.output
    from gendd.real_statistics import load_statistics
    from gendd.sets import load_set

    s = load_set(run / "distilled" / "ipc2.safetensors")
    assert s.images.shape == (20, 1, 28, 28) and s.labels.tolist() == sorted(s.labels.tolist())
    assert s.metadata["class_names"][0] == "T-shirt/top"
    ev = json.loads((run / "eval" / "ipc2.json").read_text())
    assert 0 <= ev["accuracy"]["mean"] <= 100 and len(ev["accuracy"]["rounds"]) == 1
    assert (run / "report" / "grid_ipc2.png").is_file() and (run / "report" / "index.html").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("test_psnr_db" in r for r in records) and any("fd_classifier" in r for r in records)
    # Same command again: everything is found done; nothing is retrained.
    again = gendd("distill", "--dataset", "fashion-mnist", "--data-root", small_fashion,
                  "--ipc", 2, "--preset", "tiny", "--out", run, "--no-eval")
    assert again.exit_code == 0 and "autoencoder" not in again.output.split("time:")[-1]
    # The DM-refined set needs neither the stored statistics nor the fine-tuned denoiser;
    # `train` on the run adds them, alone.
    assert not (run / "statistics.safetensors").exists()
    assert not (run / "denoiser-finetuned").exists()
    train = gendd("train", "--dataset", "fashion-mnist", "--data-root", small_fashion,
                  "--preset", "tiny", "--out", run)
    assert train.exit_code == 0, train.output
    stages = train.output.split("trained:")[-1]
    assert "statistics_s" in stages and "finetune_s" in stages and "denoiser_s" not in stages
    assert (run / "denoiser-finetuned").is_dir()
    assert load_statistics(run).means.shape[:2] == (3, 10)  # the tiny preset's draws, classes


def test_bad_input_gives_one_line_errors(small_fashion, tmp_path, tiny_run):
    assert_user_error(gendd("distill", "--dataset", "nope", "--out", tmp_path / "r"),
                      "unknown data set 'nope'")
    assert_user_error(gendd("distill", "--dataset", "fashion-mnist", "--ipc", 0, "--out",
                            tmp_path / "r"), "Invalid value for '--ipc': 0 is not in the range x>=1")
    assert_user_error(gendd("train", "--dataset", "mnist", "--data-root", tmp_path / "empty",
                            "--out", tmp_path / "r"), "mnist not found")
    # A run with another configuration is refused, and left as it was.
    before = (tiny_run / "config.yaml").read_text()
    assert_user_error(gendd("train", "--dataset", "fashion-mnist", "--data-root", small_fashion,
                            "--preset", "tiny", "--set", "denoiser.steps=99", "--out", tiny_run),
                      "different configuration")
    assert (tiny_run / "config.yaml").read_text() == before
    assert_user_error(gendd("generate", tiny_run), "exactly one of --ipc and --time-budget")
    assert_user_error(gendd("generate", tiny_run, "--ipc", 1, "--time-budget", 5),
                      "exactly one of --ipc and --time-budget")
    assert_user_error(gendd("generate", tmp_path, "--ipc", 1), "not a gendd run directory")


def test_corrupt_data_file_is_a_one_line_error(small_fashion, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(small_fashion, bad)
    (bad / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    assert_user_error(gendd("train", "--dataset", "fashion-mnist", "--data-root", bad, "--out",
                            tmp_path / "r"), "train-images-idx3-ubyte.gz")


def test_generate_refuses_to_overwrite(tiny_run):
    first = gendd("generate", tiny_run, "--ipc", 1, "--steps", 2)
    assert first.exit_code == 0, first.output
    assert_user_error(gendd("generate", tiny_run, "--ipc", 1), "exists (use --force")


def test_generate_passes_refine_settings_set_by_the_user(tiny_run, tmp_path):
    from gendd.sets import load_set

    out = tmp_path / "s.safetensors"
    r = gendd("generate", tiny_run, "--ipc", 2, "--steps", 2, "--set", "refine.iterations=1",
              "--set", "refine.augmentation=per-class", "--set", "refine.lr_schedule=constant",
              "--set", "refine.regression=7", "--set", "refine.feature_blocks=all", "--out", out)
    assert r.exit_code == 0, r.output
    refine = load_set(out).metadata["refine"]
    assert (refine["augmentation"], refine["lr_schedule"], refine["regression"],
            refine["range_projection"], refine["feature_blocks"]) == \
        ("per-class", "constant", 35.0, "at-end", "all")  # the weight at IPC 10, x 10 / 2
    one = tmp_path / "one.safetensors"  # a --set refine value holds at one image per class too
    r = gendd("generate", tiny_run, "--ipc", 1, "--steps", 2, "--set", "refine.iterations=3",
              "--out", one)
    assert r.exit_code == 0, r.output
    assert load_set(one).metadata["refine"]["iterations"] == 3
    assert load_set(one).metadata["refine"]["range_projection"] == "every-step"  # IPC 1's own
    assert_user_error(gendd("generate", tiny_run, "--ipc", 2, "--set",
                            "refine.augmentation=none", "--out", out, "--force"),
                      "unknown refine.augmentation 'none'")
    assert_user_error(gendd("generate", tiny_run, "--ipc", 2, "--set", "denoiser.steps=3",
                            "--out", out, "--force"), "only sampler.*, refine.* can be set here")


def test_generate_checks_its_values_and_output_before_any_work(tiny_run, tmp_path):
    assert_user_error(gendd("generate", tmp_path, "--ipc", 1, "--steps", 0),
                      "Invalid value for '--steps': 0 is not in the range x>=1")
    for value, message in (("nan", "sampler.guidance must be a finite number"),
                           ("-1", "sampler.guidance must be >= 0")):
        assert_user_error(gendd("generate", tiny_run, "--ipc", 1, "--guidance", value,
                                "--out", tmp_path / "g.safetensors"), message)
    for budget in ("nan", "inf", "0"):
        assert_user_error(gendd("generate", tiny_run, "--time-budget", budget,
                                "--out", tmp_path / "t.safetensors"), "positive number of seconds")
    assert_user_error(gendd("generate", tiny_run, "--ipc", 1, "--out", tmp_path, "--force"),
                      "is a directory")
    sampled = tmp_path / "x.sampled.safetensors"  # a user's file where the sampled set would go
    sampled.write_bytes(b"mine")
    assert_user_error(gendd("generate", tiny_run, "--ipc", 1, "--out", tmp_path / "x.safetensors"),
                      "x.sampled.safetensors: exists (use --force")
    assert sampled.read_bytes() == b"mine" and not (tmp_path / "x.safetensors").exists()
    blocker = tmp_path / "a-file"  # a folder that cannot be made: a file stands there
    blocker.write_text("")
    assert_user_error(gendd("generate", tiny_run, "--ipc", 1, "--out",
                            blocker / "s.safetensors"), "cannot write there")


def test_time_budget_samples_from_noise_when_the_run_seeds_from_prototypes(tiny_run, tmp_path):
    from gendd.run_dir import read_config
    from gendd.sets import load_set

    assert read_config(tiny_run).sampler.init == "prototypes"
    out = tmp_path / "b.safetensors"
    r = gendd("generate", tiny_run, "--time-budget", 3, "--steps", 1, "--out", out)
    assert r.exit_code == 0, r.output
    assert load_set(out).metadata["sampler"]["init"] == "noise"
    assert_user_error(gendd("generate", tiny_run, "--time-budget", 3, "--set",
                            "sampler.init=prototypes", "--out", tmp_path / "c.safetensors"),
                      "needs --ipc")
    assert not (tmp_path / "c.safetensors").exists()
