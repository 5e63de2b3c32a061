"""Report metrics to NNI when running as an NNI trial; do nothing otherwise.

NNI's local training service starts a trial with NNI_PLATFORM set (and NNI_TRIAL_JOB_ID); outside a trial `nni`
is not even imported, so runs without the `nni` extra never notice this module.
"""
from __future__ import annotations

import math
import os
from typing import Any


def active() -> bool:
    """True inside a trial that an NNI experiment started."""
    return os.environ.get("NNI_PLATFORM", "") not in ("", "unittest") and bool(os.environ.get("NNI_TRIAL_JOB_ID"))


def _clean(metric: Any) -> Any:
    """A JSON-safe number (or dict of them); NNI's web UI plots a number, or a dict's "default"."""
    if isinstance(metric, dict):
        return {k: _clean(v) for k, v in metric.items()}
    if hasattr(metric, "item"):  # a tensor or numpy scalar
        metric = metric.item()
    if isinstance(metric, float) and not math.isfinite(metric):
        return None
    return metric


def parameters() -> dict[str, Any]:
    """This trial's parameters from the tuner ({} outside NNI)."""
    if not active():
        return {}
    import nni

    return dict(nni.get_next_parameter() or {})


def intermediate(metric: float) -> None:
    """One number per epoch (report one metric: NNI makes each key of a dict an axis of its views)."""
    if active():
        import nni

        nni.report_intermediate_result(_clean(metric))


def final(metric: float) -> None:
    if active():
        import nni

        nni.report_final_result(_clean(metric))
