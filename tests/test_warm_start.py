"""Commands started warm (so101_devtools.warm_start, which the suite's commands use) behave as fresh processes: their
own argv, cwd, environment, script folder, exit code, output and randomness; LeRobot's import-time settings from
their own environment; this repository's plugins found by the command itself; a timeout kills only the command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from so101_devtools import warm_start

PROBE = Path(__file__).resolve().parent / "warm_probe.py"
VENV_BIN = Path(sys.executable).parent


def probe(mode: list[str], cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return warm_start.run([str(PROBE), *mode], cwd, env, timeout, entry="warm_probe:main")


@pytest.mark.slow  # two warm parents, each importing LeRobot once
def test_a_warm_command_sees_what_a_fresh_process_would(tmp_path):
    # the probe is no console script: it is found on PYTHONPATH (a parent of its own, as any other environment)
    env = {**os.environ, "PROBE": "one", "HF_LEROBOT_HOME": str(tmp_path / "home_a"), "PYTHONPATH": str(PROBE.parent)}
    first = probe(["report", "x y"], tmp_path, env)
    assert first.returncode == 0, first.stderr
    said = json.loads(first.stdout)
    assert said["cwd"] == str(tmp_path) and said["argv"] == [str(PROBE), "report", "x y"] and said["probe"] == "one"
    assert first.stderr.strip().endswith("to stderr") and "to stderr" not in first.stdout
    assert said["home"] == str(tmp_path / "home_a")
    assert said["ours"] == ["so101_devtools"], "the parent imported a plugin: discovery would go untested"
    assert said["path0"] == str(VENV_BIN), "a console script's folder comes first on its sys.path"
    # NumPy's global generator is reseeded per command, as in a fresh interpreter
    second = json.loads(probe(["report"], tmp_path, env).stdout)
    assert second["draw"] != said["draw"]
    # LeRobot reads HF_LEROBOT_HOME when imported: another environment is served by another parent
    env_b = {**env, "HF_LEROBOT_HOME": str(tmp_path / "home_b")}
    other = json.loads(probe(["report"], tmp_path, env_b).stdout)
    assert other["home"] == str(tmp_path / "home_b")
    # a caller interrupted while its command runs stops the command and that parent, whose answers would be out of step
    stuck = warm_start.start(
        [str(PROBE), "sleep", "60"], tmp_path, env_b, tmp_path / "o", tmp_path / "e", "warm_probe:main"
    )
    stuck.abandon()
    assert stuck.server.proc.wait(timeout=10) != 0 and stuck.server not in warm_start._servers.values()
    # exit codes and failures as the interpreter gives them
    assert probe(["exit", "3"], tmp_path, env).returncode == 3
    failed = probe(["raise"], tmp_path, env)
    assert failed.returncode == 1 and "ValueError: the probe was asked to fail" in failed.stderr
    # a timeout kills the command, not its parent: the next one runs
    with pytest.raises(subprocess.TimeoutExpired):
        probe(["sleep", "30"], tmp_path, env, timeout=2)
    assert probe(["exit", "0"], tmp_path, env).returncode == 0


@pytest.mark.slow  # one cold start of LeRobot to compare with
def test_a_console_script_answers_warm_as_it_does_cold(tmp_path, monkeypatch):
    assert warm_start.enabled(), "the suite's conftest starts its commands warm"
    argv = [str(VENV_BIN / "so101-twin-record"), "--dataset.num_episodes=oops"]
    warm = warm_start.run(argv, tmp_path, {**os.environ}, timeout=300)
    monkeypatch.setenv("SO101_WARM_START", "0")
    cold = warm_start.run(argv, tmp_path, {**os.environ}, timeout=300)
    assert warm.returncode == cold.returncode != 0
    assert warm.stderr.splitlines()[-1] == cold.stderr.splitlines()[-1], (warm.stderr[-500:], cold.stderr[-500:])
    # anything that is not a console script of this venv runs as a plain subprocess
    monkeypatch.setenv("SO101_WARM_START", "1")
    done = warm_start.run([sys.executable, "-c", "print('plain')"], tmp_path, {**os.environ}, timeout=60)
    assert done.returncode == 0 and done.stdout == "plain\n"
