"""CPU threads: the default count (affinity, cgroup quota, OMP_NUM_THREADS), --threads, and the OpenMP wait policy
the CLI sets before torch loads."""
import subprocess
import sys

import pytest
import torch

from ssnas.errors import UserError
from ssnas.runs import threads
from tests.conftest import ROOT


def test_default_is_the_smallest_of_affinity_quota_omp_num_threads_and_idle_cpus():
    def default(env=None, affinity=2, quota=None, busy=0):
        return threads.default_threads(env or {}, affinity=affinity, quota=quota, busy=busy)

    assert default() == threads.ThreadChoice(2, "CPUs in this process's affinity")
    assert default(affinity=8, quota=1.5).count == 2  # a 1.5-CPU quota: 2 threads, not 8
    assert "quota" in default(affinity=8, quota=1.5).why
    assert default({"OMP_NUM_THREADS": "1"}, affinity=8, quota=4.0) == threads.ThreadChoice(1, "OMP_NUM_THREADS=1")
    assert default({"OMP_NUM_THREADS": "junk"}, affinity=3).count == 3
    assert default(affinity=4, quota=0.2).count == 1  # never 0
    # another process busy on one of 2 cores: one thread; busier than the machine: still one
    assert default(busy=1) == threads.ThreadChoice(1, "1 of 2 CPUs busy with other processes")
    assert default(busy=9).count == 1 and default(affinity=8, busy=3).count == 5
    assert default({"OMP_NUM_THREADS": "2"}, busy=5).count == 2  # the user's choice stands


def test_busy_cpus_reads_the_runnable_tasks_less_this_process(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("9.10 9.86 10.47 8/138 12884\n")
    assert threads.busy_cpus(samples=3, interval_s=0, path=loadavg) == 7
    loadavg.write_text("0.00 0.01 0.05 1/120 99\n")
    assert threads.busy_cpus(samples=1, path=loadavg) == 0
    assert threads.busy_cpus(samples=1, path=tmp_path / "missing") == 0


def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpus(tmp_path, "0::/job\n") == pytest.approx(1.5)
    (tmp_path / "job" / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpus(tmp_path, "0::/job\n") is None
    v1 = tmp_path / "cpu,cpuacct" / "box"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpus(tmp_path, "4:cpu,cpuacct:/box\n") == pytest.approx(2.0)
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpus(tmp_path, "4:cpu,cpuacct:/box\n") is None
    assert threads.cgroup_cpus(tmp_path / "nothing", "0::/\n") is None


def test_the_wait_policy_is_set_only_where_the_user_has_not():
    env = {}
    assert threads.prepare_environment(env) == {"OMP_WAIT_POLICY": "PASSIVE"} and env["OMP_WAIT_POLICY"] == "PASSIVE"
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.prepare_environment(env) == {} and env == {"OMP_WAIT_POLICY": "ACTIVE"}
    env = {"GOMP_SPINCOUNT": "10000"}
    assert threads.prepare_environment(env) == {} and "OMP_WAIT_POLICY" not in env


def test_threads_flag_sets_torch_and_refuses_negative_counts():
    before = torch.get_num_threads()
    try:
        assert threads.apply(2) == threads.ThreadChoice(2, "--threads") and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UserError, match="--threads"):
        threads.resolve(-1)


@pytest.mark.slow
def test_the_cli_sets_the_policy_before_torch_loads():
    """In a fresh process: by the time a command module (and so torch) is imported, the policy is in the
    environment, and torch's OpenMP runtime was loaded after it."""
    code = ("import os, sys; from ssnas.cli import main; sys.argv = ['ssnas', 'list'];\n"
            "assert 'torch' not in sys.modules; main(['list']); print('policy', os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                         check=True, timeout=300).stdout
    assert "policy PASSIVE" in out
