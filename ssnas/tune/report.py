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


def save_plots(study: Any, root: Path) -> tuple[list[Path], dict[str, str]]:
    """Optuna's matplotlib plots as PNG files; a plot the study cannot draw yet (too few trials) is skipped."""
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
            print(f"plots: {', '.join(p.name for p in result.plots)} in {root}")
        for name, why in skipped.items():
            print(f"plot {name} skipped: {why}")

