"""The package structure, read from every module's imports with `ast`: no import cycles, no upward imports across
the layers below, no module but the registry importing a search space or an objective, no private names imported
across modules, argparse only in the CLI, and no code outside the spaces comparing anything with a space's name."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Where each installed package's files are in the checkout (pyproject's [tool.setuptools.package-dir]).
FOLDERS = {"ssnas": ROOT / "ssnas", "ssnas.objectives": ROOT / "objectives", "ssnas.search_spaces": ROOT / "search_spaces"}

# Bottom to top: a module may import from its own layer (no cycles, checked separately) or from those below.
LAYERS = [
    ["ssnas.errors", "ssnas.files"],  # the one exception type; user files read within bounds, ours written atomically
    ["ssnas.config"],
    ["ssnas.python_genotypes"],  # genotypes.py files read with ast (no torch)
    ["ssnas.runs", "ssnas.data"],
    ["ssnas.nas", "ssnas.training"],  # the maths and the objective contract
    ["ssnas.kernels"],  # the exact speed route of ssnas.nas's modules
    ["ssnas.search_spaces", "ssnas.objectives", "ssnas.strategies"],  # the plugins and search strategies
    ["ssnas.registry"],  # names -> plugins
    ["ssnas.arch"],  # an architecture (and its network) from what the user types
    ["ssnas.model"],  # the network as a library object: create_model, preprocessing, pretrained weights
    ["ssnas.export"],
    ["ssnas.search", "ssnas.retrain", "ssnas.evaluate", "ssnas.continual"],  # the loops: the CLI's verbs
    ["ssnas.bench", "ssnas.tune"],  # loops that run other loops
    ["ssnas.nni_bridge"],  # the loops inside NNI
    ["ssnas.commands"],  # argparse
    ["ssnas.cli", "ssnas.__main__", "ssnas"],
]
LOOPS = ("ssnas.search", "ssnas.retrain", "ssnas.evaluate", "ssnas.continual", "ssnas.bench", "ssnas.tune")
PLUGINS = ("ssnas.search_spaces", "ssnas.objectives")
ARGPARSE_HOMES = ("ssnas.commands", "ssnas.cli")


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            if not any(name.startswith(p + ".") for p in FOLDERS if p != package and p.startswith(package)):
                found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement, at any depth of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [alias.name for alias in node.names]
            modules = [n for n in names if f"{base}.{n}" in MODULES]  # `from pkg import module`
            out += [(f"{base}.{n}", [], node.lineno) for n in modules]
            if len(modules) < len(names):
                out.append((base, [n for n in names if n not in modules], node.lineno))
    return out


EDGES = {m: [(target, names, line) for target, names, line in _imports(m, p) if target in MODULES]
         for m, p in MODULES.items()}


def _layer(name: str) -> int:
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if _under(name, [p]) and len(p) > best:
                best, rank = len(p), i
    assert rank >= 0, f"{name} is in no layer of tests/test_structure.py; add it to LAYERS"
    return rank


def test_every_module_has_a_layer():
    for name in MODULES:
        _layer(name)


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for target, _, _ in EDGES[m]:
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_no_upward_imports():
    upward = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)}), line {line}"
              for m, edges in EDGES.items() for t, _, line in edges if _layer(t) > _layer(m)]
    assert not upward, "\n".join(upward)


def test_only_the_registry_imports_spaces_and_objectives():
    """The loops (and export, pictures, show...) get spaces and objectives by name, through ssnas.registry."""
    bad = [f"{m} imports {t}, line {line}" for m, edges in EDGES.items() for t, _, line in edges
           if _under(t, PLUGINS) and not _under(m, PLUGINS) and m != "ssnas.registry"]
    assert not bad, "\n".join(bad)
    loops = [m for m in MODULES if _under(m, LOOPS)]
    assert len(loops) >= 8  # search, retrain, evaluate, bench and the tune package's modules


def test_no_private_names_across_modules():
    bad = [f"{m} imports {n} from {t}, line {line}" for m, edges in EDGES.items() for t, names, line in edges
           for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, "\n".join(bad)


def test_argparse_only_in_the_cli():
    bad = [m for m, p in MODULES.items() if not _under(m, ARGPARSE_HOMES)
           and any(t == "argparse" for t, _, _ in _imports(m, p))]
    assert not bad, f"argparse outside ssnas.commands and ssnas.cli: {bad}"


def test_nothing_outside_the_spaces_compares_with_a_space_name():
    names = {p.stem for p in FOLDERS["ssnas.search_spaces"].glob("*.py") if not p.stem.startswith("_")}
    bad = []
    for m, p in MODULES.items():
        if _under(m, ["ssnas.search_spaces"]):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Compare):
                consts = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                bad += [f"{m}, line {node.lineno}: compares with {v!r}" for v in consts if v in names]
    assert not bad, "\n".join(bad)


def test_every_package_is_installed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages == listed, f"pyproject.toml lists {sorted(listed)}, the tree has {sorted(packages)}"


@pytest.mark.parametrize("name", ["objectives", "search_spaces"])
def test_plugins_are_imported_through_the_ssnas_namespace_only(name):
    bad = [f"{m}, line {line}" for m, p in MODULES.items() for t, _, line in _imports(m, p) if _under(t, [name])]
    for test in (ROOT / "tests").glob("*.py"):
        bad += [f"{test.name}, line {line}" for t, _, line in _imports("tests." + test.stem, test) if _under(t, [name])]
    assert not bad, f"top-level `{name}` imported (use ssnas.{name}): {bad}"


def test_no_module_imports_one_name_twice_at_its_top():
    bad = []
    for m, p in MODULES.items():
        # `import a.b` and `import a.c` both bind the same package `a`: only names bound to one object count
        names = [a.asname or a.name for node in ast.parse(p.read_text()).body
                 if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names if a.asname or "." not in a.name]
        bad += [f"{m}: {n}" for n in set(names) if names.count(n) > 1]
    assert not bad, bad


def test_what_nnis_tuner_process_imports_stays_free_of_torch():
    import subprocess
    import sys

    code = "import sys, ssnas.tune.study, ssnas.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True, timeout=300)
    assert out.stdout.strip() == "False"
