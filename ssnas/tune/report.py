"""What a study leaves behind: the best config (TOML that `ssnas search`/`ssnas retrain` take with --config), a
study.json summary and Optuna's plots as PNG files, all in the study's folder."""
from __future__ import annotations

import copy
import dataclasses
import warnings
from pathlib import Path
from typing import Any, Callable

from ssnas.config import apply_overrides, to_dict
from ssnas.runs import checkpoint


# Below this many completed trials, parameter importances (fANOVA's random forest, or PED-ANOVA) mostly measure
# which parameters the few trials happened to vary; the plot is drawn with a caveat and the summary repeats it.
IMPORTANCE_MIN_TRIALS = 10


def importance_caveat(complete: int) -> str:
    return (f"from {complete} completed trial(s) only: importances below {IMPORTANCE_MIN_TRIALS} trials "
            f"reflect chance more than the parameters")


def _drop_none(data: Any) -> Any:
    """TOML has no null: an unset (None) setting is left out, so loading the file leaves it unset too."""
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    return data


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _toml(data: dict[str, Any], header: list[str]) -> str:
    import tomli_w

    return "".join(f"# {line}\n" for line in header) + "\n" + tomli_w.dumps(_drop_none(data))


def best_config(base: Any, params: dict[str, Any]) -> Any:
    """The study's config with the best parameters applied, as a fresh run (output folder back to the default)."""
    cfg = apply_overrides(copy.deepcopy(base), params)
    cfg.run = dataclasses.replace(cfg.run, out=type(cfg)().run.out, resume=False, stop_after=0)
    return cfg


def write_best(study: Any, base: Any, target: str, root: Path, url: str) -> tuple[Path, Path] | None:
    """best_config.toml (the whole config) and best_params.toml (only the tuned keys, which `ssnas search` and
    `ssnas retrain` both accept); None while no trial has completed."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = study.best_trial
    command = "ssnas retrain" if target == "genotype" else "ssnas search"
    header = [f"ssnas tune: best trial #{best.number} of study {study.study_name!r} ({url}),",
              f"kNN top-1 {best.value:.4f} on the held-out validation split after {base.optim.epochs} epoch(s).",
              f"Use: {command} --config THIS_FILE (a trial is short: raise --epochs for the full run)."]
    config_path, params_path = root / "best_config.toml", root / "best_params.toml"
    checkpoint.write_text(config_path, _toml(to_dict(best_config(base, best.params)), header))
    checkpoint.write_text(params_path, _toml(_nest(best.params), header[:2] + [
        "Only the tuned keys: add them to any run with ssnas search/retrain --config THIS_FILE."]))
    return config_path, params_path


def summary(study: Any, url: str) -> dict[str, Any]:
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
               "out": t.user_attrs.get("out"), "error": t.user_attrs.get("error")}
              for t in study.get_trials(deepcopy=False)]
    done = [t for t in trials if t["state"] == "COMPLETE"]
    best = max(done, key=lambda t: t["value"]) if done else None
    return {"study": study.study_name, "storage": url, "direction": "maximize", "metric": "knn_top1",
            "best": best, "trials": trials}


def _importance(study: Any) -> Any:
    from optuna.visualization import matplotlib as plots

    try:  # fANOVA (Optuna's default) needs scikit-learn; PED-ANOVA does not
        import sklearn  # noqa: F401

        return plots.plot_param_importances(study)
    except ImportError:
        from optuna.importance import PedAnovaImportanceEvaluator

        return plots.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())


def _full_axis_names(axes: Any, study: Any) -> None:
    """Optuna's parallel-coordinate plot cuts parameter names to 17 characters ('augment.crop_scal...'): put the
    full names back (each cut name is a prefix of exactly one parameter), slanted so they do not collide."""
    params = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
    ax = axes.flat[0] if hasattr(axes, "flat") else axes
    names = []
    for label in ax.get_xticklabels():
        text = label.get_text()
        if text.endswith("..."):
            match = [p for p in params if p.startswith(text[:-3])]
            text = match[0] if len(match) == 1 else text
        names.append(text)
    ax.set_xticks(ax.get_xticks(), names, rotation=25, ha="right", fontsize=9)
    ax.figure.set_size_inches(max(8.0, 1.9 * len(names)), 6.0)


def _caveat(axes: Any, text: str) -> None:
    """A red line under the plot (the figure is saved with a tight box, so it stays in the picture)."""
    ax = axes.flat[0] if hasattr(axes, "flat") else axes
    ax.text(0.0, -0.16, text, transform=ax.transAxes, ha="left", va="top", fontsize=9, color="#b00000")


def save_plots(study: Any, root: Path) -> tuple[list[Path], dict[str, str]]:
    """Optuna's matplotlib plots as PNG files; a plot the study cannot draw yet (too few trials) is skipped, and
    the importance plot of a study with fewer than IMPORTANCE_MIN_TRIALS completed trials says it is noise."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    makers: dict[str, tuple[Callable[[Any], Any], int]] = {  # plot, completed trials it needs
        "history.png": (plots.plot_optimization_history, 1),
        "intermediate_values.png": (plots.plot_intermediate_values, 0),
        "parallel_coordinate.png": (plots.plot_parallel_coordinate, 2),
        "importance.png": (_importance, 2),
    }
    saved, skipped = [], {}
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    for name, (make, needs) in makers.items():
        if complete < needs:
            skipped[name] = f"{complete} completed trial(s); it needs {needs}"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" warnings of optuna.visualization.matplotlib
                axes = make(study)
            if name == "parallel_coordinate.png":
                _full_axis_names(axes, study)
            if name == "importance.png" and complete < IMPORTANCE_MIN_TRIALS:
                _caveat(axes, importance_caveat(complete))
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.savefig(root / name, dpi=120, bbox_inches="tight")
            plt.close(figure)
            saved.append(root / name)
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as e:
            skipped[name] = str(e).splitlines()[0] if str(e) else type(e).__name__
            plt.close("all")
    return saved, skipped


def write_outputs(result: Any, tune: Any, base: Any, url: str) -> None:
    """Best config, summary and plots after a session, and a short report on stdout."""
    study, root = result.study, result.root
    root.mkdir(parents=True, exist_ok=True)
    info = summary(study, url)
    checkpoint.write_json(root / "study.json", info)
    states = [t["state"] for t in info["trials"]]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
                       if s in states)
    print(f"study {study.study_name!r}: {len(states)} trials ({counts or 'none yet'}); summary: {root / 'study.json'}")
    written = write_best(study, base, tune.target, root, url)
    if written is None:
        print("no trial has completed yet, so there is no best config")
    else:
        result.best_config, result.best_params = written
        best = info["best"]
        print(f"best trial #{best['number']}: kNN top-1 {best['value']:.4f} with "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items()))
        print(f"best config: {written[0]} (only the tuned keys: {written[1]})")
    if tune.plots and states:
        result.plots, skipped = save_plots(study, root)
        if result.plots:
            print(f"plots: {', '.join(p.name for p in result.plots)} in {root} (live while a study runs: "
                  f"pip install optuna-dashboard; optuna-dashboard {url})")
        complete = states.count("COMPLETE")
        if root / "importance.png" in result.plots and complete < IMPORTANCE_MIN_TRIALS:
            print(f"importance.png is {importance_caveat(complete)}")
        for name, why in skipped.items():
            print(f"plot {name} skipped: {why}")

