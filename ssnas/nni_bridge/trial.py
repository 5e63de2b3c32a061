"""The process an NNI trial runs: `python -m ssnas.nni_bridge.trial tune SPEC` or `python -m ssnas.nni_bridge.trial search CONFIG`.

`tune`: takes the Optuna trial the tuner asked for (its number is in the NNI parameters), trains and scores it
with `ssnas.tune.TrialRunner` (the same code as `ssnas tune` without --nni) and reports the final result to NNI;
the tuner tells the study. `search`: runs `ssnas.search.run_search`, reporting each epoch and the final genotype.
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


def _numbers(stats: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in stats.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


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
    runner = TrialRunner(tune, base, from_json(data["params"]), Path(data["root"]),
                         TuneData.from_file(Path(data["data"])),  # split and saved once by the launcher
                         on_report=nni_report.intermediate)
    try:
        runner(trial)
    except optuna.TrialPruned:
        pass  # runner.last says "pruned"; the tuner tells the study
    except TrialFailed as e:
        print(f"ssnas: error: {e}", file=sys.stderr)
        return 2  # no final result: the tuner marks the trial failed
    nni_report.final(runner.last)
    return 0


def search_trial(config: Path) -> int:
    cfg = from_dict(SearchConfig, json.loads(config.read_text()))
    nni_report.parameters()  # the settings, shown in the web UI; the run reads them from the file
    last: dict[str, Any] = {}

    def on_epoch(epoch: int, stats: dict[str, Any]) -> None:
        last.update({"default": stats["loss"], "epoch": epoch + 1, **_numbers(stats)})
        nni_report.intermediate(last)

    result = run_search(cfg, on_epoch=on_epoch)
    last.setdefault("default", 0.0)  # a resumed search that had nothing left to run
    nni_report.final({**last, "epochs_run": result.epochs_run, "finished": int(result.finished),
                      "genotype": json.dumps(result.genotype.to_json()), "out": str(result.out)})
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
