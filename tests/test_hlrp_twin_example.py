"""examples/hlrp_twin.py end to end at smoke size: every stage of the pretraining comparison (recordings, both LAQs,
both stage-2 kinds, stage 3 from an artifact and from scratch, lerobot-eval, the tables), then the same experiment
again in an empty folder from its archive alone (nothing recorded or trained: it spans machines)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from clitools import load_example

ROOT = Path(__file__).resolve().parents[1]
SMOKE = [
    # one 1-s episode per recording, recorded in so101-twin-record's own process (a spawned worker's start-up would
    # outlast it); one step of every trainer: each stage's outputs and summaries exist all the same
    "--episodes=1", "--episode_time_s=1", "--record_workers=1", "--laq_steps=1", "--trunk_steps=1",
    "--policy_steps=1", "--batch_size=4", "--eval_episodes=1", "--eval_episode_length=10", "--seeds=[1]",
    "--torch_threads=1",
    # both LAQs, both stage-2 configs, both stage-3 configs (latent_only differs from latent_only_seg by its LAQ only)
    "--arms=[latent_only_seg,with_actions,scratch]",
]  # fmt: skip


def run_example(out: Path, archive: Path) -> str:
    args = [sys.executable, str(ROOT / "examples" / "hlrp_twin.py"), f"--output_dir={out}", f"--archive_dir={archive}"]
    # one torch thread in every stage, stage 2 included (its config leaves torch's default): at smoke size threads
    # only contend, with each other and with whatever else the machine runs
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*args, *SMOKE], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return proc.stdout


@pytest.mark.slow
def test_the_comparison_runs_every_stage_then_reprints_from_its_archive(tmp_path):
    out, archive = tmp_path / "run", tmp_path / "archive"
    table = run_example(out, archive)
    results = json.loads((out / "results.json").read_text())
    assert len(results["recordings"]) == 6 and all(r["episodes"] == 1 for r in results["recordings"].values())
    assert set(results["stage1"]) == {"laq_plain", "laq_seg"}
    assert results["stage1"]["laq_seg"]["loss_weighting"] == "segmentation"
    for m in results["stage1"].values():  # codebook usage and the unweighted held-out reconstruction of each LAQ
        assert 1 <= m["used_codes"] <= m["codebook_size"] and 0 < m["recon_mse"] < 1 and m["seconds"] > 0
        assert {"cube", "table"} <= set(m["recon_mse_by_class"])
    supervision = {name: m["supervision"] for name, m in results["stage2"].items()}
    assert supervision == {"trunk_latent_only_seg": "latent_only", "trunk_with_actions": "latent_and_actions"}
    assert set(results["stage2"]["trunk_with_actions"]["losses_first_last"]) == {"latent_flow", "action_regression"}
    assert set(results["stage2"]["trunk_latent_only_seg"]["losses_first_last"]) == {"latent_flow"}
    runs = results["stage3"]
    assert {arm: runs[arm]["1"]["supervision"] for arm in runs} == {
        "latent_only_seg": "latent_only", "with_actions": "latent_and_actions", "scratch": "none (scratch)",
    }  # fmt: skip
    assert all(runs[arm]["1"]["episodes"] == 1 and runs[arm]["1"]["train_s"] > 0 for arm in runs)
    for arm in runs:  # each run keeps the fingerprints of the recordings it (and its stages 1-2) trained on
        kept = json.loads((archive / f"stage3_{arm}_s1.json").read_text())
        assert set(kept["recordings"]) == set(results["recordings"]) and kept["recordings"]["labelled"]["episodes"] == 1
    assert "| latent_only_seg | 0/1 |" in table or "| latent_only_seg | 1/1 |" in table
    assert "| with_actions - scratch |" in table and "| latent_only - scratch |" not in table  # arm a not run
    # a fresh folder with the archive: the same tables, nothing recorded, trained or evaluated again
    again = run_example(tmp_path / "elsewhere", archive)
    assert again.splitlines()[-12:] == table.splitlines()[-12:]
    assert not (tmp_path / "elsewhere" / "data").exists() and not (tmp_path / "elsewhere" / "runs").exists()


def test_the_arms_of_a_seed_must_share_their_recordings(tmp_path):
    module = load_example("hlrp_twin")
    cfg = module.HLRPTwinConfig(archive_dir=tmp_path / "archive", output_dir=tmp_path / "run", arms=["scratch"])
    here = {"labelled": {"sha256": "a" * 64, "episodes": 20, "frames": 3000}}
    elsewhere = {"labelled": {"sha256": "b" * 64, "episodes": 20, "frames": 3000}}
    module.keep(cfg, "stage3_scratch_s2.json", {"seconds": 1.0, "recordings": elsewhere})
    module.check_same_recordings(cfg, elsewhere, seed=2)  # the same recordings: fine
    module.check_same_recordings(cfg, here, seed=3)  # another seed may be another recording
    with pytest.raises(RuntimeError, match="seed 2's scratch run"):
        module.check_same_recordings(cfg, here, seed=2)
