"""Shared fixtures: real data locations and tiny configurations."""
from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread per test process (and per subprocess a test starts): tiny tests gain nothing from a
# second thread, and on a busy 2-core machine two OpenMP threads waiting on each other make a test 5-20x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def shared_data_root() -> Path | None:
    """The CIFAR-10 ImageFolder tree beside the checkout (../shared/data), or $SSNAS_DATA."""
    for candidate in (os.environ.get("SSNAS_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "cifar10" / "train").is_dir():
            return Path(candidate)
    return None


requires_fashion = pytest.mark.skipif(not FASHION_DIR.is_dir(),
                                      reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
requires_cifar = pytest.mark.skipif(shared_data_root() is None, reason="no CIFAR-10 tree under ../shared/data or $SSNAS_DATA")


@pytest.fixture(autouse=True)
def _small_torch():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def fashion_train():
    """400 real Fashion-MNIST training images (class-balanced), loaded once per session."""
    if not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    from ssnas.data.datasets import DataConfig, load_dataset

    return load_dataset(DataConfig(dataset="fashion-mnist", data_root="/nonexistent-root", subset=400), "train", seed=0)


def tiny_search_config(out: Path, **overrides):
    """A supernet that runs a step in well under a second on 2 cores."""
    from ssnas.config import apply_overrides
    from ssnas.search import SearchConfig

    cfg = SearchConfig()
    apply_overrides(cfg, {
        "data.dataset": "fashion-mnist", "data.subset": 64, "supernet.layers": 3, "supernet.init_channels": 4,
        "supernet.nodes": 2, "optim.epochs": 2, "optim.batch_size": 8, "optim.steps_per_epoch": 2,
        "objective.proj_dim": 16, "run.out": str(out), "run.progress": False, "run.device": "cpu",
        "run.log_every": 1, "augment.size": 16, **overrides})
    return cfg


def same_supernet_weights(run_a: Path, run_b: Path) -> bool:
    """Whether the checkpoints of two search run folders hold bit-identical supernet weights (a resumed search
    against an uninterrupted one)."""
    from ssnas.runs import checkpoint

    a, b = (checkpoint.load(run / "checkpoint.pt")["searcher"]["supernet"] for run in (run_a, run_b))
    return all(torch.equal(a[k], b[k]) for k in a)


# ---- a throwaway PostgreSQL server (Debian's postgresql package) ---------------------------------------------------

def _postgres_bin() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin), else initdb on PATH."""
    import shutil

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


@pytest.fixture(scope="session")
def postgres_server():
    """(URL prefix, bin folder) of a PostgreSQL server started for this session in a temporary folder, on a free
    local port, as the `postgres` system user when the tests run as root (the server refuses root); stopped and
    removed at the end. Skips, with the reason, when the driver or the server is missing or it cannot start."""
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's default PostgreSQL driver)
    except ImportError:
        pytest.skip("no PostgreSQL driver: pip install 'psycopg[binary]' (part of ssnas[test])")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server: apt-get install postgresql (.ci/run installs it)")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="ssnas-postgres-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip("PostgreSQL refuses to run as root and there is no 'postgres' user to run it as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, log = folder / "data", folder / "server.log"
    commands = [
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"],
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
         f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
         f"-c max_connections=200", "start"],
    ]
    for cmd in commands:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            done = None
            why = str(e)
        else:
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] if done.returncode else ""
        if done is None or done.returncode:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip(f"PostgreSQL could not start: {why}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh, empty database on the session's PostgreSQL server, for one test."""
    import re

    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"
