"""Real NNI experiments (local training service): `ssnas tune --nni` and `ssnas search --nni`, checked through the
web UI's REST API on loopback, stopped with `ssnas tune --nni --stop`, with no process left behind."""
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ssnas.cli import main
from ssnas.tune.space import space_for
from tests.conftest import ROOT, requires_fashion

psutil = pytest.importorskip("psutil")
pytest.importorskip("nni")

TINY = ["--dataset", "fashion-mnist", "--subset", "120", "--layers", "3", "--init-channels", "4", "--nodes", "2",
        "--batch-size", "8", "--steps-per-epoch", "1", "--proj-dim", "16", "--view-size", "16", "--no-progress",
        "--device", "cpu", "--no-tensorboard"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{path}", timeout=5) as r:
        return json.loads(r.read())


def _trial_stdout(job) -> str:
    """What the trial printed: NNI's local training service keeps it beside its stderr (NNI 3 leaves trial.stdout
    empty and writes the prints to trial.log)."""
    folder = Path(str(job.get("logPath", "")).replace("file://localhost:", ""))
    found = [folder / name for name in ("stdout", "trial.stdout", "trial.log") if (folder / name).is_file()]
    if not found:
        raise AssertionError(f"no trial output in {folder}")
    return "".join(path.read_text(errors="replace") for path in found)


def _decode(data: str):
    while isinstance(data, str):
        data = json.loads(data)
    return data


# Bounds for a hung experiment, not speed requirements: on a loaded 2-core machine NNI's node server, its
# dispatcher and the trials share what is left of two cores.
TRIALS_DEADLINE_S = 480
EXIT_DEADLINE_S = 120


@pytest.fixture
def launch(tmp_path):
    """Starts `ssnas ...` in the background and remembers its process tree (node, NNI's dispatcher, the trials);
    whatever a failing test leaves running is killed at teardown. The output goes to a file, never to a pipe:
    NNI's node server inherits it, so reading a pipe could block for as long as the server lives."""
    procs: list[subprocess.Popen] = []
    tree: set = set()

    def start(args: list[str]) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        log = tmp_path / f"launch-{len(procs)}.log"
        with log.open("w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "ssnas.cli", *args], cwd=ROOT, env=env, text=True,
                                    stdout=sink, stderr=subprocess.STDOUT)
        proc.log = log
        procs.append(proc)
        return proc

    def remember(proc: subprocess.Popen) -> list:
        with contextlib.suppress(psutil.Error):
            tree.update(psutil.Process(proc.pid).children(recursive=True))
        return list(tree)

    start.remember = remember
    yield start
    for p in [*tree, *(psutil.Process(x.pid) for x in procs if x.poll() is None)]:
        with contextlib.suppress(psutil.Error):
            p.kill()
    for x in procs:
        with contextlib.suppress(Exception):
            x.wait(timeout=10)


@pytest.fixture
def slow_tuner(tmp_path, monkeypatch):
    """Makes NNI's tuner process (the one NNI starts with SDK_PROCESS=dispatcher) sleep N s before anything else: a
    sitecustomize on PYTHONPATH, which every Python process the test starts inherits and only the tuner obeys."""
    site = tmp_path / "slow-site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, time\n"
        "if os.environ.get('SDK_PROCESS') == 'dispatcher':\n"
        "    time.sleep(float(os.environ['SSNAS_TEST_TUNER_DELAY_S']))\n")

    def slow(seconds: float) -> None:
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
        monkeypatch.setenv("SSNAS_TEST_TUNER_DELAY_S", str(seconds))

    return slow


def _output(proc: subprocess.Popen) -> str:
    """What the process has printed so far (a file read: never blocks)."""
    return proc.log.read_text(errors="replace")


def _wait_until_done(launch, proc: subprocess.Popen, port: int, count: int,
                     timeout: float = TRIALS_DEADLINE_S) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, _output(proc)
        launch.remember(proc)
        try:
            jobs, status = _get(port, "trial-jobs"), _get(port, "check-status")["status"]
        except (OSError, ValueError):  # not listening yet, or listening before the experiment is set up
            jobs, status = [], None
        if status == "DONE" and len(jobs) == count and all(j["status"] == "SUCCEEDED" for j in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"no {count} finished trials within {timeout} s:\n{_output(proc)}")


def _alive(p) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop_and_check_nothing_is_left(launch, proc: subprocess.Popen, port: int, capsys) -> str:
    family = launch.remember(proc)  # node, NNI's dispatcher, every trial seen
    node = [p for p in family if _alive(p) and p.name() == "node"]
    assert len(node) == 1
    listening = [c.laddr for c in node[0].net_connections() if c.status == psutil.CONN_LISTEN]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening  # loopback only: no login
    assert main(["tune", "--nni", "--stop", "--port", str(port)]) == 0
    assert "stopped the NNI experiment" in capsys.readouterr().out
    proc.wait(timeout=EXIT_DEADLINE_S)
    output = _output(proc)
    assert proc.returncode == 0, output
    deadline = time.monotonic() + EXIT_DEADLINE_S  # children may take a moment to exit after the parent
    while time.monotonic() < deadline and any(_alive(p) for p in family):
        time.sleep(0.2)
    left = [p for p in family if _alive(p)]
    assert not left, [p.pid for p in left]
    with pytest.raises(OSError):
        _get(port, "check-status")
    return output


@pytest.mark.slow
@pytest.mark.timeout(900)
@requires_fashion
def test_tune_as_an_nni_experiment_shows_every_trial_and_stops_cleanly(tmp_path, capsys, launch):
    import optuna

    port, out = _free_port(), tmp_path / "tune"
    proc = launch(["tune", "--nni", "--keep-ui", "--port", str(port), "--trials", "2", "--study", "web",
                    "--out", str(out), "--epochs", "2", "--val-size", "30", "--bank-size", "0", "--knn-k", "10",
                    "--no-plots", *TINY])
    jobs = _wait_until_done(launch, proc, port, 2)
    keys = {p.key for p in space_for("simclr")}
    finals = {}
    for job in jobs:
        params = _decode(job["hyperParameters"][0])["parameters"]
        assert set(params) == keys | {"optuna_trial"}
        final = _decode(job["finalMetricData"][0]["data"])
        # one number per trial (the score), so NNI's hyper-parameter view has one metric axis; the rest is logged
        assert isinstance(final, float) and 0 <= final <= 1
        assert "genotype" in _trial_stdout(job)
        finals[params["optuna_trial"]] = (final, {k: params[k] for k in keys})
    intermediate = [m for m in _get(port, "metric-data") if m["type"] == "PERIODICAL"]
    assert sorted(m["trialJobId"] for m in intermediate) == sorted(j["trialJobId"] for j in jobs for _ in (1, 2))

    output = _stop_and_check_nothing_is_left(launch, proc, port, capsys)
    assert "best config:" in output
    # the NNI trials are the Optuna study's trials: same parameters, same values, in the same SQLite file
    study = optuna.load_study(study_name="web", storage=f"sqlite:///{out / 'tune.db'}")
    assert sorted(t.number for t in study.trials) == sorted(finals)
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert (t.value, t.params) == finals[t.number]
        assert sorted(t.intermediate_values) == [1, 2]
    assert (out / "web" / "best_config.toml").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
@requires_fashion
def test_search_as_an_nni_experiment_reports_epochs_and_the_genotype(tmp_path, capsys, launch, slow_tuner):
    """With a tuner that takes longer to start than NNI's hard-coded 10 s (as on a loaded machine, where `ssnas tune
    --nni` failed with 'Tuner did not connect in 10 seconds'), the experiment waits for it (--tuner-wait)."""
    slow_tuner(15)
    port, out = _free_port(), tmp_path / "search"
    proc = launch(["search", "--nni", "--keep-ui", "--port", str(port), "--out", str(out), "--epochs", "2", *TINY])
    (job,) = _wait_until_done(launch, proc, port, 1)
    final = _decode(job["finalMetricData"][0]["data"])
    genotype = json.loads((out / "genotype.json").read_text())
    epochs = [_decode(m["data"]) for m in _get(port, "metric-data") if m["type"] == "PERIODICAL"]
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [r["loss"] for r in rows if r["kind"] == "epoch"] and final == epochs[-1]  # one metric: the loss
    assert _get(port, "experiment")["params"]["tuner"]["classArgs"]["optimize_mode"] == "minimize"  # lower is better
    stdout = _trial_stdout(job)  # the genotype and the epoch lines are in the trial's log, not in its metrics
    assert json.dumps(genotype["normal"]) in stdout and "epoch 2/2" in stdout
    assert _decode(job["hyperParameters"][0])["parameters"]["supernet.layers"] == 3
    output = _stop_and_check_nothing_is_left(launch, proc, port, capsys)
    assert f"genotype: {out / 'genotype.json'}" in output


@pytest.mark.slow
@pytest.mark.timeout(900)
@requires_fashion
def test_a_tuner_that_never_connects_is_one_line_naming_the_logs(tmp_path, launch, slow_tuner):
    """A failed start printed NNI's raw Node.js stack trace before; now one line, and nothing is left running."""
    slow_tuner(30)
    port, out = _free_port(), tmp_path / "search"
    proc = launch(["search", "--nni", "--tuner-wait", "3", "--port", str(port), "--out", str(out), "--epochs", "1",
                   *TINY])
    deadline = time.monotonic() + TRIALS_DEADLINE_S
    while proc.poll() is None and time.monotonic() < deadline:
        launch.remember(proc)
        time.sleep(0.2)
    nodes = [p for p in launch.remember(proc) if _name(p) == "node"]
    assert proc.wait(timeout=EXIT_DEADLINE_S) == 2, _output(proc)
    lines = [line for line in _output(proc).splitlines() if line.strip()]
    assert "Traceback" not in _output(proc) and "    at " not in _output(proc)  # no Python, no Node.js stack
    assert lines[-1].startswith("ssnas: error: the NNI experiment failed: "), lines[-1]
    assert "did not connect in 3 s (--tuner-wait)" in lines[-1] and str(out / "nni") in lines[-1], lines[-1]
    deadline = time.monotonic() + EXIT_DEADLINE_S
    while time.monotonic() < deadline and any(_alive(p) for p in nodes):
        time.sleep(0.2)
    assert not [p for p in nodes if _alive(p)]


def _name(p) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""


@pytest.mark.slow
def test_nni_start_waits_for_a_rest_server_that_comes_up_late():
    """NNI's client kills a node server that has not answered within 3 one-second tries; on a busy machine it comes
    up later. Under ssnas's start, a server answering after 4 s is waited for (and NNI's own check is restored)."""
    import http.server
    import threading

    import nni.experiment.launcher as launcher

    from ssnas.nni_bridge.launch import _patient_server_check

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"status": "RUNNING"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    def late_server(port, delay):
        time.sleep(delay)
        server = http.server.HTTPServer(("localhost", port), Status)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def free_port():
        with socket.socket() as s:
            s.bind(("localhost", 0))
            return s.getsockname()[1]

    original = launcher._check_rest_server
    started, starters = [], []
    for delay in (8.0, 4.0):
        port = free_port()
        starters.append(threading.Thread(target=lambda p=port, d=delay: started.append(late_server(p, d)),
                                         daemon=True))
        starters[-1].start()
        if delay == 8.0:
            with pytest.raises(Exception):
                original(port)  # NNI's own check gives up after about 3 s
        else:
            with _patient_server_check():
                launcher._check_rest_server(port)  # returns once the server answers
    assert launcher._check_rest_server is original
    for thread in starters:
        thread.join(timeout=30)
    for server in started:
        server.shutdown()
