"""TrainConfig: every training flag described once (its field), and the recipe a config built in
Python gets, the same as the command line's."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re

import pytest

from mnist_cnn import MnistCnnError, TrainConfig
from mnist_cnn.config import FIELDS, RECIPES, RESUMABLE_OVERRIDES, flag, recipe
from mnist_cnn.train import parse_args, parser

FLAGGED = [name for name, described in FIELDS.items() if described.flag is not None]


def test_every_flagged_field_is_a_flag_of_the_train_command_with_its_help():
    actions = {action.dest: action for action in parser()._actions}
    for name in FLAGGED:
        assert actions[name].option_strings[0] == flag(name)
        assert FIELDS[name].help in actions[name].help.replace("%%", "%")
    others = {a.dest for a in parser()._actions} - set(FIELDS)
    assert others == {"help", "version", "debug", "no_accel", "overwrite", "resume", "no_progress"}


def out_of_bounds(name: str) -> list:
    """Values just outside the field's bounds, and values no bound admits."""
    described = FIELDS[name]
    values = []
    if described.at_least is not None:
        values.append(
            described.at_least - 1 if isinstance(described.default, int) else described.at_least - 0.01
        )
    if described.above is not None:
        values.append(described.above)
    if described.at_most is not None:
        values.append(described.at_most + 1)
    if described.below is not None:
        values.append(described.below)
    if isinstance(described.default, float):
        values += [math.nan, math.inf]
    return values


BOUNDED = [(name, value) for name in FIELDS for value in out_of_bounds(name)]


@pytest.mark.parametrize("name, value", BOUNDED, ids=[f"{n}={v}" for n, v in BOUNDED])
def test_a_value_out_of_bounds_is_refused_naming_the_flag_and_its_bounds(name, value):
    with pytest.raises(
        MnistCnnError, match=f"^{re.escape(flag(name) + ' must be ' + FIELDS[name].bounds())}, got "
    ):
        TrainConfig(**{name: value})


@pytest.mark.parametrize("name", [n for n in FIELDS if FIELDS[n].choices])
def test_a_value_not_among_the_choices_is_refused_naming_them(name):
    with pytest.raises(
        MnistCnnError, match=f"^{flag(name)} must be one of {', '.join(FIELDS[name].choices)}"
    ):
        TrainConfig(**{name: "nothing-of-the-kind"})


def test_a_config_built_in_python_gets_its_models_recipe_as_the_command_line_does():
    for model in RECIPES:
        from_flags = parse_args(["--model", model, "--output-dir", "o"]).config
        assert TrainConfig(model=model, output_dir="o") == from_flags
        assert {k: getattr(from_flags, k) for k in RECIPES[model]} == RECIPES[model]
    shorter = TrainConfig(model="improved", epochs=5)
    assert shorter.epochs == 5 and shorter.lr == RECIPES["improved"]["lr"] and shorter.augment
    assert dataclasses.replace(shorter, seed=2).epochs == 5  # replace changes only what it names


def test_from_dict_gives_exactly_the_saved_run_not_todays_recipe():
    improved = TrainConfig(model="improved")
    assert TrainConfig.from_dict(improved.to_dict()) == improved
    older = {k: v for k, v in improved.to_dict().items() if k != "schedule"}  # saved before --schedule
    assert TrainConfig.from_dict(older).schedule == FIELDS["schedule"].default


def test_another_nets_recipe_trains_a_net_by_it():
    config = TrainConfig(model="improved", **recipe("seed"))
    assert (config.epochs, config.lr, config.augment) == (1, 0.03, False)
    assert "model" not in recipe("seed") and "data_dir" not in recipe("seed")


def test_what_may_change_on_resume_is_where_and_how_a_run_goes():
    assert {
        *("device", "data_dir", "cache", "output_dir", "threads", "log_interval", "save_model", "dry_run")
    } == RESUMABLE_OVERRIDES


def test_bool_flags_take_no_and_turn_off_what_a_recipe_turned_on():
    config = parse_args(["--model", "improved", "--no-augment", "--no-channels-last", "--no-cache"]).config
    assert (config.augment, config.channels_last, config.cache) == (False, False, False)


@pytest.mark.parametrize("module", ["predict", "explain", "evaluate", "serve"])
def test_every_command_that_runs_a_net_defaults_to_device_auto(module):
    import importlib

    import mnist_cnn.cli as cli

    seen = []
    original = cli.add_net_arguments

    def spy(p: argparse.ArgumentParser, **kwargs):
        original(p, **kwargs)
        seen.append(p.get_default("device"))
        raise SystemExit(0)

    cli_module = importlib.import_module(f"mnist_cnn.{module}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_module, "add_net_arguments", spy)
        with pytest.raises(SystemExit):
            cli_module.main(["--help"]) if module != "serve" else cli_module.parse_args([])
    assert seen == ["auto"]
