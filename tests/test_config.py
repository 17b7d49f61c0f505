import pytest
import yaml

from gendd.config import PRESETS, RunConfig, parse_override, resolve_config
from gendd.errors import GenddError


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_resolve_and_round_trip_through_yaml(preset):
    cfg = resolve_config("fashion-mnist", preset)
    assert RunConfig.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_override_sets_a_nested_value():
    cfg = resolve_config("fashion-mnist", "quick", overrides=dict([parse_override("denoiser.steps=7")]))
    assert cfg.denoiser.steps == 7


def test_unknown_key_and_preset_are_user_errors():
    with pytest.raises(GenddError, match="unknown configuration key 'denoiser.stepz'"):
        resolve_config("fashion-mnist", "quick", overrides={"denoiser.stepz": 1})
    with pytest.raises(GenddError, match="unknown preset"):
        resolve_config("fashion-mnist", "huge")
    with pytest.raises(GenddError, match="key=value"):
        parse_override("denoiser.steps")


def test_words_yaml_reads_as_booleans_stay_words():
    assert parse_override("train.mixed_precision=no") == ("train.mixed_precision", "no")
    assert parse_override("x=true") == ("x", True)


@pytest.mark.parametrize("key", ["preset", "dataset", "seed", "sampler", "sampler.solver.x"])
def test_set_takes_only_section_keys(key):
    with pytest.raises(GenddError, match="section.key"):
        resolve_config("fashion-mnist", "quick", overrides={key: "x"})


@pytest.mark.parametrize("override, message", [
    ("sampler.solver=foo", r"unknown sampler.solver 'foo' \(dpm\+\+ \| unipc \| ddim \| ddpm\)"),
    ("sampler.init=foo", "unknown sampler.init 'foo'"),
    ("sampler.steps=0", "sampler.steps must be >= 1"),
    ("sampler.guidance=nan", "sampler.guidance must be a number"),
    ("sampler.guidance=.inf", "sampler.guidance must be a finite number"),
    ("sampler.guidance=-1", "sampler.guidance must be >= 0"),
    ("sampler.strength=1.5", r"sampler.strength must be in \(0, 1\]"),
    ("eval.model=foo", "unknown model 'foo'"),
    ("eval.model=convnet-d4", "unknown model 'convnet-d4'"),
    ("refine.lr=0", "refine.lr must be > 0"),
    ("refine.lr_schedule=step", r"unknown refine.lr_schedule 'step' \(constant \| cosine\)"),
    ("refine.augmentation=none", r"unknown refine.augmentation 'none' \(per-class \| shared\)"),
    ("refine.range_projection=never",
     r"unknown refine.range_projection 'never' \(at-end \| every-step\)"),
    ("refine.feature_blocks=first", r"unknown refine.feature_blocks 'first' \(last \| all\)"),
    ("refine.discrimination=-1", "refine.discrimination must be >= 0"),
    ("refine.regression=-1", "refine.regression must be >= 0"),
    ("refine.per_ipc={1: {iterations: -1}}", "refine.iterations must be >= 0"),
    ("refine.per_ipc={50: {feature_blocks: first}}", "unknown refine.feature_blocks 'first'"),
    ("refine.per_ipc={0: {}}", "IPC thresholds"),
    ("refine.per_ipc={1: {lr_typo: 1}}", r"unknown configuration key\(s\) refine.per_ipc\[1\].lr_typo"),
    ("refine.per_ipc=[1]", "refine.per_ipc must map"),
    ("denoiser.steps=abc", "denoiser.steps must be a whole number"),
    ("denoiser.steps=-5", "denoiser.steps must be >= 1"),
    ("denoiser.steps=2.5", "denoiser.steps must be a whole number"),
    ("denoiser.lr=fast", "denoiser.lr must be a number"),
    ("denoiser.block_out_channels=[64, 0]", "a list of whole numbers >= 1"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1"),
    ("autoencoder.batch_size=0", "autoencoder.batch_size must be >= 1"),
    ("train.mixed_precision=fp64", "unknown train.mixed_precision 'fp64'"),
])
def test_bad_names_fail_when_the_configuration_is_resolved(override, message):
    with pytest.raises(GenddError, match=message):
        resolve_config("fashion-mnist", "quick", overrides=dict([parse_override(override)]))


def test_bad_set_value_is_a_one_line_error_before_any_training(tmp_path):
    from click.testing import CliRunner

    from gendd.cli import main

    r = CliRunner().invoke(main, ["train", "--dataset", "fashion-mnist", "--data-root",
                                  str(tmp_path / "no-data"), "--set", "sampler.solver=foo",
                                  "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        "gendd: error: unknown sampler.solver 'foo' (dpm++ | unipc | ddim | ddpm)"]
    assert not (tmp_path / "run").exists()


def test_a_yaml_error_in_a_value_is_a_one_line_error():
    with pytest.raises(GenddError, match=r"--set denoiser.steps=\[1,: the value is not valid YAML"):
        parse_override("denoiser.steps=[1,")


def test_presets_and_overrides_of_a_refine_setting_hold_at_every_ipc():
    tiny = resolve_config("fashion-mnist", "tiny").refine
    assert tiny.iterations == 2 and all("iterations" not in r for r in tiny.per_ipc.values())
    assert tiny.per_ipc[50]["feature_blocks"] == "all"
    quick = resolve_config("fashion-mnist", "quick").refine
    assert (quick.per_ipc[1]["iterations"], quick.per_ipc[50]["iterations"]) == (200, 1000)
