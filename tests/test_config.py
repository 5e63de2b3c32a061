import tomllib

import pytest

from ssnas.commands.flags import parse_set
from ssnas.config import apply_overrides, flatten, from_dict, resolve, to_dict
from ssnas.errors import UserError
from ssnas.search import SearchConfig
from tests.conftest import ROOT


def test_overrides_are_typed():
    cfg = apply_overrides(SearchConfig(), {"optim.lr": "0.1", "supernet.layers": "5", "run.progress": "false",
                                           "optim.arch_betas": "0.9,0.99"})
    assert cfg.optim.lr == 0.1 and cfg.supernet.layers == 5 and cfg.run.progress is False
    assert cfg.optim.arch_betas == (0.9, 0.99)


@pytest.mark.parametrize("key,value,needle", [
    ("optim.lrr", 1, "unknown config key 'optim.lrr'"),
    ("supernet.layers", "eight", "must be an integer"),
    ("supernet.layers", 2.5, "whole number"),
    ("run.progress", "maybe", "true or false"),
    ("optim", 3, "is a section"),
])
def test_bad_keys_and_values_are_user_errors(key, value, needle):
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        apply_overrides(SearchConfig(), {key: value})


def test_objective_specific_keys_land_in_options():
    cfg = apply_overrides(SearchConfig(), {"objective.queue_size": 4096, "objective.temperature": 0.2})
    assert cfg.objective.options == {"queue_size": 4096} and cfg.objective.temperature == 0.2


def test_toml_then_flags_take_precedence(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('space = "darts"\n[optim]\nepochs = 7\nlr = 0.05\n[objective]\nname = "simclr"\ntemperature = 0.3\n')
    cfg = resolve(SearchConfig, str(path), {"optim.lr": "0.01"})
    assert cfg.optim.epochs == 7 and cfg.optim.lr == 0.01 and cfg.objective.temperature == 0.3


def test_toml_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr = 1")
    with pytest.raises(UserError, match="not valid TOML"):
        resolve(SearchConfig, str(bad), {})
    with pytest.raises(UserError, match="does not exist"):
        resolve(SearchConfig, str(tmp_path / "missing.toml"), {})


def test_config_json_round_trip():
    cfg = apply_overrides(SearchConfig(), {"optim.order": 2, "objective.queue_size": 16, "data.subset": 100})
    assert from_dict(SearchConfig, to_dict(cfg)) == cfg


def test_set_parses_toml_scalars():
    assert parse_set(["a.b=3", "c=0.5", "d=true", "e=hello"]) == {"a.b": 3, "c": 0.5, "d": True, "e": "hello"}
    with pytest.raises(UserError):
        parse_set(["novalue"])


def test_flatten_keeps_option_tables_whole():
    assert flatten({"objective": {"name": "x", "options": {"k": 1}}}) == {"objective.name": "x", "objective.options": {"k": 1}}


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.toml")), ids=lambda p: p.name)
def test_every_experiment_config_resolves_and_validates(path):
    """Each shipped config is a search or a retrain config whose settings pass the checks that run before any data."""
    from ssnas import retrain, search

    if "arch" in tomllib.loads(path.read_text()):
        retrain.validate(resolve(retrain.RetrainConfig, str(path), {}))
    else:
        search.validate(resolve(SearchConfig, str(path), {}))
