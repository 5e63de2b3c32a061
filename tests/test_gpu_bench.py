"""benchmarks/gpu.sh, the one script that takes every GPU figure, runs on the CPU at toy sizes (no GPU here): every
row it promises is there, measured or with its reason, and the derived figures follow from the rows."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import ROOT, requires_fashion


@pytest.mark.slow
@requires_fashion
@pytest.mark.timeout(1500)
def test_gpu_script_runs_on_cpu_at_toy_sizes(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--device", "cpu", "--tiny", "--out", str(out),
                           "--data-root", "/nonexistent-root"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1400, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["tiny"] and result["processes"] == 2 and "not GPU figures" in result["note"]
    rows = {r["name"]: r for r in result["rows"]}
    for objective in ("supervised", "simclr"):
        one = rows[f"ssnas {objective} 1 process, kernels textbook, fp32"]
        two = rows[f"ssnas {objective} 2 processes (torchrun), default kernels and precision"]
        assert "error" not in one and "error" not in two, (one, two)
        assert one["world_size"] == 1 and two["world_size"] == 2 and two["global_batch_size"] == 16
        assert one["images_per_s"] > 0 and two["images_per_s"] > 0 and one["peak_mem_mb"] > 0
        derived = result["derived"][objective]
        assert derived["projected_50_epoch_search_h_1_process"] == pytest.approx(
            50 * 25_000 / one["images_per_s"] / 3600, rel=0.01)
        assert derived["scaling_efficiency"] == pytest.approx(
            two["images_per_s"] / (2 * one["images_per_s"]), abs=0.002)
    assert "CIFAR-10" in rows["NNI 3.0 DARTS supervised 1 process"]["skipped"]  # said why, not silently left out
