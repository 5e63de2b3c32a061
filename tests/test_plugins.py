"""Spaces and objectives from other packages, through the entry-point groups ssnas.search_spaces and ssnas.objectives:
a real package (tests/plugin_example) installed with pip and searched with, and the registry's rules on metadata
written into a temporary site folder (importlib.metadata reads it as it reads any installed package)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ssnas import registry
from ssnas.errors import UserError
from tests.conftest import ROOT, requires_fashion

EXAMPLE = ROOT / "tests" / "plugin_example"


def _docs_block(doc: str) -> str:
    return re.search(r"```python\n(.*?)```", (ROOT / "docs" / doc).read_text(), re.S).group(1)


def test_the_example_package_holds_the_documented_examples_word_for_word():
    package = EXAMPLE / "ssnas_plugin_example"
    assert (package / "toy.py").read_text() == _docs_block("spaces.md")
    assert (package / "align_uniform.py").read_text() == _docs_block("objectives.md")


@pytest.mark.slow
@requires_fashion
@pytest.mark.timeout(600)
def test_an_installed_plugin_package_runs_a_search_with_its_space_and_objective(tmp_path):
    import importlib.util

    site = tmp_path / "site"
    # with `wheel` at hand (the test extra installs it) the build needs no index; else pip fetches setuptools
    isolation = [] if importlib.util.find_spec("wheel") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(site),
                    str(EXAMPLE)], check=True, timeout=300, capture_output=True)
    assert list(site.glob("ssnas_plugin_example-0.1.0.dist-info"))
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    shown = subprocess.run([sys.executable, "-m", "ssnas", "list"], capture_output=True, text=True, env=env,
                           check=True, timeout=300, cwd=tmp_path).stdout
    assert re.search(r"toy\s+plugin: ssnas-plugin-example 0.1.0 \(ssnas_plugin_example.toy\)", shown), shown
    assert re.search(r"align_uniform\s+plugin: ssnas-plugin-example 0.1.0", shown), shown
    out = tmp_path / "run"
    argv = ["search", "--space", "toy", "--objective", "align_uniform", "--set", "objective.weight=0.5",
            "--dataset", "fashion-mnist", "--subset", "64", "--layers", "2", "--init-channels", "4", "--epochs", "1",
            "--batch-size", "8", "--steps-per-epoch", "2", "--view-size", "16", "--proj-dim", "8", "--device", "cpu",
            "--no-progress", "--no-tensorboard", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "ssnas", *argv], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    genotype = json.loads((out / "genotype.json").read_text())
    assert genotype["space"] == "toy" and len(genotype["ops"]) == 3
    steps = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"align", "uniform"} <= set(steps[0])  # the plugin objective's own terms were logged


# ---- the registry's rules, on metadata in a temporary site folder ----------------------------------------------

def _site(tmp_path: Path, monkeypatch, entry_points: str, modules: dict[str, str]) -> None:
    """A package 'demo-plugins 1.2' with `modules` and `entry_points`, importable from tmp_path."""
    info = tmp_path / "demo_plugins-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugins\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text(entry_points)
    for name, code in modules.items():
        (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.refresh()


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    registry.refresh()
    for name in ("demo_broken", "demo_objective", "demo_space"):
        sys.modules.pop(name, None)


OBJECTIVE = '''
from ssnas.training.objective import Objective
class Mean(Objective):
    name = "{name}"
    def forward(self, encoder, batch):
        loss = encoder(batch.views[0]).mean()
        return {{"loss": loss}}
'''


def test_a_plugin_objective_by_class_and_a_shadowed_name(tmp_path, monkeypatch):
    _site(tmp_path, monkeypatch, "[ssnas.objectives]\nmean_feature = demo_objective:Mean\nsimclr = demo_objective\n",
          {"demo_objective": OBJECTIVE.format(name="mean_feature")})
    assert "mean_feature" in registry.available_objectives()
    assert registry.objective("mean-feature").__name__ == "Mean"
    assert registry.source("objective", "mean_feature") == "plugin: demo-plugins 1.2 (demo_objective:Mean)"
    # a built-in name is never taken over, and the listing says the plugin's is ignored
    assert registry.objective("simclr").__module__ == "ssnas.objectives.simclr"
    assert "demo-plugins 1.2's demo_objective of the same name is ignored" in registry.source("objective", "simclr")


@pytest.mark.parametrize("entry,modules,needle", [
    ("[ssnas.search_spaces]\nbroken = demo_broken\n", {"demo_broken": "import no_such_module_here\n"},
     "cannot load the space 'broken' that demo-plugins 1.2 registers as demo_broken: ModuleNotFoundError"),
    ("[ssnas.search_spaces]\nhalf = demo_space\n", {"demo_space": "NAME = 'half'\n"},
     "demo_space (from demo-plugins 1.2) does not fulfil the space contract: it lacks PRIMITIVES"),
    ("[ssnas.objectives]\nother = demo_objective\n", {"demo_objective": OBJECTIVE.format(name="mean_feature")},
     "Mean.name is 'mean_feature' but it is registered as 'other'"),
])
def test_broken_plugins_are_one_line_errors_naming_the_package(tmp_path, monkeypatch, entry, modules, needle):
    _site(tmp_path, monkeypatch, entry, modules)
    kind = "space" if "search_spaces" in entry else "objective"
    name = entry.split("\n")[1].split(" =")[0]
    with pytest.raises(UserError, match=re.escape(needle)) as e:
        registry.space(name) if kind == "space" else registry.objective(name)
    assert "\n" not in str(e.value)
