"""Hostile input, generated with hypothesis: every invalid input gives exactly one line on stderr starting with
`ssnas: error:` and exit code 2 -- never a traceback, never exit 0. Each call goes through `ssnas.cli.main` in this
process, so an exception that escapes fails the test with its traceback.

The generator's categories (max_examples sum to 1,150; `derandomize` keeps CI reproducible):

1. numeric flags (400): every number and every choice a flag of search, retrain, eval, export and tune takes, set
   to what its declared range refuses: below or above the range, NaN, +-infinity, text that is not a number, a
   fraction for an integer, a wrong count for a pair, a name outside the choices, a value for an on/off flag, and
   devices torch does not train on.
2. `--set` overrides (250): unknown keys (also below a value, and empty parts), a section given a value, values of
   the wrong TOML type (arrays, tables, dates, booleans), out-of-range values for every key, and unknown or
   out-of-range options of every objective.
3. TOML configs (150): text that is not TOML, valid TOML with one unknown key, one value of the wrong type or one
   out of range among valid ones, arrays and tables nested thousands deep, files over a megabyte.
4. genotypes (200): a valid DARTS or NAS-Bench-201 genotype with one thing broken (an op, an input, a field, the
   space, a concat list), random JSON, JSON nested thousands deep, NNI dicts with unknown labels, strings in the
   NAS-Bench-201 format that break it, `.py` genotypes with huge ranges, calls, syntax errors or NUL bytes, random
   bytes, files over a megabyte; given to `export`, `show` and `retrain --arch`.
5. data paths (150): missing paths, plain files, empty folders, folders of non-images or of unreadable images,
   loose images mixed with class folders, images of one flat colour, class folders that hold a symlink loop, and
   .npz files without x_train, with the wrong dtype or rank, 0x0 or non-square images, no images, labels that do
   not match the images; given to search.

Every base command line is tiny and complete (a few images, one step), so a value accepted by mistake finishes in
seconds with exit 0 and fails the test instead of running a full search.
"""
from __future__ import annotations

import io
import itertools
import json
import math
import os
import typing
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssnas.cli import main
from ssnas.commands.tune import SKIPPED_KEYS
from ssnas.config import flag_name, leaf_fields, parse_range
from ssnas.evaluate import EvalConfig
from ssnas.export import ExportConfig
from ssnas.registry import available_objectives, objective
from ssnas.retrain import RetrainConfig
from ssnas.search import SearchConfig
from ssnas.tune.session import TuneConfig

pytestmark = pytest.mark.slow
FUZZ = dict(derandomize=os.environ.get("FUZZ_RANDOM") is None, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                   HealthCheck.function_scoped_fixture])  # capsys: read (and so reset) per example
_counter = itertools.count()

# ---- the tiny world every command line runs in -------------------------------------------------------------------

TINY_NET = ["--layers", "3", "--init-channels", "4", "--proj-dim", "8", "--device", "cpu", "--no-progress",
            "--no-tensorboard"]
TINY_SUPERNET = [*TINY_NET, "--nodes", "1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 32-image .npz dataset and a finished one-step retrain run folder (for eval)."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    npz = root / "tiny.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (32, 8, 8, 3), dtype=np.uint8), y_train=np.arange(32) % 2,
             x_test=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8), y_test=np.arange(16) % 2)
    run = root / "retrain"
    assert main(["retrain", "--arch", "DARTS_V2", "--dataset", str(npz), "--epochs", "1", "--warmup-epochs", "0",
                 "--batch-size", "8", "--steps-per-epoch", "1", "--knn-every", "0", "--out", str(run),
                 *TINY_NET]) == 0
    return {"root": root, "npz": str(npz), "run": str(run)}


def _out(world) -> str:
    return str(world["root"] / f"out{next(_counter)}")


def base(command: str, world) -> list[str]:
    """A complete, tiny command line: what the invalid part is added to."""
    steps = ["--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "1"]
    if command == "search":
        return ["search", "--dataset", world["npz"], *steps, *TINY_SUPERNET, "--out", _out(world)]
    if command == "retrain":
        return ["retrain", "--arch", "DARTS_V2", "--dataset", world["npz"], *steps, "--warmup-epochs", "0",
                "--knn-every", "0", *TINY_NET, "--out", _out(world)]
    if command == "eval":
        return ["eval", world["run"], "--protocol", "knn", "--knn-k", "4", "--device", "cpu", "--no-progress",
                "--no-tensorboard"]
    if command == "export":
        return ["export", "DARTS_V2", "--to", "json"]
    return ["tune", "--dataset", world["npz"], "--trials", "1", *steps, "--val-size", "8", "--bank-size", "0",
            "--no-plots", *TINY_SUPERNET, "--out", _out(world)]


def rejects(capsys, argv: list[str]) -> None:
    """The one assertion of this file: exit code 2 and one line, `ssnas: error: ...`."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, f"exit {code} for {argv}\n{err}"
    assert err.startswith("ssnas: error:") and "\n" not in err and "Traceback" not in err, f"{argv}\n{err}"


# ---- invalid values of declared fields ----------------------------------------------------------------------------

def _unwrap(tp):
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType")):
        return next(a for a in typing.get_args(tp) if a is not type(None)), True
    return tp, False


def _parses(text: str, tp) -> bool:
    try:
        tp(text)
    except (ValueError, OverflowError):
        return False
    return True


def _number(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def invalid_numbers(f, tp) -> st.SearchStrategy:
    """Numbers (as Python values) the field's declared range or choices refuse, and non-finite floats."""
    meta = f.metadata
    options = [st.sampled_from([math.nan, math.inf, -math.inf])]
    if "choices" in meta:
        options.append(st.integers(-10**6, 10**6).filter(lambda v: v not in meta["choices"]))
    if "range" in meta:
        r = parse_range(meta["range"])
        if math.isfinite(r.low):
            if tp is int:
                top = int(math.ceil(r.low)) - (0 if r.low_open and float(r.low).is_integer() else 1)
                options.append(st.integers(top - 10**12, top))
            else:
                options.append(st.floats(max_value=r.low, exclude_max=not r.low_open, allow_nan=False,
                                         allow_infinity=False, width=64).filter(lambda v: v not in r))
        if math.isfinite(r.high):
            if tp is int:
                bottom = int(math.floor(r.high)) + (0 if r.high_open and float(r.high).is_integer() else 1)
                options.append(st.integers(bottom, bottom + 10**12))
            else:
                options.append(st.floats(min_value=r.high, exclude_min=not r.high_open, allow_nan=False,
                                         allow_infinity=False, width=64).filter(lambda v: v not in r))
    if tp is int:
        options.append(st.floats(-1e6, 1e6).filter(lambda v: math.isfinite(v) and not float(v).is_integer()))
    return st.one_of(options)


def _text(max_size: int = 12) -> st.SearchStrategy:
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=max_size)


def invalid_flag_values(f, tp) -> st.SearchStrategy:
    """What a user types after `--flag=` that the field refuses (as text)."""
    tp, optional = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin in (tuple, list):  # --arch-betas: a pair of numbers in [0, 1)
        good = st.floats(0, 0.99)
        return st.one_of(
            st.lists(good, max_size=5).filter(lambda v: len(v) != 2).map(lambda v: ",".join(map(repr, v))),
            st.tuples(invalid_numbers(f, float), good).map(lambda v: f"{_number(v[0])},{v[1]!r}"),
            st.tuples(good, _text(4).filter(lambda s: not _parses(s.strip(), float) and "," not in s))
            .map(lambda v: f"{v[0]!r},{v[1]}"))
    if tp is bool:
        return _text().map(lambda s: "=" + s)  # --progress=x: an on/off flag takes no value
    if tp is str:
        return _text().filter(lambda s: s not in f.metadata["choices"])
    words = _text().filter(lambda s: not _parses(s, tp) and not (optional and s.strip().lower() in ("none", "null")))
    return st.one_of(invalid_numbers(f, tp).map(_number), words)


def _declared(cls, skip=()) -> list[tuple[str, str, object, object]]:
    """(flag, key, field, type) of every flag whose field declares a range or choices, or is a number or an
    on/off switch."""
    out = []
    for key, f, tp in leaf_fields(cls):
        if f.metadata.get("cli") is False or key.startswith(skip):
            continue
        inner, _ = _unwrap(tp)
        if "range" in f.metadata or "choices" in f.metadata or inner in (int, float, bool):
            out.append((flag_name(key, f), key, f, tp))
    return out


FLAGS = [(c, *d) for c, cls in (("search", SearchConfig), ("retrain", RetrainConfig), ("eval", EvalConfig),
                                 ("export", ExportConfig), ("tune", TuneConfig)) for d in _declared(cls)]
FLAGS += [("tune", *d) for d in _declared(SearchConfig, SKIPPED_KEYS)]  # the trained run's flags


def test_every_numeric_field_declares_its_range():
    """What the validator checks is declared for every number of every config, objective options included."""
    from ssnas.training.objective import parse_options

    classes = [SearchConfig, RetrainConfig, EvalConfig, ExportConfig, TuneConfig]
    missing = [f"{cls.__name__}: {key}" for cls in classes for key, f, tp in leaf_fields(cls)
               if _unwrap(tp)[0] in (int, float) and "range" not in f.metadata and "choices" not in f.metadata]
    for name in available_objectives():
        opts = type(parse_options(objective(name), {}))
        missing += [f"{name} option {key}" for key, f, tp in leaf_fields(opts)
                    if _unwrap(tp)[0] in (int, float) and "range" not in f.metadata and "choices" not in f.metadata]
    assert not missing, missing
    assert len(FLAGS) > 100


@settings(max_examples=400, **FUZZ)
@given(data=st.data())
def test_numeric_flags(world, capsys, data):
    command, flag, key, f, tp = data.draw(st.sampled_from(FLAGS), label="flag")
    value = data.draw(invalid_flag_values(f, tp), label=key)
    argv = base(command, world)
    rejects(capsys, argv + ([flag + value] if value.startswith("=") else [f"{flag}={value}"]))


@settings(max_examples=30, **FUZZ)
@given(device=st.one_of(st.sampled_from(["meta", "gpu", "cuda:x", "cpu,1", "CPU", "tpu", "mps", "cuda"]),
                        _text().filter(lambda s: s.strip() not in ("auto", "cpu") and not s.startswith("cpu:"))))
def test_devices(world, capsys, device):
    import torch

    if torch.cuda.is_available() and device.startswith("cuda"):
        return
    rejects(capsys, base("search", world) + [f"--device={device}"])


# ---- --set ----------------------------------------------------------------------------------------------------------

def toml_literal(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return tomli_w.dumps({"v": value})[4:].strip()


def _wrong_type(tp) -> st.SearchStrategy:
    """TOML values that no coercion turns into `tp`."""
    tp, _ = _unwrap(tp)
    table = st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(), min_size=1, max_size=2)
    dates = st.dates()
    if tp in (int, float):
        return st.one_of(st.lists(st.integers(), max_size=3), table, dates, st.booleans())
    if tp is str:
        return st.one_of(st.lists(st.integers(), min_size=1, max_size=3), table)
    if tp is bool:
        return st.one_of(st.integers(), st.floats(allow_nan=False), table, st.lists(st.booleans(), max_size=2))
    return st.one_of(table, dates)  # a pair: its items cannot be a table nor a date


SEARCH_KEYS = [(k, f, tp) for k, f, tp in leaf_fields(SearchConfig) if k not in ("run.out",)]
RANGED = [(k, f, tp) for k, f, tp in SEARCH_KEYS if "range" in f.metadata or "choices" in f.metadata]
# keys the base command line sets by flag: flags override a --config file, so a file's value for them is never read
BASE_KEYS = {"data.dataset", "optim.epochs", "optim.batch_size", "optim.steps_per_epoch", "supernet.layers",
             "supernet.init_channels", "supernet.nodes", "objective.proj_dim", "run.device", "run.progress",
             "run.tensorboard", "run.out"}


def invalid_override(data) -> str:
    kind = data.draw(st.sampled_from(["unknown", "below_value", "section", "wrong_type", "range", "option"]),
                     label="kind")
    if kind == "unknown":
        section = data.draw(st.sampled_from(["", "optim.", "data.", "run.", "supernet.", "augment.", "nope."]))
        name = data.draw(st.text("abcdefghijklmnopqrstuvwxyz_", max_size=12))
        key = section + name
        if key in {k for k, _, _ in leaf_fields(SearchConfig)} or key.split(".")[0] in (
                "space", "data", "augment", "supernet", "objective", "optim", "run") and key.count(".") == 0:
            key = key + ".zz_nope"
        return f"{key}=1"
    if kind == "below_value":
        key, _, _ = data.draw(st.sampled_from(SEARCH_KEYS))
        return f"{key}.{data.draw(st.sampled_from(['x', '', 'lr']))}=1"
    if kind == "section":
        section = data.draw(st.sampled_from(["data", "augment", "supernet", "optim", "run"]))
        return f"{section}={data.draw(st.sampled_from(['1', 'true', '[1]', '0.5', 'x']))}"
    if kind == "wrong_type":
        key, _, tp = data.draw(st.sampled_from(SEARCH_KEYS))
        return f"{key}={toml_literal(data.draw(_wrong_type(tp)))}"
    if kind == "range":
        key, f, tp = data.draw(st.sampled_from(RANGED))
        inner, _ = _unwrap(tp)
        if typing.get_origin(inner) in (tuple, list):
            return f"{key}={data.draw(st.sampled_from(['[0.5]', '[0.5, 0.9, 0.9]', '[1.5, 0.9]', '[nan, 0.5]']))}"
        if inner is str:
            return f"{key}={toml_literal(data.draw(_text().filter(lambda s: s not in f.metadata['choices'])))}"
        return f"{key}={toml_literal(data.draw(invalid_numbers(f, inner)))}"
    from ssnas.training.objective import parse_options

    name = data.draw(st.sampled_from(available_objectives()))
    opts = parse_options(objective(name), {})
    fields = [(k, f, tp) for k, f, tp in leaf_fields(type(opts)) if "range" in f.metadata]
    if not fields or data.draw(st.booleans()):
        taken = {k for k, _, _ in leaf_fields(type(opts))} | {"name", "temperature", "proj_dim", "proj_hidden_dim",
                                                              "labels_fraction", "options"}
        option = data.draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(lambda s: s not in taken))
        return f"objective.name={toml_literal(name)}\x00objective.{option}=1"
    key, f, tp = data.draw(st.sampled_from(fields))
    value = data.draw(st.one_of(invalid_numbers(f, _unwrap(tp)[0]), _wrong_type(tp)))
    return f"objective.name={toml_literal(name)}\x00objective.{key}={toml_literal(value)}"


@settings(max_examples=250, **FUZZ)
@given(data=st.data())
def test_set_overrides(world, capsys, data):
    sets = invalid_override(data).split("\x00")  # an objective's option comes after the objective's name
    argv = base("search", world)
    for item in sets:
        argv += ["--set", item]
    rejects(capsys, argv)


# ---- TOML configs ---------------------------------------------------------------------------------------------------

VALID_TABLE = {"optim": {"epochs": 1, "lr": 0.05}, "augment": {"flip_p": 0.5}, "objective": {"temperature": 0.3}}


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_toml_configs(world, capsys, data):
    kind = data.draw(st.sampled_from(["not_toml", "unknown", "wrong_type", "range", "deep", "huge", "not_table"]))
    path = world["root"] / f"config{next(_counter)}.toml"
    table = json.loads(json.dumps(VALID_TABLE))
    if kind == "not_toml":
        text = data.draw(_text(40)) + "\n[unclosed"
    elif kind == "deep":
        depth = data.draw(st.integers(2_000, 200_000))
        text = "x = " + "[" * depth + "]" * depth + "\n"
    elif kind == "huge":
        text = "# padding\n" * 120_000 + "[optim]\nlr = 0.1\n"
    elif kind == "not_table":
        path = path.with_suffix(".json")  # a run's config.json must hold a table too
        text = json.dumps(data.draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=5))))
    else:
        key, f, tp = data.draw(st.sampled_from([e for e in SEARCH_KEYS if "." in e[0] and e[0] not in BASE_KEYS]))
        section, name = key.split(".", 1)
        if kind == "unknown":
            table.setdefault(section, {})[name + "_typo"] = 1
        elif kind == "wrong_type":
            table.setdefault(section, {})[name] = data.draw(_wrong_type(tp))
        else:
            key, f, tp = data.draw(st.sampled_from([e for e in RANGED if e[0] not in BASE_KEYS]))
            section, name = key.split(".", 1)
            inner, _ = _unwrap(tp)
            if typing.get_origin(inner) in (tuple, list):
                value = [1.5, 0.5]
            elif inner is str:
                value = data.draw(_text().filter(lambda s: s not in f.metadata["choices"]))
            else:
                value = data.draw(invalid_numbers(f, inner))
            table.setdefault(section, {})[name] = value
        text = tomli_w.dumps(table)
    path.write_text(text)
    rejects(capsys, base("search", world) + ["--config", str(path)])


# ---- genotypes ------------------------------------------------------------------------------------------------------

DARTS_V2 = {"space": "darts",
            "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
                       ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2]],
            "normal_concat": [2, 3, 4, 5],
            "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
                       ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1]],
            "reduce_concat": [2, 3, 4, 5]}
NB201 = ["nor_conv_3x3~0", "nor_conv_3x3~0", "avg_pool_3x3~1", "skip_connect~0", "none~1", "skip_connect~2"]
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
DARTS_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
             "dil_conv_5x5")
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)


def broken_darts(data) -> dict:
    g = json.loads(json.dumps(DARTS_V2))
    cell = data.draw(st.sampled_from(["normal", "reduce"]))
    what = data.draw(st.sampled_from(["op", "input", "drop", "extra", "space", "concat", "pairs", "pair"]))
    p = data.draw(st.integers(0, 7))
    if what == "op":
        g[cell][p][0] = data.draw(st.one_of(JSON.filter(lambda v: v not in DARTS_OPS), st.just("none")))
    elif what == "input":
        node = 2 + p // 2
        g[cell][p][1] = data.draw(st.one_of(st.integers().filter(lambda v: not 0 <= v < node), st.booleans(),
                                            st.floats(allow_nan=False).filter(lambda v: not float(v).is_integer()),
                                            st.text(max_size=3), st.none()))
    elif what == "drop":
        del g[data.draw(st.sampled_from(["normal", "reduce"]))]
    elif what == "extra":
        g[data.draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in g and k != "meta"))] = 1
    elif what == "space":
        g["space"] = data.draw(JSON.filter(lambda v: v != "darts"))
    elif what == "concat":
        g[cell + "_concat"] = data.draw(st.one_of(
            st.lists(st.integers(), min_size=1, max_size=6).filter(lambda v: any(not 2 <= i <= 5 for i in v)),
            JSON.filter(lambda v: not isinstance(v, list))))
    elif what == "pairs":
        g[cell] = g[cell][: data.draw(st.sampled_from([0, 1, 3, 7]))]
    else:
        g[cell][p] = data.draw(JSON.filter(lambda v: not (isinstance(v, list) and len(v) == 2)))
    return g


def broken_nb201(data) -> str:
    edges = list(NB201)
    i = data.draw(st.integers(0, 5))
    what = data.draw(st.sampled_from(["op", "index", "drop", "sep"]))
    op, _, j = edges[i].partition("~")
    if what == "op":
        edges[i] = data.draw(st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)
                             .filter(lambda s: s not in NB201_OPS)) + "~" + j
    elif what == "index":
        edges[i] = op + "~" + data.draw(st.text("0123456789x-", min_size=0, max_size=3).filter(lambda s: s != j))
    elif what == "drop":
        del edges[i]
        return "|" + "|+|".join(["|".join(edges[:1]), "|".join(edges[1:3]), "|".join(edges[3:])]) + "|"
    else:
        return "|" + "|".join(edges) + "|"  # no '+' between the nodes
    return "|" + "|+|".join(["|".join(edges[:1]), "|".join(edges[1:3]), "|".join(edges[3:])]) + "|"


def genotype_source(data, root: Path) -> str:
    kind = data.draw(st.sampled_from(["darts", "nb201", "nb201_file", "json", "deep", "nni", "py", "py_range",
                                      "bytes", "huge"]), label="kind")
    path = root / f"genotype{next(_counter)}"
    if kind == "darts":
        path = path.with_suffix(".json")
        path.write_text(json.dumps(broken_darts(data)))
    elif kind == "nb201":
        return broken_nb201(data)
    elif kind == "nb201_file":
        path = path.with_suffix(".txt")
        path.write_text(broken_nb201(data))
    elif kind == "json":
        path = path.with_suffix(".json")
        path.write_text(json.dumps(data.draw(JSON.filter(lambda v: v not in ({}, [])))))
    elif kind == "deep":
        depth = data.draw(st.integers(33, 300_000))
        path = path.with_suffix(".json")
        opening, closing = data.draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        path.write_text(opening * depth + "1" + closing * depth)
    elif kind == "nni":
        path = path.with_suffix(".json")
        label = data.draw(st.text("abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=10))
        path.write_text(json.dumps({f"normal/{label}": "sep_conv_3x3", "reduce/op_2_0": 1}))
    elif kind == "py":
        path = path.with_suffix(".py")
        body = data.draw(st.sampled_from([
            "G = Genotype(normal=[('nope', 0)] * 8, normal_concat=[2, 3, 4, 5], reduce=[], reduce_concat=[])",
            "G = Genotype(normal=__import__('os').getcwd())",
            "G = Genotype(normal_concat=range('a'))",
            "G = Genotype(normal_concat=list(range(2, 6), 3))",
            "G = Genotype(1, 2, 3, 4, 5, 6)",
            "G = Genotype(",
            "G = '|nope~0|+|'",
            "x = 1",
            "G = Genotype(normal=" + "(" * 500 + "1" + ")" * 500 + ")",
            "G = Genotype(normal=[1])\x00",
        ]))
        path.write_text(body)
    elif kind == "py_range":
        path = path.with_suffix(".py")
        stop = data.draw(st.integers(10**4, 10**18))
        path.write_text(f"G = Genotype(normal=[], normal_concat=range(2, {stop}), reduce=[], "
                        f"reduce_concat=list(range(2, {stop})))\n")
    elif kind == "bytes":
        path = path.with_suffix(data.draw(st.sampled_from([".json", ".txt", ".py", ""])))
        path.write_bytes(data.draw(st.binary(min_size=1, max_size=200)))
    else:
        path = path.with_suffix(".json")
        with open(path, "w") as f:
            f.write(" " * (1 << 20) + json.dumps(DARTS_V2))
    return str(path)


@settings(max_examples=200, **FUZZ)
@given(data=st.data())
def test_genotypes(world, capsys, data):
    source = genotype_source(data, world["root"])
    command = data.draw(st.sampled_from(["export", "show", "retrain"]))
    if command == "export":
        argv = ["export", source, "--to", "json"]
    elif command == "show":
        argv = ["show", source, "--no-size"]
    else:
        argv = base("retrain", world) + ["--arch", source]
    rejects(capsys, argv)


# ---- data paths -----------------------------------------------------------------------------------------------------

def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def bad_npz(data, path: Path) -> None:
    what = data.draw(st.sampled_from(["no_x", "dtype", "rank", "zero", "square", "channels", "empty", "labels",
                                      "negative", "not_zip", "flat"]))
    n = data.draw(st.integers(4, 16))
    x = np.zeros((n, 8, 8, 3), np.uint8) + np.arange(8, dtype=np.uint8)[None, :, None, None]
    arrays = {"x_train": x}
    if what == "no_x":
        arrays = {"images": x}
    elif what == "dtype":
        arrays["x_train"] = x.astype(data.draw(st.sampled_from([np.float32, np.int64, np.uint16, np.bool_])))
    elif what == "rank":
        arrays["x_train"] = x.reshape(data.draw(st.sampled_from([(n * 192,), (n, 192), (1, n, 8, 8, 3)])))
    elif what == "zero":
        arrays["x_train"] = np.zeros((n, 0, 0, 3), np.uint8)
    elif what == "square":
        arrays["x_train"] = np.zeros((n, 8, 6, 3), np.uint8)
    elif what == "channels":
        arrays["x_train"] = np.zeros((n, 8, 8, data.draw(st.sampled_from([0, 2, 4]))), np.uint8)
    elif what == "empty":
        arrays["x_train"] = np.zeros((0, 8, 8, 3), np.uint8)
    elif what == "labels":
        arrays["y_train"] = np.zeros(data.draw(st.integers(0, 40).filter(lambda k: k != n)), np.int64)
    elif what == "negative":
        arrays["y_train"] = -np.ones(n, np.int64)
    elif what == "flat":
        arrays["x_train"] = np.full((n, 8, 8, 3), data.draw(st.integers(0, 255)), np.uint8)
    if what == "not_zip":
        path.write_bytes(data.draw(st.binary(min_size=0, max_size=100)))
    else:
        np.savez(path, **arrays)


def bad_folder(data, folder: Path) -> None:
    what = data.draw(st.sampled_from(["empty", "no_images", "unreadable", "mixed", "flat", "loop", "empty_class"]))
    folder.mkdir()
    if what == "no_images":
        (folder / "readme.txt").write_text("hello")
    elif what == "unreadable":
        for i in range(4):
            (folder / f"{i}.png").write_bytes(data.draw(st.binary(max_size=64)))
    elif what == "mixed":
        (folder / "a").mkdir()
        (folder / "a" / "0.png").write_bytes(_png(np.zeros((8, 8, 3), np.uint8)))
        (folder / "1.png").write_bytes(_png(np.zeros((8, 8, 3), np.uint8)))
    elif what == "flat":
        colour = data.draw(st.integers(0, 255))
        for c in ("a", "b"):
            (folder / c).mkdir()
            for i in range(4):
                (folder / c / f"{i}.png").write_bytes(_png(np.full((8, 8, 3), colour, np.uint8)))
    elif what == "loop":
        rng = np.random.default_rng(0)
        for c in ("a", "b"):
            (folder / c).mkdir()
            for i in range(4):
                (folder / c / f"{i}.png").write_bytes(_png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
        os.symlink(folder / "a", folder / "a" / "again")
    elif what == "empty_class":
        (folder / "a").mkdir()
        (folder / "b").mkdir()
        (folder / "b" / "0.png").write_bytes(_png(np.zeros((8, 8, 3), np.uint8)))


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_data_paths(world, capsys, data, monkeypatch_module):
    kind = data.draw(st.sampled_from(["missing", "file", "npz", "folder"]))
    path = world["root"] / f"data{next(_counter)}"
    if kind == "missing":
        path = path / data.draw(st.sampled_from(["x.npz", "images", "cifar10x"]))
    elif kind == "file":
        path.write_text(data.draw(_text(20)))
    elif kind == "npz":
        path = path.with_suffix(".npz")
        bad_npz(data, path)
    else:
        bad_folder(data, path)
    rejects(capsys, base("search", world) + ["--dataset", str(path)])


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    """A private cache for the decoded image folders of this module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SSNAS_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    yield mp
    mp.undo()
