"""Checkpoints (issue 14): a header with the payload's size and SHA-256, written in the same atomic rename, checked
before torch reads a byte; every unreadable, truncated, foreign or tampered checkpoint is one line, and torch's
advice to load unsafely never reaches the user. A full disk keeps the last good checkpoint; a metrics.jsonl whose
last line a kill cut in half resumes."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from ssnas.cli import main
from ssnas.errors import UserError
from ssnas.runs import checkpoint
from tests.conftest import requires_fashion

NET = ["--dataset", "fashion-mnist", "--subset", "64", "--layers", "3", "--init-channels", "4", "--batch-size", "8",
       "--steps-per-epoch", "2", "--proj-dim", "16", "--view-size", "16", "--no-progress", "--device", "cpu",
       "--no-tensorboard"]
TINY = [*NET, "--nodes", "2"]


def _error(capsys, argv) -> str:
    capsys.readouterr()  # what earlier calls printed (a search's closing warning, say) is not this call's
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("ssnas: error:") and "\n" not in err and "Traceback" not in err, err
    assert "weights_only" not in err and "unsafe" not in err.lower(), err  # torch's hint never gets through
    return err


def test_round_trip_and_header(tmp_path):
    state = {"epoch": 3, "w": torch.arange(6.0)}
    checkpoint.save(tmp_path / "c.pt", state, kind="search")
    raw = (tmp_path / "c.pt").read_bytes()
    assert raw.startswith(checkpoint.MAGIC)
    header = json.loads(raw.split(b"\n")[1])
    assert header["kind"] == "search" and header["format"] == 1 and header["size"] == len(raw.split(b"\n", 2)[2])
    loaded = checkpoint.load(tmp_path / "c.pt", kind="search")
    assert loaded["epoch"] == 3 and torch.equal(loaded["w"], state["w"])
    with pytest.raises(UserError, match="it holds a search checkpoint, not a retrain one"):
        checkpoint.load(tmp_path / "c.pt", kind="retrain")


def _damaged(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """(content, what the error says) of each way a checkpoint file can be wrong."""
    checkpoint.save(tmp_path / "good.pt", {"epoch": 0, "w": torch.ones(1000)}, kind="retrain")
    good = (tmp_path / "good.pt").read_bytes()
    flipped = bytearray(good)
    flipped[-100] ^= 0x01  # one bit, deep in a tensor: torch itself would never notice
    legacy_list = tmp_path / "list.pt"
    torch.save([1, 2, 3], legacy_list)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"epoch": 0, "odd": zipfile.ZipInfo("x")}, unsafe)  # needs an unsafe load: a class to unpickle
    return {
        "empty": (b"", "it is empty"),
        "random": (os.urandom(4096), "not an ssnas checkpoint"),
        "truncated": (good[: len(good) // 2], "truncated"),
        "flipped": (bytes(flipped), "does not match the SHA-256"),
        "header": (checkpoint.MAGIC + b"{not json\n" + good[-100:], "header is damaged"),
        "future": (checkpoint.MAGIC + b'{"format": 99, "kind": "retrain", "size": 0, "sha256": ""}\n',
                   "newer ssnas"),
        "list": (legacy_list.read_bytes(), "it holds a list"),
        "unsafe": (unsafe.read_bytes(), "torch cannot read it"),
    }


def test_every_damaged_checkpoint_is_one_line(tmp_path):
    for name, (content, says) in _damaged(tmp_path).items():
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(content)
        with pytest.raises(UserError, match=says) as e:
            checkpoint.load(path)
        assert "\n" not in str(e.value) and "weights_only" not in str(e.value), name


GOOD_STATE = {"epoch": 2, "w": torch.linspace(-1, 1, 64), "config": {"lr": 0.025}}


@functools.cache
def _good_bytes() -> bytes:
    """A small valid search checkpoint's bytes."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint.save(Path(folder) / "c.pt", GOOD_STATE, kind="search")
        return (Path(folder) / "c.pt").read_bytes()


@st.composite
def _tampered(draw) -> bytes:
    """A valid checkpoint with one change: bytes flipped, cut off, inserted or deleted anywhere (the header, the zip
    directory, a tensor's data), or the file replaced by a prefix of it."""
    good = bytearray(_good_bytes())
    how = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    at = draw(st.integers(0, len(good) - 1))
    if how == "flip":
        good[at] ^= draw(st.integers(1, 255))
    elif how == "truncate":
        del good[at:]
    elif how == "insert":
        good[at:at] = draw(st.binary(min_size=1, max_size=16))
    else:
        del good[at:at + draw(st.integers(1, 16))]
    return bytes(good)


@settings(max_examples=300, derandomize=os.environ.get("FUZZ_RANDOM") is None, deadline=None, database=None)
@given(content=_tampered())
def test_any_tampered_checkpoint_is_one_line(tmp_path_factory, content):
    """Every changed byte of the payload is caught before torch reads it: one line naming the problem, never a
    traceback, never a silently different state (300 files, each one change away from a valid checkpoint)."""
    path = tmp_path_factory.mktemp("fuzz") / "checkpoint.pt"
    path.write_bytes(content)
    try:
        state = checkpoint.load(path, kind="search")
    except UserError as e:
        assert "\n" not in str(e) and "weights_only" not in str(e), str(e)
        return
    # a change the header's JSON does not notice (whitespace, "format": 0): the very same state, or nothing
    assert state.keys() == GOOD_STATE.keys() and state["epoch"] == 2 and state["config"] == GOOD_STATE["config"]
    assert torch.equal(state["w"], GOOD_STATE["w"])


def test_a_checkpoint_without_the_header_still_loads(tmp_path):
    """Runs written before the header existed: a bare torch zip file (no integrity check is possible)."""
    torch.save({"epoch": 1, "w": torch.zeros(2)}, tmp_path / "old.pt")
    assert checkpoint.load(tmp_path / "old.pt")["epoch"] == 1


@pytest.mark.slow
@requires_fashion
def test_the_commands_refuse_damaged_checkpoints(tmp_path, capsys):
    """A zero-byte or random checkpoint.pt gave IndexError/UnpicklingError tracebacks; a bit-flipped one was never
    noticed, and `export` silently used fresh weights."""
    search, retrain = tmp_path / "search", tmp_path / "retrain"
    assert main(["search", *TINY, "--epochs", "2", "--stop-after", "1", "--out", str(search)]) == 0
    assert main(["retrain", "--arch", str(search), *NET, "--epochs", "1", "--warmup-epochs", "0", "--knn-every", "0",
                 "--out", str(retrain)]) == 0
    good = {run: (run / "checkpoint.pt").read_bytes() for run in (search, retrain)}
    for name, (content, says) in _damaged(tmp_path).items():
        for run in (search, retrain):
            (run / "checkpoint.pt").write_bytes(content)
        assert says in _error(capsys, ["search", "--resume", "--config", str(search / "config.json")]), name
        for argv in (["eval", str(retrain), "--protocol", "knn", "--device", "cpu"],
                     ["export", str(retrain), "--to", "onnx", "--out", str(tmp_path / "m.onnx")]):
            assert says in _error(capsys, argv), (name, argv)
        assert not (tmp_path / "m.onnx").exists()
    (search / "checkpoint.pt").write_bytes(good[retrain])  # a retrain checkpoint where a search's belongs
    assert "holds a retrain checkpoint, not a search one" in _error(
        capsys, ["search", "--resume", "--config", str(search / "config.json")])


@pytest.mark.slow
@requires_fashion
def test_a_torn_last_metrics_line_does_not_stop_a_resume(tmp_path):
    """`--resume` died with a JSONDecodeError on a metrics.jsonl whose last line a kill cut short."""
    out = tmp_path / "run"
    assert main(["search", *TINY, "--epochs", "2", "--stop-after", "1", "--out", str(out)]) == 0
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"kind": "step", "step": 3, "epo')  # the kill came mid-line
    assert main(["search", "--resume", "--config", str(out / "config.json"), "--stop-after", "0"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == [1, 2]


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@requires_fashion
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys):
    """A full disk during a save was an OSError traceback. A real full disk: a small tmpfs, filled up."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "8m"):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        out = disk / "run"
        assert main(["search", *TINY, "--epochs", "3", "--stop-after", "1", "--out", str(out)]) == 0
        good = (out / "checkpoint.pt").read_bytes()
        filler = disk / "filler"
        with open(filler, "wb") as f:  # leave room for the small files, none for a checkpoint
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            f.write(b"\0" * max(0, free - len(good) // 2))
        err = _error(capsys, ["search", "--resume", "--config", str(out / "config.json")])
        assert "No space left on device" in err or "no space left" in err, err
        assert (out / "checkpoint.pt").read_bytes() == good
        assert not list(out.glob(".*.tmp")), "the failed write's temporary file is removed"
        filler.unlink()  # room again: the run continues from the checkpoint that was kept
        assert main(["search", "--resume", "--config", str(out / "config.json"), "--stop-after", "0"]) == 0
        assert checkpoint.load(out / "checkpoint.pt")["epochs_done"] == 3
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=60)
