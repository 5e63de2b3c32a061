"""Several processes under torchrun (gloo on CPU) against one process on the global batch.

Bit-identical: what every rank holds (the alphas, hence the genotype at every epoch), since each rank applies the
same all-reduced gradients. Within float64 rounding (1e-12): one step of 2 ranks x B against 1 process x 2B, with
BN over the global batch (--sync-bn), for every objective: the loss, the alphas' gradients, the updated alphas and
weights, CLSA's queue. A tiny float32 search: the same genotype at every epoch as one process; the alphas agree
within 1e-4 (a third of one Adam step of 3e-4: Adam divides each gradient by its own running size, so float32
rounding in a near-zero gradient can move an alpha by up to the step size; in float64, above, they agree to 1e-15).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssnas.data.augment import AugmentConfig, Shard, ViewMaker
from ssnas.data.strong_augment import StrongAugment, StrongViewMaker
from ssnas.errors import UserError
from ssnas.runs.distributed import SINGLE, Ranks, fingerprint
from ssnas.runs.settings import resume_changes
from tests.conftest import FASHION_DIR, ROOT, requires_fashion

F64 = dict(rtol=1e-12, atol=1e-12)


def torchrun(args: list[str], log: Path, timeout: float = 400, procs: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node 2 ARGS` from the checkout, output in `log` (bounded wait)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), *args]
    with log.open("w") as f:
        return subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})


def _ranks_rows(path: Path) -> tuple[dict, dict]:
    return json.loads((path / "rank0.json").read_text()), json.loads((path / "rank1.json").read_text())


# ---- no processes ------------------------------------------------------------------------------------------------

def test_a_shard_gets_the_views_one_process_makes_of_its_rows():
    images = torch.randint(0, 256, (8, 12, 12, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    maker = ViewMaker(AugmentConfig(blur_p=0.5), [0.5] * 3, [0.25] * 3)
    strong = StrongViewMaker(maker, StrongAugment(aug_times=3))
    for make in (maker, strong):
        whole = make(images, torch.Generator().manual_seed(1))
        for rank in range(2):
            part = make(images[4 * rank:4 * rank + 4], torch.Generator().manual_seed(1), Shard(4 * rank, 8))
            torch.testing.assert_close(part, whole[4 * rank:4 * rank + 4], rtol=0, atol=1e-6)


def test_single_process_ranks_are_the_identity():
    t = torch.randn(3, 2, requires_grad=True)
    assert SINGLE.gather(t) is t and SINGLE.all_reduce_sum(t) is t and SINGLE.rows(6) == slice(0, 6)
    assert SINGLE.average([t, None]) == [t, None] and SINGLE.is_main
    assert Ranks(1, 2).rows(8) == slice(4, 8) and not Ranks(1, 2).is_main
    with pytest.raises(ValueError):
        Ranks(0, 3).rows(8)
    a, b = torch.zeros(4), torch.zeros(4)
    b[2] = 1e-30
    assert int(fingerprint([a])) != int(fingerprint([b])) and int(fingerprint([a])) == int(fingerprint([a.clone()]))


def test_resume_compares_the_global_batch_not_the_processes(tmp_path):
    safe = ("run.world_size", "run.global_batch_size", "run.out", "optim.lr")
    saved = {"optim": {"batch_size": 32, "lr": 0.1}, "run": {"world_size": 2, "out": "a"}}
    changes = resume_changes(saved, {"optim": {"batch_size": 64, "lr": 0.1}, "run": {"world_size": 1, "out": "b"}},
                             safe, tmp_path)
    assert set(changes) == {"run.world_size", "run.out"}
    assert set(resume_changes(saved, {"optim": {"batch_size": 16, "lr": 0.1}, "run": {"world_size": 4, "out": "a"}},
                              safe, tmp_path)) == {"run.world_size"}
    with pytest.raises(UserError, match=r"the global batch \(--batch-size x processes\) \(64 -> 32\)"):
        resume_changes(saved, {"optim": {"batch_size": 32, "lr": 0.2}, "run": {"world_size": 1}}, safe, tmp_path)
    # runs saved before world sizes were recorded resume as one process
    assert resume_changes({"optim": {"batch_size": 8}, "run": {}},
                          {"optim": {"batch_size": 8}, "run": {"world_size": 1}}, safe, tmp_path) == {
        "run.world_size": {"was": None, "now": 1}}


def test_device_under_torchrun_is_the_local_rank():
    assert Ranks(1, 2, 1).device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="cuda:LOCAL_RANK"):
        Ranks(1, 2, 1).device("cuda:1")


# ---- torchrun, 2 processes ---------------------------------------------------------------------------------------

@pytest.mark.slow
@requires_fashion
@pytest.mark.timeout(900)
def test_one_step_of_two_ranks_equals_one_process_on_the_global_batch(tmp_path):
    from tests.dist_worker import CASES, PER_RANK, one_step

    done = torchrun(["-m", "tests.dist_worker", "steps", str(tmp_path)], tmp_path / "log.txt")
    assert done.returncode == 0, (tmp_path / "log.txt").read_text()[-3000:]
    rank0, rank1 = _ranks_rows(tmp_path)
    assert rank0 == rank1  # every number every rank holds is the same, to the bit
    for name, order, strategy in CASES:
        got, ref = rank0[f"{name}-{order}-{strategy}"], one_step(name, order, SINGLE, 2 * PER_RANK, strategy)
        name = f"{name} order {order} {strategy}"
        for key in ("loss", "arch_loss"):
            if order == 1 or key == "loss":
                assert got[key] == pytest.approx(ref[key], rel=1e-12), (name, key)
        for key in ("alpha_grads", "alphas", "weights"):
            for a, b in zip(got[key], ref[key]):
                torch.testing.assert_close(torch.tensor(a, dtype=torch.float64),
                                           torch.tensor(b, dtype=torch.float64), **F64, msg=f"{name} {key}")
        assert got["state"].keys() == ref["state"].keys()
        for k in ref["state"]:  # CLSA's queue (all ranks' keys), BYOL's tau, i-Mix's step
            torch.testing.assert_close(torch.tensor(got["state"][k], dtype=torch.float64),
                                       torch.tensor(ref["state"][k], dtype=torch.float64), **F64, msg=f"{name} {k}")
        assert any(torch.tensor(g).abs().max() > 0 for g in ref["alpha_grads"]), name  # not a comparison of zeros


@pytest.mark.slow
@requires_fashion
@pytest.mark.timeout(600)
@pytest.mark.parametrize("strategy", ["darts", "pt"])
def test_every_rank_derives_the_genotype_of_one_process(tmp_path, strategy):
    """darts: the alphas decide, and every epoch's genotype is one process's. pt: every projection between epochs is
    scored by the objective's loss on held-out batches; every rank computes it on the same whole global batches
    and rank 0's decision is shared, so every rank holds the same genotype and alive ops. Against one process, pt's
    first projection scores the same losses (within float32 noise) and keeps the same ops; later rounds are not
    compared: float32 rounding (1e-6 in the first step's loss) grows chaotically over a tiny search, and pt's
    near-tied costs (1e-3 apart) can then flip."""
    from ssnas.search import run_search
    from tests.dist_worker import PER_RANK, search_config

    done = torchrun(["-m", "tests.dist_worker", "search", str(tmp_path), strategy], tmp_path / "log.txt")
    assert done.returncode == 0, (tmp_path / "log.txt").read_text()[-3000:]
    rank0, rank1 = _ranks_rows(tmp_path)
    assert rank0["alpha_bytes"] == rank1["alpha_bytes"] and rank0["history"] == rank1["history"]
    assert rank0["alive"] == rank1["alive"]
    one = run_search(search_config(tmp_path / "one", strategy, **{"optim.batch_size": 2 * PER_RANK}))
    if strategy == "pt":
        assert all(len(ops) == 1 for edges in rank0["alive"].values() for ops in edges)  # every edge was decided
        two_rows, one_rows = (_strategy_rows(path / "metrics.jsonl") for path in (tmp_path, tmp_path / "one"))
        assert len(two_rows) == len(one_rows) == 2  # two rounds of projections
        first, ref = two_rows[0]["chosen"], one_rows[0]["chosen"]
        assert first.keys() == ref.keys() and all(first[e]["op"] == ref[e]["op"] for e in ref)
        for e in ref:
            for op, cost in ref[e]["costs"].items():
                assert first[e]["costs"][op] == pytest.approx(cost, abs=2e-3), (e, op)
    else:
        assert rank0["history"] == [h["genotype"] for h in one.history]
        assert rank0["alive"] == one.alive
        for a, b in zip(rank0["alphas"], one.alphas):
            torch.testing.assert_close(torch.tensor(a), b.flatten(), rtol=0, atol=1e-4)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["run"]["world_size"] == 2 and config["run"]["global_batch_size"] == 2 * PER_RANK


def _strategy_rows(metrics: Path) -> list[dict]:
    return [row for row in map(json.loads, metrics.read_text().splitlines()) if row["kind"] == "strategy"]


def _search_flags(out: Path, epochs: int) -> list[str]:
    return ["-m", "ssnas", "search", "--dataset", "fashion-mnist", "--data-root", "/nonexistent-root",
            "--subset", "64", "--layers", "3", "--init-channels", "4", "--nodes", "2", "--epochs", str(epochs),
            "--batch-size", "4", "--steps-per-epoch", "2", "--proj-dim", "16", "--view-size", "16",
            "--device", "cpu", "--log-every", "1", "--no-progress", "--no-tensorboard", "--sync-bn", "--out", str(out)]


def _worker_of_rank(launcher: int, rank: int, timeout: float = 60) -> int:
    """The pid of torchrun's worker process with RANK=rank (a child of the launcher we started)."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank) and "ssnas" in " ".join(child.cmdline()):
                    return child.pid
            except psutil.Error:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no worker with RANK={rank} under torchrun pid {launcher}")


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
@pytest.mark.timeout(900)
def test_sigkill_of_a_rank_stops_the_job_and_resume_finishes_the_same(tmp_path):
    from ssnas.runs import checkpoint

    epochs = 4
    done = torchrun([*_search_flags(tmp_path / "straight", epochs)], tmp_path / "straight.txt")
    assert done.returncode == 0, (tmp_path / "straight.txt").read_text()[-3000:]

    out, log = tmp_path / "killed", tmp_path / "killed.txt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *_search_flags(out, epochs)]
    with log.open("w") as f:
        job = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        victim = _worker_of_rank(job.pid, 1)
        deadline = time.monotonic() + 300
        while not (out / "checkpoint.pt").exists() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job.poll() is None, "the job ended before a rank could be killed: " + log.read_text()[-2000:]
        os.kill(victim, signal.SIGKILL)
        code = job.wait(timeout=180)  # the job stops: torchrun ends the other rank
    finally:
        if job.poll() is None:
            job.kill()
            job.wait(timeout=30)
    text = log.read_text()
    assert code != 0
    assert "ssnas: error: " in text, text[-3000:]  # the surviving rank says why, in one line
    state = checkpoint.load(out / "checkpoint.pt")  # the last checkpoint stays loadable
    assert 1 <= state["epochs_done"] < epochs

    done = torchrun([*_search_flags(out, epochs), "--resume"], tmp_path / "resumed.txt")
    assert done.returncode == 0, (tmp_path / "resumed.txt").read_text()[-3000:]
    straight = json.loads((tmp_path / "straight" / "genotype.json").read_text())
    resumed = json.loads((out / "genotype.json").read_text())
    assert resumed["normal"] == straight["normal"] and resumed["reduce"] == straight["reduce"]
    assert (out / "genotypes.jsonl").read_text() == (tmp_path / "straight" / "genotypes.jsonl").read_text()
    a = checkpoint.load(tmp_path / "straight" / "checkpoint.pt")["searcher"]["opt_a"]
    b = checkpoint.load(out / "checkpoint.pt")["searcher"]["opt_a"]
    assert all(torch.equal(a["state"][k]["exp_avg"], b["state"][k]["exp_avg"]) for k in a["state"])

    # the same global batch on one process (4 x 2 -> 8 x 1): the maths allows it, so the run resumes and finishes
    one = tmp_path / "to-one"
    assert torchrun([*_search_flags(one, epochs), "--stop-after", "1"], tmp_path / "first.txt").returncode == 0
    flags = _search_flags(one, epochs)
    flags[flags.index("--batch-size") + 1] = "8"
    run = subprocess.run([sys.executable, *flags, "--resume"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stderr[-3000:]
    finished = json.loads((one / "genotype.json").read_text())
    assert finished["normal"] == straight["normal"] and finished["reduce"] == straight["reduce"]
    # another global batch: refused, naming it
    flags[flags.index("--batch-size") + 1] = "4"
    run = subprocess.run([sys.executable, *flags, "--resume", "--epochs", str(epochs)], cwd=ROOT, capture_output=True,
                         text=True, timeout=400)
    assert run.returncode == 2 and "the global batch (--batch-size x processes) (8 -> 4)" in run.stderr


def _retrain_flags(out: Path, batch: int) -> list[str]:
    return ["-m", "ssnas", "retrain", "--arch", "DARTS_V2", "--layers", "3", "--init-channels", "4",
            "--dataset", "fashion-mnist", "--data-root", "/nonexistent-root", "--subset", "64", "--batch-size",
            str(batch), "--epochs", "1", "--steps-per-epoch", "2", "--warmup-epochs", "0", "--knn-every", "0",
            "--view-size", "16", "--proj-dim", "16", "--optimizer", "sgd", "--device", "cpu", "--no-progress",
            "--no-tensorboard", "--sync-bn", "--out", str(out)]


@pytest.mark.slow
@requires_fashion
@pytest.mark.timeout(600)
def test_retrain_on_two_ranks_trains_what_one_process_trains(tmp_path):
    from ssnas.runs import checkpoint

    done = torchrun(_retrain_flags(tmp_path / "two", 4), tmp_path / "log.txt")
    assert done.returncode == 0, (tmp_path / "log.txt").read_text()[-3000:]
    one = subprocess.run([sys.executable, *_retrain_flags(tmp_path / "one", 8)], cwd=ROOT, capture_output=True,
                         text=True, timeout=400)
    assert one.returncode == 0, one.stderr[-3000:]
    two, ref = (checkpoint.load(tmp_path / name / "checkpoint.pt") for name in ("two", "one"))
    assert two["config"]["run"]["global_batch_size"] == ref["config"]["run"]["global_batch_size"] == 8
    for k, v in ref["encoder"].items():
        if v.is_floating_point():  # SGD on the same global batch: the same weights, up to float32 rounding
            torch.testing.assert_close(two["encoder"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    network = json.loads((tmp_path / "two" / "network.json").read_text())
    assert network["lr"] == pytest.approx(json.loads((tmp_path / "one" / "network.json").read_text())["lr"])
    lines = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines].count("epoch") == 1  # rank 0 alone wrote the log


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default(tmp_path):
    from ssnas.config import resume_safe_keys, to_dict
    from ssnas.search import SearchConfig

    current = to_dict(SearchConfig())
    old = to_dict(SearchConfig())
    for key in ("sync_bn", "kernels", "world_size", "global_batch_size"):
        del old["run"][key]
    del old["optim"]["precision"]
    safe, defaults = resume_safe_keys(SearchConfig), to_dict(SearchConfig())
    assert resume_changes(old, current, safe, tmp_path, defaults) == {}
    current["run"]["sync_bn"] = True  # but a new setting changed on resume is still refused
    with pytest.raises(UserError, match="run.sync_bn"):
        resume_changes(old, current, safe, tmp_path, defaults)
