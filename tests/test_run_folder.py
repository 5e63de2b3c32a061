"""Run folders (issue 14): one run at a time holds a folder (an flock released by the kernel however the run
ends), an earlier run's files are never overwritten without --resume or --force, --out naming a file is one line,
stale temporary files go, and files get the permissions the umask gives."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ssnas.cli import main
from ssnas.runs.folder import clear, is_held
from tests.conftest import ROOT, requires_fashion

TINY = ["--dataset", "fashion-mnist", "--subset", "64", "--layers", "3", "--init-channels", "4", "--nodes", "2",
        "--batch-size", "8", "--steps-per-epoch", "2", "--proj-dim", "16", "--view-size", "16", "--no-progress",
        "--device", "cpu", "--no-tensorboard"]


def _error(capsys, argv) -> str:
    capsys.readouterr()  # what earlier calls printed (a search's closing warning, say) is not this call's
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("ssnas: error:") and "\n" not in err, err
    return err


def _wait(condition, what: str, proc: subprocess.Popen, bound_s: float = 600) -> None:
    """Poll `condition` until it holds; the bound catches a hung run, it is not a speed requirement."""
    deadline = time.monotonic() + bound_s
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {bound_s} s"
        time.sleep(0.05)


@pytest.mark.slow
@requires_fashion
def test_one_run_per_folder_parallel_runs_on_others_and_a_killed_run_frees_its_folder(tmp_path, capsys):
    """Two searches on one --out both exited 0 with interleaved metrics before."""
    first, other = tmp_path / "first", tmp_path / "other"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ssnas", "search", *TINY, "--epochs", "50", "--out", str(first)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait(lambda: is_held(first) is not None, "lock on the first folder", proc)
        assert is_held(first)["pid"] == proc.pid
        err = _error(capsys, ["search", *TINY, "--epochs", "1", "--out", str(first), "--resume"])
        assert f"{first} is in use by pid {proc.pid} on " in err and "search" in err
        # a search on another folder runs while the first one holds its own
        assert main(["search", *TINY, "--epochs", "1", "--out", str(other)]) == 0
        _wait(lambda: (first / "checkpoint.pt").exists(), "first checkpoint", proc)
    finally:
        proc.send_signal(signal.SIGKILL)  # the kernel drops the lock with the process: nothing stale is left
        proc.wait(timeout=60)
        log.close()
    assert is_held(first) is None
    assert main(["search", "--resume", "--config", str(first / "config.json"), "--stop-after", "1"]) == 0


def test_an_earlier_run_is_never_overwritten_without_resume_or_force(tmp_path, capsys):
    """A folder holding a user's config.json was silently overwritten before (only checkpoint.pt was looked for)."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "notes"}')
    (out / "notes.txt").write_text("keep me")
    err = _error(capsys, ["search", "--out", str(out), "--dataset", "/nonexistent.npz"])
    assert "already holds an earlier run (config.json)" in err and "--force" in err
    assert (out / "config.json").read_text() == '{"my": "notes"}'
    (out / "eval-linear.json").write_text("{}")
    (out / "tensorboard").mkdir()
    assert sorted(p.name for p in clear(out)) == ["config.json", "eval-linear.json", "tensorboard"]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # never anything ssnas did not write
    assert "--resume continues the run in --out and --force deletes it" in _error(
        capsys, ["search", "--out", str(out), "--resume", "--force", "--dataset", "/nonexistent.npz"])


@pytest.mark.slow
@requires_fashion
def test_force_starts_afresh_and_keeps_other_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("keep me")
    (out / ".checkpoint.pt.abcd1234.tmp").write_bytes(b"half a write")  # what a killed atomic write leaves
    assert "already holds an earlier run" in _error(capsys, ["search", *TINY, "--epochs", "1", "--out", str(out)])
    assert main(["search", *TINY, "--epochs", "1", "--out", str(out), "--force", "--seed", "3"]) == 0
    assert (out / "notes.txt").read_text() == "keep me"
    assert not list(out.glob(".*.tmp")), "stale temporary files are removed by the next run"
    assert '"seed": 3' in (out / "config.json").read_text()


def test_out_naming_a_file_is_one_line(tmp_path, capsys):
    file = tmp_path / "a-file"
    file.write_text("x")
    for command in (["search"], ["retrain", "--arch", "DARTS_V2"]):
        assert f"--out {file} is a file" in _error(capsys, [*command, "--out", str(file), "--dataset",
                                                            "/nonexistent.npz", "--device", "cpu"])


@requires_fashion
def test_run_files_follow_the_umask(tmp_path):
    """Run files were written 0600 (mkstemp's mode) whatever the umask said."""
    previous = os.umask(0o027)
    try:
        assert main(["search", *TINY, "--epochs", "1", "--out", str(tmp_path / "g")]) == 0
    finally:
        os.umask(previous)
    for name in ("checkpoint.pt", "config.json", "genotype.json", "metrics.jsonl", ".ssnas.lock"):
        assert oct((tmp_path / "g" / name).stat().st_mode & 0o777) == oct(0o640), name


def test_a_filesystem_without_locks_warns_and_runs(tmp_path, capsys, monkeypatch):
    """Some network and FUSE mounts refuse flock (ENOLCK): the run goes on, unlocked, and says so in one line."""
    import errno
    import fcntl

    from ssnas.runs import folder

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    fresh, old = tmp_path / ".config.json.wr1t1ng0.tmp", tmp_path / ".config.json.k1ll3d00.tmp"
    for path in (fresh, old):
        path.write_text("half")
    os.utime(old, (0, 0))
    with folder.hold(tmp_path) as out:
        assert out == tmp_path
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssnas: warning: the filesystem of") and "does not support locks" in err, err
    assert fresh.exists() and not old.exists()  # unlocked: only what no running write can own is removed
