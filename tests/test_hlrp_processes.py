"""HLRP stages 2 and 3 in two real processes: `torchrun --nproc_per_node=2` on CPUs (gloo).

`accelerate launch --cpu --num_processes=2` starts a single process on a CPU machine (its simple launcher), so it
checks nothing; and a plain `Accelerator()` under torchrun without CUDA gives each rank a world of one. Here each
stage runs under torchrun with tests/ddp_probe.py, which records on every rank the world size, a hash of the weights
before every step, and the files the rank writes under the run's folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_hlrp import TINY_LAQ, tiny_core_config

from lerobot_policy_hlrp.artifact import read_manifest
from lerobot_policy_hlrp.laq import LAQ

PROBE = Path(__file__).parent / "ddp_probe.py"


def torchrun(stage: str, out: Path, args: list[str], tmp_path: Path) -> tuple[list[dict], list[str], list[str]]:
    """Two CPU ranks of a stage; (each rank's probe record, each rank's stdout, each rank's stderr)."""
    probe, logs = tmp_path / f"probe_{stage}", tmp_path / f"logs_{stage}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--redirects=3", f"--log-dir={logs}",
           str(PROBE), stage, str(probe), str(out), *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    outputs = [[(d / n).read_text() for d in sorted(logs.glob("*/attempt_0/*"))] for n in ("stdout.log", "stderr.log")]
    if proc.returncode != 0:
        raise AssertionError(f"torchrun {stage} exited {proc.returncode}:\n{proc.stderr[-3000:]}\n{outputs[1]}")
    return [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)], *outputs


def check_ranks(records: list[dict], steps: int) -> None:
    assert [(r["world_size"], r["accelerate_processes"]) for r in records] == [(2, 2), (2, 2)]
    assert all(len(r["hashes"]) == steps for r in records)
    start, after_one = records[0]["hashes"][:2]
    assert after_one != start  # a step changed the weights ...
    for k in range(steps):  # ... identically on both ranks (DDP's averaged gradients), from identical starts
        assert records[0]["hashes"][k] == records[1]["hashes"][k], k
    assert records[1]["writes"] == [] and records[0]["writes"]  # only rank 0 writes


@pytest.mark.slow
def test_stage2_and_stage3_run_as_two_cpu_processes(gt_dataset, tmp_path):
    torch.manual_seed(0)
    LAQ(TINY_LAQ).save_pretrained(tmp_path / "laq")
    datasets = [{"repo_id": "local/twin_demo", "root": str(gt_dataset), "cameras": ["front"], "gap_s": 0.3}]
    trunk = tmp_path / "trunk"
    records, stdout, stderr = torchrun("trunk", trunk, [
        f"--datasets={json.dumps(datasets)}",
        f"--adapter={json.dumps({'target_dim': 8, 'entries': [{'dataset': 'local/twin_demo', 'action_dim': 6}]})}",
        f"--laq_path={tmp_path / "laq"}",
        *[f"--core.{k}={v}" for k, v in dataclasses.asdict(tiny_core_config()).items()],
        "--load_vlm_weights=false", "--steps=3", "--batch_size=2", "--num_workers=0", "--log_freq=1",
        "--save_freq=3", f"--output_dir={trunk}",
    ], tmp_path)  # fmt: skip
    check_ranks(records, 3)
    assert "1 process" not in stderr[0] and "2 process(es): batch 2 x 2" in stderr[0]
    assert json.loads(stdout[0])["artifact"] == str(trunk / "artifact") and stdout[1] == ""  # one final line
    assert "step 3 " in stderr[0] and "step " not in stderr[1] and "stage 2: " not in stderr[1]
    rows = (trunk / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3]  # written once, not once per rank
    assert read_manifest(trunk / "artifact")["step"] == 3

    stage3 = tmp_path / "stage3"
    records, stdout, stderr = torchrun("lerobot", stage3, [
        "--dataset.repo_id=local/twin_demo", f"--dataset.root={gt_dataset}", "--policy.type=hlrp",
        "--policy.device=cpu", "--policy.push_to_hub=false", "--policy.init_mode=artifact",
        f"--policy.stage2_artifact={trunk / 'artifact'}", "--policy.cameras=[front]", "--policy.n_action_steps=2",
        "--steps=2", "--batch_size=2", "--num_workers=0", "--save_freq=2", "--log_freq=1", "--wandb.enable=false",
        f"--output_dir={stage3}",
    ], tmp_path)  # fmt: skip
    check_ranks(records, 2)
    assert "Effective batch size: 2 x 2 = 4" in stderr[0] and "step:2 " in stderr[0]
    assert "supervision latent_and_actions" in stderr[0] and "step:" not in stderr[1] and "hlrp:" not in stderr[1]
    saved = stage3 / "checkpoints" / "last" / "pretrained_model"
    assert json.loads((saved / "config.json").read_text())["stage2"]["step"] == 3
