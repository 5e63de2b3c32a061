"""NNI tuners: Optuna's study behind NNI's tuner interface (ask/tell), and a one-trial tuner for `ssnas search --nni`.

NNI has no Optuna integration (NNI issue #3685, closed without one; papers.md Sec. 7), but its custom-tuner
interface (`generate_parameters` / `receive_trial_result` / `trial_end`, papers.md Sec. 6.2) maps onto Optuna's
ask/tell: every NNI trial is an Optuna trial of the same study, in the same storage, so `ssnas tune` with or
without --nni continues the same study.
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from nni import NoMoreTrialError
from nni.tuner import Tuner

from ssnas.tune.study import distributions, from_json
from ssnas.tune.study import open_study


class OptunaTuner(Tuner):
    """Samples with the study's TPE sampler; results go back to the study (pruned trials as PRUNED)."""

    def __init__(self, spec: str, optimize_mode: str = "maximize"):
        super().__init__()
        data = json.loads(Path(spec).read_text())
        self.params = from_json(data["params"])
        self.study = open_study(data["storage"], data["tune"]["study"], seed=data["config"]["run"]["seed"],
                                create=False)
        self.optimize_mode = optimize_mode  # read by NNI's web UI to rank trials
        self.numbers: dict[int, int] = {}  # NNI parameter id -> Optuna trial number, until the trial is told

    def update_search_space(self, search_space: dict[str, Any]) -> None:
        """The space is the study's (ssnas.tune.space); NNI holds a copy only to show it on the overview page."""

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        trial = self.study.ask(distributions(self.params))  # enqueued (re-run) trials come out first
        # the worker overwrites these when it starts; until then a crash is recognised by this (dead) process
        trial.set_user_attr("ssnas_host", socket.gethostname())
        trial.set_user_attr("ssnas_pid", os.getpid())
        trial.set_user_attr("nni_parameter_id", parameter_id)
        self.numbers[parameter_id] = trial.number
        return {"optuna_trial": trial.number, **trial.params}

    def receive_trial_result(self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any) -> None:
        from optuna.trial import TrialState

        number = self.numbers.pop(parameter_id, parameters.get("optuna_trial"))
        metrics = value if isinstance(value, dict) else {"default": value}
        if metrics.get("pruned"):
            self.study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
        else:
            self.study.tell(number, float(metrics["default"]), skip_if_finished=True)

    def trial_end(self, parameter_id: int, success: bool, **kwargs: Any) -> None:
        """A trial that ended without a final result failed (its error is in its user attributes and log)."""
        from optuna.trial import TrialState

        number = self.numbers.pop(parameter_id, None)
        if number is not None:
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


class FixedTuner(Tuner):
    """One trial with the given parameters (the settings of a `ssnas search --nni` run, shown in the UI)."""

    def __init__(self, parameters: dict[str, Any], optimize_mode: str = "minimize"):
        super().__init__()
        self.parameters = parameters
        self.optimize_mode = optimize_mode  # what NNI's web UI shows and ranks by: the search reports its loss
        self.given = False

    def update_search_space(self, search_space: dict[str, Any]) -> None:
        pass

    def generate_parameters(self, parameter_id: int, **kwargs: Any) -> dict[str, Any]:
        if self.given:
            raise NoMoreTrialError("a search is a single trial")
        self.given = True
        return self.parameters

    def receive_trial_result(self, parameter_id: int, parameters: dict[str, Any], value: Any, **kwargs: Any) -> None:
        pass
