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


def _clean(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values; NNI's web UI plots the number under "default"."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        elif hasattr(v, "item"):  # a tensor or numpy scalar
            v = v.item()
        out[k] = v
    return out


def parameters() -> dict[str, Any]:
    """This trial's parameters from the tuner ({} outside NNI)."""
    if not active():
        return {}
    import nni

    return dict(nni.get_next_parameter() or {})


def intermediate(metrics: dict[str, Any]) -> None:
    if active():
        import nni

        nni.report_intermediate_result(_clean(metrics))


def final(metrics: dict[str, Any]) -> None:
    if active():
        import nni

        nni.report_final_result(_clean(metrics))
