"""Run ssnas work as a real NNI experiment (local training service), so NNI's web UI shows it.

`ssnas tune --nni`: every Optuna trial is an NNI trial. `ssnas.nni_bridge.tuner.OptunaTuner` asks the study for each
trial's parameters and tells it the result; the trial process (`python -m ssnas.nni_bridge.trial tune SPEC`) trains,
reports every epoch to Optuna (for pruning) and to NNI (for the UI). `ssnas search --nni`: one NNI trial running the
search, reporting its epochs and, at the end, the genotype.

NNI 3.0's REST server (the web UI, which has no login) listens on every interface: `app.listen(port)` in
nni_node/rest_server. A tiny script preloaded into its node process (NODE_OPTIONS=--require) adds the host, so it
listens on 127.0.0.1 unless --host says otherwise. NNI's own processes reach it through "localhost", so the host
must be a loopback address or all interfaces (0.0.0.0).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ssnas import search
from ssnas.config import flatten, to_dict
from ssnas.errors import UserError
from ssnas.tune.report import write_outputs
from ssnas.tune.session import TuneData, TuneResult, prepare_study, storage_url, study_dir, validate
from ssnas.tune.space import nni_search_space
from ssnas.tune.study import to_json
from ssnas.tune.study import finished, recover

LOOPBACK = ("127.0.0.1", "localhost", "::1")
ALL_INTERFACES = ("0.0.0.0", "::")
FINAL_STATES = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")
POLL_S = 1.0
STOP_WAIT_S = 60.0  # how long a stopping NNI server may take before its processes are terminated

# Preloaded into NNI's node process (NODE_OPTIONS=--require):
# - a listen(port) without a host gets SSNAS_NNI_HOST (NNI's REST server listens on every interface otherwise);
# - NNI waits for its tuner (the dispatcher, a Python process it starts) for a hard-coded 10 s
#   (nni_node/core/tuner_command_channel.js: setTimeout(..., 10000)); on a loaded machine the tuner's Python start
#   takes longer, and the experiment died with "Tuner did not connect in 10 seconds". That one timer waits
#   SSNAS_NNI_TUNER_WAIT_MS instead (--tuner-wait).
PRELOAD_JS = """\
// ssnas: bind NNI's REST server to SSNAS_NNI_HOST; wait SSNAS_NNI_TUNER_WAIT_MS for the tuner, not 10 s.
const net = require('net');
const host = process.env.SSNAS_NNI_HOST;
if (host) {
  const listen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (...args) {
    if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
      args.splice(1, 0, host);
    }
    return listen.apply(this, args);
  };
}
const wait = Number(process.env.SSNAS_NNI_TUNER_WAIT_MS || 0);
if (wait > 0) {
  const setTimeout0 = global.setTimeout;
  global.setTimeout = function (callback, delay, ...rest) {
    if (delay === 10000 && (new Error().stack || '').includes('tuner_command_channel')) {
      delay = wait;
    }
    return setTimeout0.call(this, callback, delay, ...rest);
  };
}
"""


@dataclass
class Launch:
    """Where the web UI listens and whether it outlives the work."""
    host: str = "127.0.0.1"
    port: int = 8080
    keep_ui: bool = False
    tuner_wait_s: float = 120.0  # how long NNI waits for its tuner process to connect (NNI's own: 10 s)

    def check(self) -> None:
        if self.host not in LOOPBACK + ALL_INTERFACES:
            raise UserError(f"--host {self.host} is not supported: NNI's own processes reach the web UI through "
                            f"localhost, so use 127.0.0.1 (the default) or 0.0.0.0 (every interface, no login)")
        if not 0 < self.port < 65536:
            raise UserError(f"--port must be between 1 and 65535, got {self.port}")
        if not 1 <= self.tuner_wait_s <= 3600:
            raise UserError(f"--tuner-wait must be in [1, 3600] seconds, got {self.tuner_wait_s}")

    def check_free(self) -> None:
        """Before any work: the port must be free for the web UI."""
        self.check()
        host = "127.0.0.1" if self.host in ("localhost", *ALL_INTERFACES) else self.host
        with contextlib.closing(socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)) as s:
            if s.connect_ex((host, self.port)) == 0:
                raise UserError(f"port {self.port} is in use; pass --port N, or stop the experiment there with "
                                f"ssnas tune --nni --stop --port {self.port}")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("localhost", *ALL_INTERFACES) else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


@dataclass
class TrialResources:
    """How `ssnas tune --nni` runs its trials: how many at once, GPUs per trial, and where (NNI's training service:
    None = this machine; else the `trainingService` section of an NNI 3.0 config, e.g. `platform: remote` with a
    `machineList`)."""
    concurrency: int = 1
    gpu_number: int = 0
    training_service: dict[str, Any] | None = None

    @classmethod
    def load(cls, concurrency: int, gpu_number: int, service_file: str | None) -> "TrialResources":
        service = None
        if service_file:
            import yaml  # NNI's own config format (and JSON, a subset of YAML); NNI depends on PyYAML

            try:
                service = yaml.safe_load(Path(service_file).read_text())
            except (OSError, yaml.YAMLError) as e:
                raise UserError(f"cannot read --training-service {service_file}: {str(e).splitlines()[0]}") from None
            service = service.get("trainingService", service) if isinstance(service, dict) else service
            if not isinstance(service, dict) or "platform" not in service:
                raise UserError(f"--training-service {service_file} must hold NNI's trainingService section, a "
                                f"mapping with a platform (local, remote, ...)")
        return cls(concurrency, gpu_number, service)

    @property
    def platform(self) -> str:
        return str(self.training_service["platform"]) if self.training_service else "local"

    def check(self, storage: str) -> None:
        if self.concurrency < 1 or self.gpu_number < 0:
            raise UserError(f"--trial-concurrency must be >= 1 and --trial-gpu-number >= 0, got {self.concurrency} "
                            f"and {self.gpu_number}")
        if self.platform != "local" and (storage.startswith("sqlite") or storage.startswith("journal:")):
            raise UserError(f"trials on {self.platform} machines need a storage they all reach: pass --storage "
                            f"postgresql://USER:PASSWORD@HOST/DB (a SQLite or journal file is this machine's)")
        if self.platform == "local" and self.gpu_number:
            import torch

            if torch.cuda.device_count() < self.gpu_number:
                raise UserError(f"--trial-gpu-number {self.gpu_number}: this machine has "
                                f"{torch.cuda.device_count()} CUDA GPU(s); use 0 on CPUs")


# ---- the REST API ---------------------------------------------------------------------------------------------

def rest(launch: Launch, path: str, method: str = "GET", timeout: float = 10) -> Any:
    request = urllib.request.Request(f"{launch.url}/api/v1/nni/{path.lstrip('/')}", method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def metric(data: str) -> Any:
    """A metric as NNI stores it (JSON text of JSON text) decoded: a number or a dict with "default"."""
    value: Any = data
    while isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            break
    return value


def trials(launch: Launch) -> list[dict[str, Any]]:
    """Each trial's id, status, parameters and final metric, from the web UI's REST API."""
    out = []
    for job in rest(launch, "trial-jobs"):
        params = [metric(h) for h in job.get("hyperParameters", [])]
        finals = [metric(m["data"]) for m in job.get("finalMetricData", [])]
        out.append({"id": job["trialJobId"], "status": job["status"], "log": job.get("logPath", ""),
                    "parameters": params[0].get("parameters", {}) if params else {},
                    "final": finals[-1] if finals else None})
    return out


def stop(launch: Launch, wait_s: float = 60) -> None:
    """Stop the experiment whose web UI is at launch.url (what `--stop` does); returns once the port is closed."""
    launch.check()
    try:
        rest(launch, "check-status")
    except (urllib.error.URLError, OSError):
        raise UserError(f"no NNI experiment answers at {launch.url}; pass the --port (and --host) it was started "
                        f"with") from None
    with contextlib.suppress(urllib.error.URLError, OSError):  # it may hang up before it answers
        rest(launch, "experiment", method="DELETE", timeout=wait_s)
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            rest(launch, "check-status", timeout=2)
        except (urllib.error.URLError, OSError):
            return
        time.sleep(0.5)
    raise UserError(f"the experiment at {launch.url} did not stop within {wait_s:.0f} s; look at its log under "
                    f"the experiment folder")


# ---- starting and watching an experiment ----------------------------------------------------------------------

def nni_install_hint() -> str:
    """The command that installs ssnas's `nni` extra into this environment, from the installed metadata (ssnas is
    not on PyPI, so `pip install 'ssnas[nni]'` would look for it there)."""
    try:
        wanted = [r.split(";")[0].strip() for r in importlib.metadata.requires("ssnas") or []
                  if "extra ==" in r and "nni" in r.split("extra ==")[1]]
    except importlib.metadata.PackageNotFoundError:
        wanted = []
    if not wanted:
        return "pip install '.[nni]' in the ssnas checkout"
    return "pip install " + " ".join(f"'{r.replace(' ', '')}'" for r in wanted)


def _nni() -> Any:
    try:
        import nni.experiment
    except ImportError:
        raise UserError(f"--nni needs NNI 3.0: {nni_install_hint()}") from None
    return nni.experiment


@contextlib.contextmanager
def _preloaded(launch: Launch, folder: Path) -> Iterator[None]:
    """Environment for the node process NNI starts: PRELOAD_JS, the host to bind (unless every interface is wanted)
    and how long to wait for the tuner."""
    script = folder / "ssnas_preload.js"
    script.write_text(PRELOAD_JS)
    saved = {k: os.environ.get(k) for k in ("NODE_OPTIONS", "SSNAS_NNI_HOST", "SSNAS_NNI_TUNER_WAIT_MS")}
    os.environ["NODE_OPTIONS"] = f"{saved['NODE_OPTIONS'] or ''} --require {json.dumps(str(script))}".strip()
    os.environ.pop("SSNAS_NNI_HOST", None)
    if launch.host not in ALL_INTERFACES:
        os.environ["SSNAS_NNI_HOST"] = "127.0.0.1" if launch.host == "localhost" else launch.host
    os.environ["SSNAS_NNI_TUNER_WAIT_MS"] = str(int(launch.tuner_wait_s * 1000))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# NNI's client gives its freshly started node server 3 one-second tries to answer /check-status before it kills it
# (nni/experiment/launcher.py, _check_rest_server); on a busy machine node takes longer than that to start.
SERVER_START_WAIT_S = 120.0


@contextlib.contextmanager
def _patient_server_check() -> Iterator[None]:
    """While NNI starts an experiment: wait up to SERVER_START_WAIT_S for its REST server, polling twice a second,
    instead of NNI's 3 s; a server that answers at once costs nothing more."""
    import nni.experiment.launcher as launcher

    original = launcher._check_rest_server

    def check(port: int, retry: int = 3, url_prefix: str | None = None) -> None:
        deadline = time.monotonic() + SERVER_START_WAIT_S
        while True:
            try:
                launcher.rest.get(port, "/check-status", url_prefix)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    launcher._check_rest_server = check
    try:
        yield
    finally:
        launcher._check_rest_server = original


def make_experiment(name: str, folder: Path, trial_command: str, tuner: str, tuner_args: dict[str, Any],
                    search_space: dict[str, Any], max_trials: int, resources: TrialResources = TrialResources()) -> Any:
    """An HPO experiment, everything kept under `folder`: its trials on this machine or `resources`' training
    service, `resources.concurrency` at a time with `resources.gpu_number` GPUs each."""
    nni_experiment = _nni()
    folder.mkdir(parents=True, exist_ok=True)
    service = resources.training_service
    if service:
        exp = nni_experiment.Experiment(nni_experiment.ExperimentConfig(trainingService=service))
    else:
        exp = nni_experiment.Experiment("local")
    c = exp.config
    c.experiment_name = name
    c.trial_command = trial_command
    c.trial_code_directory = str(Path.cwd())  # relative paths in the run's config mean what they meant here
    c.search_space = search_space
    c.tuner = nni_experiment.CustomAlgorithmConfig(class_name=tuner, code_directory=str(folder), class_args=tuner_args)
    c.max_trial_number = max_trials
    c.trial_concurrency = resources.concurrency  # trials of one study at once (each its own Optuna trial)
    c.trial_gpu_number = resources.gpu_number  # NNI sets each trial's CUDA_VISIBLE_DEVICES
    if resources.platform == "local" and resources.gpu_number and c.training_service.use_active_gpu is None:
        c.training_service.use_active_gpu = False  # never a GPU that other processes use (a --training-service
        #                                            file with useActiveGpu: true allows it)
    c.experiment_working_directory = str(folder)
    return exp


def tune_config_yaml(tune: Any, base: Any, resources: TrialResources) -> str:
    """The NNI experiment `ssnas tune --nni` would start, as NNI's YAML (validated by NNI), without starting it or
    opening the study: to check a cluster setup, or to start it with nnictl."""
    import yaml

    resources.check(storage_url(tune, base))
    params = validate(tune, base)
    folder = study_dir(tune, base) / "nni"
    spec = folder / "spec.json"
    exp = make_experiment(tune.study, folder, python_command("ssnas.nni_bridge.trial", "tune", str(spec)),
                          "ssnas.nni_bridge.tuner.OptunaTuner", {"spec": str(spec), "optimize_mode": "maximize"},
                          nni_search_space(params), tune.trials, resources)
    try:
        exp.config.validate()
    except ValueError as e:
        raise UserError(f"NNI refuses the experiment's config: {str(e).splitlines()[0]}") from None
    return yaml.safe_dump(exp.config.json(), sort_keys=False)


def python_command(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", *args))


def _describe(trial: dict[str, Any]) -> str:
    final = trial["final"]
    if isinstance(final, dict):
        value = final.get("default")
        extra = " (pruned)" if final.get("pruned") else ""
    else:
        value, extra = final, ""
    shown = f", final {value:.4f}{extra}" if isinstance(value, (int, float)) else ""
    return f"NNI trial {trial['id']}: {trial['status'].lower()}{shown}"


def _server_gone(exp: Any) -> bool:
    proc = exp._proc  # NNI keeps the node process here; it exits when the experiment is stopped from outside
    return proc is None or (hasattr(proc, "poll") and proc.poll() is not None)


def run_experiment(exp: Any, launch: Launch) -> tuple[str, list[dict[str, Any]]]:
    """Start the experiment, print trials as they end, stop it when done (or on Ctrl-C, or when `--stop` stopped
    it from outside). Returns the last status (DONE, ERROR, STOPPED or INTERRUPTED) and the trials."""
    launch.check()
    folder = Path(exp.config.experiment_working_directory)
    logging.getLogger("nni").setLevel(logging.WARNING)  # its own URL list names every interface; ours is right
    seen: dict[str, str] = {}
    status, known, keeping = "STOPPED", [], False
    failure = None
    try:
        with _preloaded(launch, folder):
            try:
                # detached: NNI's node server writes its stdout and stderr (stack traces included) to
                # <experiment>/log/nnictl_std*.log rather than to our terminal; `_stop` ends it either way
                with _patient_server_check():
                    exp.start(launch.port, run_mode=_nni().RunMode.Detach)
            except Exception as e:
                if "not idle" in str(e):
                    raise UserError(f"port {launch.port} is in use; pass --port N, or stop the experiment there with "
                                    f"ssnas tune --nni --stop --port {launch.port}") from None
                raise UserError(f"NNI could not start the experiment ({str(e).splitlines()[0] if str(e) else e!r}); "
                                f"its logs are in {folder / exp.id / 'log'}") from None
        print(f"NNI experiment {exp.id}: web UI at {launch.url} (no login; listening on {launch.host}); "
              f"stop it with Ctrl-C or: ssnas tune --nni --stop --port {launch.port}", flush=True)
        while True:
            if _server_gone(exp):
                status = "DONE" if keeping else "STOPPED"
                code = getattr(exp._proc, "returncode", 0) if exp._proc is not None else 0
                if code:  # not stopped: NNI's server died
                    status, failure = "ERROR", f"NNI's server exited with code {code}"
                else:
                    print("the NNI experiment was stopped", flush=True)
                break
            try:
                status = exp.get_status()
                known = trials(launch)
            except Exception:  # the server is going away: the next round sees it gone
                time.sleep(POLL_S)
                continue
            for t in known:
                if t["status"] in FINAL_STATES and seen.get(t["id"]) != t["status"]:
                    print(_describe(t), flush=True)
                seen[t["id"]] = t["status"]
            if status == "ERROR":
                failure = _errors(launch)
            if status in ("DONE", "ERROR", "STOPPED") and not keeping:
                if status != "DONE" or not launch.keep_ui:
                    break
                keeping = True
                print(f"all trials finished; the web UI stays at {launch.url} until Ctrl-C or "
                      f"ssnas tune --nni --stop --port {launch.port}", flush=True)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        status = "DONE" if keeping else "INTERRUPTED"
        print("interrupted: stopping the NNI experiment", file=sys.stderr, flush=True)
    finally:
        _stop(exp)
    if failure is not None:
        raise UserError(f"the NNI experiment failed: {failure}; NNI's logs are in {folder / exp.id / 'log'}")
    return status, known


def _errors(launch: Launch) -> str:
    """The first error NNI's manager recorded (check-status), on one line."""
    try:
        errors = rest(launch, "check-status", timeout=5).get("errors") or []
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        errors = []
    text = " ".join(str(errors[0]).split()) if errors else "its manager reported an error"
    # NNI's message names its own 10 s; PRELOAD_JS made it wait --tuner-wait
    text = text.replace("did not connect in 10 seconds", f"did not connect in {launch.tuner_wait_s:g} s (--tuner-wait)")
    return text if len(text) <= 300 else text[:297] + "..."


def _stop(exp: Any) -> None:
    """Stop NNI's manager, its dispatcher and its trials (a no-op when they are gone already). Every wait is
    bounded: NNI's own `Experiment.stop` waits for its server without a limit, so the server is asked to stop here
    (REST, NNI's 20 s timeout), given STOP_WAIT_S to exit, then its process group (the server starts it with
    setpgrp: the dispatcher and the trials are in it) is terminated, and killed if that is not enough."""
    proc = getattr(exp, "_proc", None)
    if proc is None:
        return
    if not _server_gone(exp):
        with contextlib.suppress(Exception):  # it may hang up before it answers
            _nni().rest.delete(exp.port, "/experiment", exp.url_prefix)
        if not _exited(proc, STOP_WAIT_S):
            for sig, wait_s in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                if _exited(proc, wait_s):
                    break
    exp._proc = None  # stopped: NNI's own stop has only its logging left to close
    with contextlib.suppress(KeyboardInterrupt):
        exp.stop()


def _exited(proc: Any, wait_s: float) -> bool:
    """Whether NNI's server process (a Popen) exits within `wait_s` seconds."""
    try:
        proc.wait(timeout=wait_s)
        return True
    except subprocess.TimeoutExpired:
        return False


def trial_log(trial: dict[str, Any]) -> str:
    """The end of a failed NNI trial's stderr, and where the whole log is."""
    folder = Path(str(trial.get("log", "")).replace("file://localhost:", ""))
    stderr = folder / "stderr"
    lines = stderr.read_text(errors="replace").strip().splitlines() if stderr.is_file() else []
    last = next((line for line in reversed(lines) if line.strip()), "no output")
    return f"{last} (log: {stderr})"


# ---- what ssnas runs as experiments ----------------------------------------------------------------------------

def tune_experiment(tune: Any, base: Any, launch: Launch,
                    resources: TrialResources = TrialResources()) -> tuple[str, Any]:
    """`ssnas tune --nni`: the study's remaining trials as one NNI experiment; then the best config and plots."""
    launch.check_free()
    resources.check(storage_url(tune, base))
    params = validate(tune, base)
    _nni()
    study, url, root = prepare_study(tune, base, params)
    todo, status, before = tune.trials - finished(study, tune.trials), "DONE", len(study.get_trials(deepcopy=False))
    if todo > 0:
        folder = root / "nni"
        folder.mkdir(parents=True, exist_ok=True)
        TuneData.load(tune, base).save(folder / "data.pt")
        spec = folder / "spec.json"
        spec.write_text(json.dumps({"tune": to_dict(tune), "target": tune.target, "config": to_dict(base),
                                    "storage": url, "root": str(root), "params": to_json(params),
                                    "data": str(folder / "data.pt")}, indent=2))
        print(f"ssnas tune: study {tune.study!r} in {url}: {tune.trials - todo} of {tune.trials} trials finished, "
              f"running {todo} as an NNI experiment; trial folders in {root}", flush=True)
        exp = make_experiment(tune.study, folder, python_command("ssnas.nni_bridge.trial", "tune", str(spec)),
                              "ssnas.nni_bridge.tuner.OptunaTuner", {"spec": str(spec), "optimize_mode": "maximize"},
                              nni_search_space(params), todo, resources)
        status, _ = run_experiment(exp, launch)
        recover(study)  # trials a stop killed run again when the study resumes
    result = TuneResult(study, root, len(study.get_trials(deepcopy=False)) - before)
    write_outputs(result, tune, base, url)
    return status, result


def search_experiment(cfg: Any, launch: Launch) -> tuple[str, Path]:
    """`ssnas search --nni`: the search as the single trial of an NNI experiment. Returns the status and --out."""
    launch.check_free()
    search.validate(cfg)
    out = Path(cfg.run.out).absolute()
    search.prepare_out(cfg, out)  # refuse to overwrite, check --resume settings: now, not inside the trial
    _nni()
    folder = out / "nni"
    folder.mkdir(parents=True, exist_ok=True)
    data = to_dict(cfg)
    data["run"].update(out=str(out), progress=False)  # both are allowed to differ on --resume
    spec = folder / "search_config.json"
    spec.write_text(json.dumps(data, indent=2))
    shown = {k: v for k, v in flatten(data).items() if not k.startswith("run.") or k == "run.seed"}
    exp = make_experiment(f"search-{out.name}", folder, python_command("ssnas.nni_bridge.trial", "search", str(spec)),
                          # the trial reports the epoch's loss: the web UI should rank lower as better
                          "ssnas.nni_bridge.tuner.FixedTuner", {"parameters": shown, "optimize_mode": "minimize"},
                          {"run.seed": {"_type": "choice", "_value": [cfg.run.seed]}}, 1)
    status, known = run_experiment(exp, launch)
    failed = [t for t in known if t["status"] == "FAILED"]
    if failed:
        raise UserError(f"the search trial failed: {trial_log(failed[0])}")
    if status == "ERROR":
        raise UserError(f"the NNI experiment ended in an error; see its log in {folder}")
    return status, out
