"""CPU threads: how many torch may use, and how they wait for each other.

Two things make a busy machine slow, and they are set in two places:
- the OpenMP wait policy (`OMP_WAIT_POLICY`), which libgomp reads once, when torch loads it: `prepare_environment`
  runs first thing in the CLI, before anything imports torch, and sets the policy only where the user has not;
- the thread count, `torch.set_num_threads`, which any time before the work starts may set: `apply` does it from
  `--threads` (0 = `default_threads()`).

`default_threads()` is the CPUs this process may really use: its CPU affinity, the container's CPU quota (cgroup
v2 `cpu.max`, or v1 `cpu.cfs_quota_us`), OMP_NUM_THREADS when set, and the CPUs other processes are not busy on
right now (the runnable tasks in /proc/loadavg, sampled at start), whichever is smallest. A second thread only pays
when a core is free for it: when other work keeps the cores busy, each barrier waits for a partner thread that is
queued behind that work, and one thread ran faster (BENCHMARKS.md, "Threads on a shared machine", has the
measurements behind these defaults). The count is chosen once, when a run starts.

This module must not import torch at its top: the CLI calls `prepare_environment` before torch is loaded.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, MutableMapping

from ssnas.errors import UserError

# With libgomp's default (active) policy, a thread that reaches a barrier spins for a while before it sleeps. On a
# machine whose cores other processes also want, the spinning thread burns the time slice its partner needs, and
# a search step ran 2-20x slower; PASSIVE makes it sleep at once (BENCHMARKS.md, "Threads on a shared machine").
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}
CGROUP = Path("/sys/fs/cgroup")


def prepare_environment(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set the OpenMP wait policy in the environment unless the user set it (or GOMP_SPINCOUNT, which tunes the
    same thing); returns what was set. Only effective before torch is imported (ssnas.cli calls it first)."""
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" in env or "GOMP_SPINCOUNT" in env:
        return {}
    env.update(WAIT_POLICY)
    return dict(WAIT_POLICY)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpus(root: Path = CGROUP, proc_cgroup: str | None = None) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when there is none or it is unreadable.
    Reads cgroup v2 (`cpu.max`: "QUOTA PERIOD" or "max PERIOD") and v1 (`cpu.cfs_quota_us`, -1 = none)."""
    text = proc_cgroup if proc_cgroup is not None else (_read(Path("/proc/self/cgroup")) or "")
    quotas = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        rel = path.lstrip("/")
        if controllers == "":  # v2: one unified hierarchy
            value = _read(root / rel / "cpu.max") or _read(root / "cpu.max")
            if value:
                quota, _, period = value.partition(" ")
                if quota != "max" and period:
                    quotas.append(int(quota) / int(period))
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own hierarchy
            for folder in (root / controllers / rel, root / "cpu" / rel, root / "cpu,cpuacct" / rel):
                quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                if quota and period:
                    if int(quota) > 0:
                        quotas.append(int(quota) / int(period))
                    break
    return min(quotas) if quotas else None


def affinity_cpus() -> int:
    """CPUs the scheduler lets this process run on (taskset, cpusets), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cpus(samples: int = 5, interval_s: float = 0.02, path: Path = Path("/proc/loadavg")) -> int:
    """CPUs that other processes keep busy now: the runnable tasks of /proc/loadavg ("R/T", R counting this
    process too) less one, the median of a few samples (an instant's count is noisy); 0 when unreadable."""
    counts = []
    for i in range(samples):
        text = _read(path)
        try:
            counts.append(max(0, int(text.split()[3].split("/")[0]) - 1) if text else 0)
        except (IndexError, ValueError):
            return 0
        if i + 1 < samples:
            time.sleep(interval_s)
    return sorted(counts)[len(counts) // 2]


@dataclass(frozen=True)
class ThreadChoice:
    count: int
    why: str  # e.g. "2 CPUs in this process's affinity", "--threads", "OMP_NUM_THREADS=1"


def default_threads(environ: Mapping[str, str] | None = None, affinity: int | None = None,
                    quota: float | None = -1.0, busy: int | None = None) -> ThreadChoice:
    """min(CPU affinity, cgroup CPU quota rounded up, OMP_NUM_THREADS when set, else the CPUs not busy with other
    processes), at least 1, with the reason."""
    env = os.environ if environ is None else environ
    cpus = affinity if affinity is not None else affinity_cpus()
    options = [(cpus, "CPUs in this process's affinity")]
    quota = cgroup_cpus() if quota == -1.0 else quota
    if quota is not None:
        options.append((max(1, math.ceil(quota)), f"CPU quota of this container ({quota:g} CPUs)"))
    omp = env.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        options.append((int(omp), f"OMP_NUM_THREADS={omp}"))
    else:  # the user's OMP_NUM_THREADS stands; otherwise leave the cores other work keeps busy to it
        busy = busy_cpus() if busy is None else busy
        if busy:
            options.append((max(1, cpus - busy), f"{min(busy, cpus)} of {cpus} CPUs busy with other processes"))
    count, why = min(options, key=lambda o: o[0])
    return ThreadChoice(max(count, 1), why)


def resolve(requested: int) -> ThreadChoice:
    """`--threads N`: N itself; 0: the default."""
    if requested < 0:
        raise UserError(f"--threads must be 0 (automatic) or a positive count, got {requested}")
    if requested:
        return ThreadChoice(requested, "--threads")
    return default_threads()


def apply(requested: int) -> ThreadChoice:
    """Resolve and set torch's intra-op thread count (before data loads and models are built)."""
    import torch

    choice = resolve(requested)
    if torch.get_num_threads() != choice.count:
        torch.set_num_threads(choice.count)
    return choice


def describe(choice: ThreadChoice, environ: Mapping[str, str] | None = None) -> str:
    """'2 (CPUs in this process's affinity; OpenMP waits passively)' for the start-up summary."""
    env = os.environ if environ is None else environ
    policy = env.get("OMP_WAIT_POLICY", "")
    wait = f"OMP_WAIT_POLICY={policy}" if policy else (
        f"GOMP_SPINCOUNT={env['GOMP_SPINCOUNT']}" if "GOMP_SPINCOUNT" in env else "OpenMP's default wait policy")
    return f"{choice.count} ({choice.why}; {wait})"
