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
