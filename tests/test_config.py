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
    ("sampler.solver=foo", "unknown solver 'foo'"),
    ("sampler.init=foo", "unknown sampling start 'foo'"),
    ("sampler.select=foo", "unknown selection 'foo'"),
    ("sampler.steps=0", "steps must be at least 1"),
    ("eval.model=foo", "unknown model 'foo'"),
    ("refine.lr=0", "refine.lr > 0"),
    ("refine.lr_schedule=step", r"unknown refine.lr_schedule 'step' \(constant \| cosine\)"),
    ("refine.augmentation=none", r"unknown refine.augmentation 'none' \(per-class \| shared\)"),
    ("refine.range_projection=never",
     r"unknown refine.range_projection 'never' \(at-end \| every-step\)"),
    ("refine.feature_blocks=first", r"unknown refine.feature_blocks 'first' \(last \| all\)"),
    ("refine.discrimination=-1", "refine.discrimination and refine.regression must be >= 0"),
    ("refine.regression=-1", "refine.regression must be >= 0"),
    ("refine.iterations_ipc1=-1", "refine.iterations_ipc1, refine.iterations_ipc50"),
    ("refine.iterations_ipc50=-1", "refine.iterations_ipc50, refine.mmd"),
    ("refine.range_projection_ipc50=never", "unknown refine.range_projection_ipc50 'never'"),
    ("refine.feature_blocks_ipc50=first", "unknown refine.feature_blocks_ipc50 'first'"),
    ("refine.trained_share=1.5", r"refine.trained_share in \[0, 1\]"),
    ("refine.snapshot_every=0", "snapshot_every <= refine.trained_steps"),
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
        "gendd: error: unknown solver 'foo' (known: dpm++, unipc, ddim, ddpm)"]
    assert not (tmp_path / "run").exists()


def test_tier_fields_lists_a_settings_per_ipc_variants():
    from gendd.config import tier_fields

    assert tier_fields("iterations") == ("iterations", "iterations_ipc1", "iterations_ipc50")
    assert tier_fields("feature_blocks") == ("feature_blocks", "feature_blocks_ipc50")
    assert tier_fields("mmd") == ("mmd",)
