"""`ssnas tune --nni` on many GPUs or machines, as config generation: concurrent trials, GPUs per trial and a remote
training service, checked by NNI's own validation (no remote machines or GPUs here to start them on)."""
from __future__ import annotations

import pytest
import yaml

from ssnas.cli import main
from tests.test_tune import TINY_CLI

pytest.importorskip("nni")


def _config(capsys, *extra) -> dict:
    assert main(["tune", "--print-nni-config", "--trials", "12", "--study", "c", *TINY_CLI, *extra]) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.slow
def test_concurrent_trials_on_this_machine(tmp_path, capsys):
    config = _config(capsys, "--out", str(tmp_path), "--trial-concurrency", "3")
    assert config["trialConcurrency"] == 3 and config["maxTrialNumber"] == 12
    assert config["trainingService"]["platform"] == "local"
    assert "ssnas.nni_bridge.trial tune" in config["trialCommand"]
    assert config["tuner"]["className"] == "ssnas.nni_bridge.tuner.OptunaTuner"
    assert main(["tune", "--print-nni-config", "--trial-gpu-number", "1", *TINY_CLI, "--out", str(tmp_path)]) == 2
    assert "CUDA GPU" in capsys.readouterr().err  # no GPU here: refused, not queued forever


@pytest.mark.slow
def test_a_remote_training_service_from_the_readme(tmp_path, capsys):
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key\n")
    service = tmp_path / "remote.yml"
    service.write_text(f"""\
trainingService:
  platform: remote
  nniManagerIp: 10.0.0.1
  reuseMode: true
  machineList:
    - host: gpu1.example
      user: alice
      sshKeyFile: {key}
      pythonPath: /opt/ssnas/.venv/bin
      maxTrialNumberPerGpu: 1
    - host: gpu2.example
      user: alice
      sshKeyFile: {key}
      pythonPath: /opt/ssnas/.venv/bin
""")
    storage = "postgresql://ssnas:secret@db.example/ssnas"
    config = _config(capsys, "--out", str(tmp_path), "--training-service", str(service), "--storage", storage,
                     "--trial-concurrency", "8", "--trial-gpu-number", "1")
    ts = config["trainingService"]
    assert ts["platform"] == "remote" and [m["host"] for m in ts["machineList"]] == ["gpu1.example", "gpu2.example"]
    assert config["trialConcurrency"] == 8 and config["trialGpuNumber"] == 1
    # a storage only this machine reaches is refused for trials elsewhere
    assert main(["tune", "--print-nni-config", *TINY_CLI, "--out", str(tmp_path), "--training-service",
                 str(service)]) == 2
    assert "--storage postgresql://" in capsys.readouterr().err
    service.write_text("platform: [remote\n")
    assert main(["tune", "--print-nni-config", *TINY_CLI, "--out", str(tmp_path), "--training-service",
                 str(service), "--storage", storage]) == 2
    assert "cannot read --training-service" in capsys.readouterr().err
