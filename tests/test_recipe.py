"""Recipes load into validated config objects; bad values are one-line errors."""

import tomllib
from pathlib import Path

import pytest

from tfsparse.cli import UserError
from tfsparse.recipe import (ExportConfig, PruningConfig, Recipe, TrainConfig, dump_toml, load_recipe,
                             parse_override)

MODELS = sorted((Path(__file__).parent.parent / "models").glob("*.toml"))


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_every_shipped_recipe_loads_and_round_trips(path):
    recipe = load_recipe(path)
    again = Recipe.from_config(tomllib.loads(recipe.to_toml()), name=recipe.name)
    assert again.get_config() == recipe.get_config()


def test_overrides_are_parsed_as_toml_values(tmp_path):
    recipe = load_recipe(MODELS[0], ["pruning.final_sparsity=0.75", "model.name=mobilenet_v2",
                                     "pruning.sparsity_m_by_n=[2, 4]", "train.seed=7"])
    assert recipe.pruning.final_sparsity == 0.75
    assert recipe.model.name == "mobilenet_v2"
    assert recipe.pruning.sparsity_m_by_n == [2, 4]
    assert recipe.train.seed == 7


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown key 'train.epoch'"),
    ("pruning.final_sparsity=1.0", "pruning.final_sparsity must be in [0, 1), got 1.0"),
    ("pruning.final_sparsity=-0.1", "pruning.final_sparsity must be in [0, 1), got -0.1"),
    ("pruning.schedule=cubic", "pruning.schedule must be one of polynomial, constant, got 'cubic'"),
    ("pruning.begin=0.9", "pruning.begin 0.9 must be before pruning.end"),
    ("pruning.policy=(", "pruning.policy '(' is neither xnnpack, all nor a valid regex"),
    ("export.variants=[\"fp8\"]", "unknown variant 'fp8'"),
    ("train.batch_size=0", "train.batch_size must be an integer >= 1, got 0"),
    ("optimizer.name=sgd", "unknown section [optimizer]"),
])
def test_bad_values_name_themselves(override, message):
    with pytest.raises(UserError) as e:
        load_recipe(MODELS[0], [override])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="section.key=value"):
        parse_override("final_sparsity=0.5")
    with pytest.raises(UserError, match="recipe not found"):
        load_recipe(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname=")
    with pytest.raises(UserError, match="not valid TOML"):
        load_recipe(bad)


def test_configs_round_trip_through_get_config():
    for cls, kwargs in [(PruningConfig, {"final_sparsity": 0.8, "block_size": [1, 4]}),
                        (TrainConfig, {"epochs": 3, "seed": 5}), (ExportConfig, {"variants": ["fp32"]})]:
        config = cls(**kwargs)
        assert cls.from_config(config.get_config()) == config


def test_dump_toml_escapes_strings():
    text = dump_toml({"model": {"name": 'a"b\\c', "flag": True, "sizes": [1, 2.5]}})
    assert tomllib.loads(text) == {"model": {"name": 'a"b\\c', "flag": True, "sizes": [1, 2.5]}}


def test_control_characters_round_trip_through_config_toml(tmp_path):
    """A regex with a newline, a tab or a control character makes a config.toml that
    `--resume` (load_recipe) reads back to the same recipe."""
    recipe = load_recipe(MODELS[0], ['pruning.exclude="^a\\nb\\t\\u0001\\\\d$"'])
    assert recipe.pruning.exclude == "^a\nb\t\x01\\d$"
    config = tmp_path / "config.toml"
    config.write_text("# resolved recipe of x\n" + recipe.to_toml())
    again = load_recipe(config)
    assert again.get_config() == recipe.get_config()
