"""The process an NNI trial runs: `python -m ssnas.nni_bridge.trial tune SPEC` or `python -m ssnas.nni_bridge.trial search CONFIG`.

`tune`: takes the Optuna trial the tuner asked for (its number is in the NNI parameters), trains and scores it
with `ssnas.tune.TrialRunner` (the same code as `ssnas tune` without --nni) and reports the final result to NNI;
the tuner tells the study. `search`: runs `ssnas.search.run_search`, reporting each epoch's loss.

Each trial reports one number per epoch and one at the end (the tuned score, or the search's loss): NNI's web UI
makes every key of a metric dict an axis of its hyper-parameter view, so the diagnostics, the genotype and the
epoch lines go to the trial's log (stdout) instead.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

from ssnas.config import from_dict
from ssnas.errors import UserError
from ssnas.nni_bridge import report as nni_report
from ssnas.search import SearchConfig, run_search
from ssnas.tune.session import TrialFailed, TrialRunner, TuneConfig, TuneData, config_class, make_pruner, open_study
from ssnas.tune.study import from_json


def _to_log(what: str, numbers: dict[str, Any]) -> None:
    """Diagnostics go to the trial's log (its stdout, shown by the web UI's trial detail), not into the metric:
    NNI makes every metric key an axis of its hyper-parameter view."""
    print(f"ssnas {what}: " + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in numbers.items()), flush=True)


def tune_trial(spec: Path) -> int:
    import optuna


    data = json.loads(spec.read_text())
    tune = from_dict(TuneConfig, data["tune"])
    base = from_dict(config_class(data["target"]), data["config"])
    number = int(nni_report.parameters()["optuna_trial"])
    study = open_study(data["storage"], tune.study, make_pruner(tune, base.optim.epochs), create=False)
    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    # the trial the tuner asked for: its parameters are set, so the runner's suggest_* calls return them
    trial = optuna.trial.Trial(study, frozen._trial_id)

    def report(numbers: dict[str, Any]) -> None:
        _to_log(f"trial {number}, epoch {numbers['epoch']}", {k: v for k, v in numbers.items() if k != "epoch"})
        nni_report.intermediate(numbers["default"])  # one metric: kNN top-1, the study's objective

    runner = TrialRunner(tune, base, from_json(data["params"]), Path(data["root"]),
                         TuneData.from_file(Path(data["data"])),  # split and saved once by the launcher
                         on_report=report)
    try:
        runner(trial)
    except optuna.TrialPruned:
        # the study learns it here (with the last score as its value); the tuner's tell is then a no-op
        study.tell(trial, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
        print(f"ssnas trial {number}: pruned after epoch {runner.last.get('epoch')}", flush=True)
    except TrialFailed as e:
        print(f"ssnas: error: {e}", file=sys.stderr)
        return 2  # no final result: the tuner marks the trial failed
    if "genotype" in runner.last:
        print(f"ssnas trial {number}: genotype {runner.last['genotype']}", flush=True)
    nni_report.final(runner.last["default"])
    return 0


def search_trial(config: Path) -> int:
    cfg = from_dict(SearchConfig, json.loads(config.read_text()))
    nni_report.parameters()  # the settings, shown in the web UI; the run reads them from the file
    last: dict[str, Any] = {}

    def on_epoch(epoch: int, stats: dict[str, Any]) -> None:
        # one metric, the epoch's mean loss (the launcher tells the web UI to minimise it); the rest is in the
        # epoch line the search prints to this trial's log
        last.update({"loss": stats["loss"], "epoch": epoch})
        nni_report.intermediate(stats["loss"])

    result = run_search(cfg, on_epoch=on_epoch)
    print(f"ssnas search: genotype {json.dumps(result.genotype.to_json())} ({result.out / 'genotype.json'}), "
          f"{result.epochs_run} epoch(s) run, {'finished' if result.finished else 'stopped'}", flush=True)
    nni_report.final(last.get("loss", 0.0))  # 0.0: a resumed search that had nothing left to run
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("tune", "search"):
        print("usage: python -m ssnas.nni_bridge.trial {tune SPEC.json | search CONFIG.json} (started by NNI)",
              file=sys.stderr)
        return 2
    try:
        return tune_trial(Path(args[1])) if args[0] == "tune" else search_trial(Path(args[1]))
    except UserError as e:
        print(f"ssnas: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
